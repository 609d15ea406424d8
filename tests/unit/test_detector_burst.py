"""The burst layer: Poisson tails, critical counts, sliding windows and the persistence
gate, the hour-of-week baseline."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from sentiment.detector.burst import (
    BurstTest,
    BurstWindow,
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
        test.add(at(i * 0.4), usual)  # 10 in minutes 0-3
    assert test.hot(test.windows[0], event_minute(at(3)))
    assert test.bursting(at(4.9)) == ()  # the gate: the 5 minutes before were not hot
    for i in range(10):
        test.add(at(5 + i * 0.4), usual)  # 10 more in minutes 5-8
    assert test.criticals(test.windows[0], event_minute(at(8.9))) == (5, 5)  # mean 0.5
    assert test.bursting(at(8.9)) == (5,)  # minutes 4-8 and -1-3: 10 each
    assert test.bursting(at(9.9)) == (5,)  # minutes 5-9 and 0-4: 10 each
    assert test.counts(at(9.9)) == [10]
    # the windows slide on: minutes 8-12 hold 2 of them, no longer a burst
    assert test.bursting(at(12)) == ()
    assert test.counts(at(12)) == [2]
    assert test.counts(at(30)) == [0]


@pytest.mark.parametrize("start", range(0, 30, 2))
def test_a_burst_is_seen_as_soon_wherever_it_starts_on_the_clock(start: int) -> None:
    """Tumbling 15-minute windows see a burst later or sooner by where it starts in their
    quarter hour (one that starts late in one is split over two); the sliding ones burst a
    fixed time after it starts: once the 15 minutes before the last 15 hold the critical
    count too."""
    test = BurstTest([15], alpha=1e-4, min_count=5)
    first = None
    for minute in range(start, start + 60):  # one a minute against 0.05 usual
        test.add(at(minute + 0.5), 0.05)
        if first is None and test.bursting(at(minute + 0.5)):
            first = minute
    critical, _ = test.criticals(test.windows[0], event_minute(at(start + 59)))
    assert critical == 7  # P(X >= 7) < 1e-4 for a mean of 0.75
    assert first == start + 15 + critical - 1
    assert test.counts(at(start + 59.9)) == [15]
    assert test.counts(at(start + 60)) == [14]  # minute start + 45 has left the window


def test_a_window_is_tested_against_the_usual_rate_from_before_the_burst() -> None:
    """The watch's baseline counts a burst too, so it rises while the burst goes on: a
    window is tested against the critical count of its oldest minute, as a tumbling
    window kept the one it opened with."""
    test = BurstTest([5], alpha=1e-3, min_count=3)
    for minute, usual in enumerate([0.1, 0.1, 0.5, 1.0, 20.0, 20.0, 20.0, 20.0]):
        for _ in range(12):
            test.add_minute(minute, usual)
    window = test.windows[0]
    critical, earlier_critical = test.criticals(window, 7)
    assert critical == test.critical(1.0, 5) < 60 < test.critical(20.0, 5)  # minutes 3-7
    assert earlier_critical == test.critical(0.1, 5)  # minutes -2-2
    assert test.bursting_at(7) == (5,)  # 60 >= critical(1.0): a burst, not a new normal
    assert window.counts_at(7) == (60, 36)


@pytest.mark.parametrize("seed", range(5))
def test_sliding_windows_agree_with_counting_by_hand(seed: int) -> None:
    """Mentions at random minutes, some of them late (dated before the newest minute seen,
    by up to 40 minutes): every count and every burst, at the newest minute and at later
    ones, is what counting the dated minutes by hand gives. A mention older than both of
    a window's halves when it comes is not counted in that window (nor could it be: it
    lies outside them from then on)."""
    rng = random.Random(seed)
    test = BurstTest([1, 5, 15], alpha=1e-2, min_count=3)
    kept: dict[int, list[int]] = {w.minutes: [] for w in test.windows}
    newest = 0
    late = bursts = 0
    for _ in range(800):
        if rng.random() < 0.15 and newest > 0:
            minute = newest - rng.randrange(0, 40)
            late += 1
        else:
            newest += rng.choice((0, 0, 0, 1, 1, 2, 7))
            minute = newest
        test.add_minute(minute, 0.4)
        for w in test.windows:
            if minute > newest - 2 * w.minutes:
                kept[w.minutes].append(minute)
        for now in (newest, newest + rng.randrange(1, 40)):
            expect: tuple[int, ...] = ()
            for w in test.windows:
                seen = kept[w.minutes]
                current = sum(1 for m in seen if now - w.minutes < m <= now)
                earlier = sum(1 for m in seen if now - 2 * w.minutes < m <= now - w.minutes)
                assert w.counts_at(now) == (current, earlier)
                critical = test.critical(0.4, w.minutes)
                assert critical is not None
                if current and earlier:
                    assert test.criticals(w, now) == (critical, critical)
                if min(current, earlier) >= critical:
                    expect += (w.minutes,)
            assert test.bursting_at(now) == expect
            bursts += bool(expect)
            assert test.counts_at(now) == [w.counts_at(now)[0] for w in test.windows]
    assert late > 50 and bursts > 20  # both paths were taken


def test_a_tumbling_window_of_an_old_snapshot_is_read() -> None:
    """``STATE_FORMAT`` 6 pickled the tumbling windows: the open window's count is placed
    at its first minute (with no usual rate: it kept only its critical count), the window
    before it counts as empty."""
    test = BurstTest([5], alpha=1e-3, min_count=3)
    window = BurstWindow.__new__(BurstWindow)
    window.__setstate__(
        (None, {"minutes": 5, "index": 4, "count": 7, "previous_hot": True, "critical": 6})
    )
    test.windows = (window,)
    assert window.counts_at(20) == (7, 0) and window.counts_at(24) == (7, 0)
    assert window.counts_at(25) == (0, 7)
    assert test.criticals(window, 22) == (None, None) and not test.hot(window, 22)
    for _ in range(7):
        test.add_minute(26, 0.1)  # after the upgrade: hot, against the usual rate now
    assert test.criticals(window, 26) == (test.critical(0.1, 5), None)
    assert test.bursting_at(26) == ()  # minutes 17-21 hold the old 7, with no usual rate
    assert test.hot(window, 26)
    fresh = BurstWindow.__new__(BurstWindow)
    fresh.__setstate__(
        (None, {"minutes": 1, "index": None, "count": 0, "previous_hot": False, "critical": None})
    )
    assert fresh.newest is None and fresh.counts_at(3) == (0, 0)


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
