"""The Hawkes forecast recovers the parameters of a synthetic Hawkes process.

The process: a root post whose author has many followers (weight ``ROOT_WEIGHT`` under
``follower_power`` 1), reposts by authors of unknown reach (weight 1), infectiousness
``P``, and the model's own kernel (a mixture of exponentials). It is simulated as a
branching process: every mention has Poisson(P * weight) children at delays drawn from
the kernel.

Tolerances (stated): the infectiousness estimated once the cascade is over is within
0.05 of the true one in every seed; the final size predicted from the first 60 minutes
has a median relative error of at most 10 % over the seeds.
"""

from __future__ import annotations

import random
import statistics

import pytest

from sentiment.detector.forecast import ForecastModel, Kernel, StoryForecast

P = 0.5
REFERENCE = 1000.0
ROOT_WEIGHT = 2000.0
KERNEL = Kernel.power_law(theta=1.0, shortest=1.0, longest=1000.0, scales=7)
MODEL = ForecastModel(
    KERNEL,
    prior_p=0.5,
    prior_exposure=5.0,
    reference_followers=REFERENCE,
    follower_power=1.0,
    max_weight=1e6,
    min_weight=1e-6,
)


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth's method for small means; a sum of small Poissons for large ones
    total = 0
    while lam > 0:
        part = min(lam, 20.0)
        lam -= part
        limit, k, p = pow(2.718281828459045, -part), 0, 1.0
        while True:
            p *= rng.random()
            if p <= limit:
                break
            k += 1
        total += k
    return total


def _delay(rng: random.Random) -> float:
    tau = rng.choices(KERNEL.taus, KERNEL.weights)[0]
    return rng.expovariate(1.0 / tau)


def simulate(seed: int) -> list[tuple[float, int | None]]:
    """(minute, followers) of every mention, sorted by time; the root first."""
    rng = random.Random(seed)
    events: list[tuple[float, int | None]] = [(0.0, int(ROOT_WEIGHT * REFERENCE))]
    queue = [(0.0, ROOT_WEIGHT)]
    while queue:
        t, weight = queue.pop()
        for _ in range(_poisson(rng, P * weight)):
            child = t + _delay(rng)
            events.append((child, None))
            queue.append((child, 1.0))
    events.sort(key=lambda e: e[0])
    return events


def test_the_kernel_is_a_distribution() -> None:
    assert sum(KERNEL.weights) == pytest.approx(1.0)
    assert KERNEL.survival(0.0) == pytest.approx(1.0)
    assert KERNEL.survival(10.0) > KERNEL.survival(100.0) > KERNEL.survival(10_000.0)
    assert KERNEL.survival(1e6) == pytest.approx(0.0, abs=1e-9)


def test_weights_follow_followers_and_fall_back_to_one() -> None:
    model = ForecastModel(KERNEL, follower_power=0.5, reference_followers=100.0)
    assert model.weight(None) == 1.0
    assert model.weight(400) == pytest.approx(2.0)
    assert model.weight(10**9) == model.max_weight
    assert ForecastModel(KERNEL).weight(10**6) == 1.0  # follower_power 0: ignored


@pytest.mark.parametrize("seed", range(8))
def test_infectiousness_is_recovered_once_the_cascade_is_over(seed: int) -> None:
    events = simulate(seed)
    forecast = StoryForecast(MODEL)
    for t, followers in events:
        forecast.add(t, followers)
    end = events[-1][0] + 1e6
    assert forecast.infectiousness(end) == pytest.approx(P, abs=0.05)
    # nothing is owed any more: the prediction is what happened
    assert forecast.predict(end) == pytest.approx(len(events), rel=1e-6)


def test_the_final_size_is_predicted_from_the_first_hour() -> None:
    errors = []
    for seed in range(20):
        events = simulate(100 + seed)
        forecast = StoryForecast(MODEL)
        for t, followers in events:
            if t <= 60:
                forecast.add(t, followers)
        errors.append(abs(forecast.predict(60.0) - len(events)) / len(events))
    assert statistics.median(errors) <= 0.10


def test_a_late_mention_counts_as_if_in_order() -> None:
    in_order, late = StoryForecast(MODEL), StoryForecast(MODEL)
    for t in (0.0, 1.0, 2.0, 5.0):
        in_order.add(t, None)
    for t in (0.0, 2.0, 5.0, 1.0):
        late.add(t, None)
    assert late.predict(10.0) == pytest.approx(in_order.predict(10.0))
    assert StoryForecast(MODEL).predict(0.0) == 0.0


def test_reposts_can_excite_less_than_the_original_post() -> None:
    model = ForecastModel(KERNEL, repost_weight=0.25)
    assert model.weight(None, first=True) == 1.0
    assert model.weight(None) == 0.25
    plain, star = StoryForecast(ForecastModel(KERNEL)), StoryForecast(model)
    for t in (0.0, 0.5, 1.0, 2.0, 3.0):
        plain.add(t, None)
        star.add(t, None)
    # fewer reposts to come when reposts themselves spread less
    assert star.predict(5.0) < plain.predict(5.0)
