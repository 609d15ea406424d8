"""The burst layer: Poisson tails, critical counts, the persistence gate, the
hour-of-week baseline."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from sentiment.detector.burst import (
    BurstTest,
    SeasonalBaseline,
    critical_count,
    event_minute,
    hour_of_week,
    poisson_tail,
)

MONDAY_9 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday


def at(minutes: float) -> datetime:
    return MONDAY_9 + timedelta(minutes=minutes)


def test_poisson_tail_is_exact_for_small_counts() -> None:
    assert poisson_tail(0, 3.0) == 1.0
    assert poisson_tail(1, 1.0) == pytest.approx(1 - math.exp(-1))
    assert poisson_tail(3, 2.0) == pytest.approx(1 - math.exp(-2) * (1 + 2 + 2))
    assert poisson_tail(5, 0.0) == 0.0
    # far in the tail: tiny but positive, and decreasing in k
    assert 0 < poisson_tail(40, 5.0) < poisson_tail(30, 5.0) < 1e-9


@pytest.mark.parametrize(("lam", "alpha"), [(0.5, 1e-3), (2.0, 0.01), (10.0, 1e-4), (30.0, 1e-6)])
def test_critical_count_is_the_smallest_count_at_or_below_alpha(lam: float, alpha: float) -> None:
    # exact for the mean rounded up to the next 1 % step (the cache's grid)
    k = critical_count(lam, alpha)
    assert poisson_tail(k, lam) <= alpha < poisson_tail(k - 1, lam * 1.01)


def test_critical_count_for_lambda_2() -> None:
    # P(X >= 6 | 2) = 0.0166, P(X >= 7 | 2) = 0.0045
    assert critical_count(2.0, 0.01) == 7


def test_one_hot_window_is_not_a_burst_two_consecutive_are() -> None:
    test = BurstTest([5], alpha=1e-3, min_count=3)
    usual = 0.1  # mentions per minute: 0.5 expected in 5 minutes
    for i in range(10):
        test.add(at(i * 0.4), usual)  # 10 in minutes 0-4
    assert test.windows[0].hot
    assert test.bursting(at(4.9)) == ()  # the gate: the window before was not hot
    for i in range(10):
        test.add(at(5 + i * 0.4), usual)  # 10 more in minutes 5-9
    assert test.bursting(at(9.9)) == (5,)
    assert test.counts(at(9.9)) == [10]
    # the window closes: a later moment without mentions does not burst
    assert test.bursting(at(12)) == ()
    assert test.counts(at(12)) == [0]


def test_a_gap_resets_the_persistence_gate() -> None:
    test = BurstTest([1], alpha=1e-3, min_count=3)
    for i in range(6):
        test.add(at(i * 0.1), 0.1)  # minute 0: hot
    for i in range(6):
        test.add(at(2 + i * 0.1), 0.1)  # minute 2: hot, but minute 1 was empty
    assert test.bursting(at(2.9)) == ()


def test_no_burst_without_a_baseline_or_below_the_minimum_count() -> None:
    test = BurstTest([1], alpha=0.5, min_count=5)
    for m in range(3):
        for i in range(4):
            test.add(at(m + i * 0.1), 0.01)  # 4 a minute: below min_count
    assert test.bursting(at(2.5)) == ()
    cold = BurstTest([1], alpha=1e-3, min_count=1)
    for m in range(3):
        for i in range(20):
            cold.add(at(m + i * 0.01), None)  # no baseline yet: never hot
    assert cold.bursting(at(2.5)) == ()


def test_hour_of_week() -> None:
    assert hour_of_week(event_minute(datetime(2026, 1, 5, 0, 0, tzinfo=UTC))) == 0  # Mon
    assert hour_of_week(event_minute(MONDAY_9)) == 9
    assert hour_of_week(event_minute(datetime(2026, 1, 11, 23, 59, tzinfo=UTC))) == 167


def test_seasonal_baseline_knows_the_hour_of_the_week() -> None:
    base = SeasonalBaseline(half_life_minutes=240, warmup_minutes=30, floor=0.2)
    assert base.per_minute(at(0)) is None
    for minute in range(60):  # Monday 09:00-09:59: 3 a minute
        for i in range(3):
            base.add(at(minute + i * 0.2))
    assert base.per_minute(at(30)) == pytest.approx(3.0)  # its own slot
    assert base.per_minute(at(90)) == pytest.approx(3.0)  # 10:00: the all-hours rate
    base.add(at(120))  # 11:00: the empty hour 10:00-10:59 is folded in
    assert base.per_minute(at(90)) == pytest.approx(0.2)  # 10:00 is quiet: the floor
    assert base.per_minute(at(30)) == pytest.approx(3.0)  # 09:00 still busy
    assert base.per_minute(at(30 + 7 * 24 * 60)) == pytest.approx(3.0)  # next Monday 09:00
