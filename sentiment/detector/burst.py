"""The burst layer: counts in tumbling event-time windows tested against a baseline that
knows the hour of the week, with a persistence gate.

``poisson_tail(k, lam)`` is ``P(X >= k)`` for ``X ~ Poisson(lam)``: exact for small
counts, where a z-score would be wrong. ``critical_count(lam, alpha)`` is the smallest
count whose tail is at most ``alpha`` (cached: it is computed once per window, not per
mention).

``SeasonalBaseline`` is the usual mentions per minute for each of the 168 hours of the
week (an EWMA per hour-of-week slot, over the minutes that slot has seen), falling back to
the all-hours EWMA while a slot is young. Empty minutes count as zero.

``BurstTest`` holds one ``BurstWindow`` per window length (1, 5, 15, 60 minutes by
default). A window is *hot* when its count reaches the critical count of the expected
count (baseline per minute x length) at ``alpha``, and at least ``min_count``; a window
*bursts* when it is hot and the window before it was hot too (two consecutive windows:
one unlucky minute is not a burst). The state is a few numbers per window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

_CRITICAL: dict[tuple[float, float], int] = {}
_CRITICAL_CAP = 10_000
# BurstTest.critical by (expected per minute, minutes, alpha, min count, min ratio): the
# stories of a watch open their windows with the same expected rate within a minute
_THRESHOLDS: dict[tuple[float, int, float, int, float], int] = {}


def poisson_tail(k: int, lam: float) -> float:
    """``P(X >= k)`` for a Poisson variable with mean ``lam``."""
    if k <= 0:
        return 1.0
    if lam <= 0:
        return 0.0
    # P(X <= k-1) summed in log space from the mode side would be exact but slow for
    # large k; sum the upper tail directly from k while terms matter.
    log_term = -lam + k * math.log(lam) - math.lgamma(k + 1)
    total = 0.0
    i = k
    term = math.exp(log_term)
    while True:
        total += term
        i += 1
        term *= lam / i
        if term < total * 1e-12 or i > k + 10_000:
            break
    return min(total, 1.0)


def critical_count(lam: float, alpha: float) -> int:
    """The smallest k with ``P(X >= k) <= alpha``. ``lam`` is first rounded up to a grid
    of 1 % steps (the cache then holds a few hundred entries, and the count errs on the
    side of fewer bursts)."""
    if lam <= 0:
        return 1
    lam = math.exp(math.ceil(math.log(lam) * 100) / 100)
    key = (lam, alpha)
    cached = _CRITICAL.get(key)
    if cached is not None:
        return cached
    k = max(1, math.floor(lam))
    tail = poisson_tail(k, lam)
    pmf = math.exp(-lam + k * math.log(lam) - math.lgamma(k + 1))  # P(X = k)
    while tail > alpha:  # P(X >= k + 1) = P(X >= k) - P(X = k)
        tail -= pmf
        k += 1
        pmf *= lam / k
    if len(_CRITICAL) >= _CRITICAL_CAP:
        _CRITICAL.clear()
    _CRITICAL[key] = k
    return k


def event_minute(at: datetime) -> int:
    return math.floor(at.timestamp() / 60)


def hour_of_week(minute: int) -> int:
    """0 = Monday 00:00-00:59 UTC ... 167 (epoch minute 0 was a Thursday)."""
    return (minute // 60 + 3 * 24) % 168


class SeasonalBaseline:
    """Usual mentions per minute by hour of the week, with an all-hours fallback."""

    def __init__(self, half_life_minutes: float, warmup_minutes: int, floor: float) -> None:
        self._keep = 0.5 ** (1.0 / half_life_minutes)
        self._warmup = warmup_minutes
        self._floor = floor
        self._slots = [0.0] * 168
        self._seen = [0] * 168  # minutes folded into each slot
        self._overall = 0.0
        self._overall_seen = 0
        self._open_minute: int | None = None
        self._count = 0

    def add(self, at: datetime) -> None:
        self.add_minute(event_minute(at))

    def add_minute(self, minute: int) -> None:
        """``add`` for a mention in event minute ``minute`` (the detector computes it once)."""
        if self._open_minute is None:
            self._open_minute = minute
        elif minute > self._open_minute:
            self._fold(self._open_minute, self._count)
            # empty minutes in between (at most a week of them: more adds nothing new)
            start = self._open_minute + 1
            self._fold_empty(start, min(minute, start + 168 * 60))
            self._open_minute = minute
            self._count = 0
        self._count += 1  # a late mention counts in the open minute

    def _fold(self, minute: int, count: int) -> None:
        slot = hour_of_week(minute)
        take = 1.0 - self._keep
        if self._seen[slot] == 0:
            self._slots[slot] = float(count)
        else:
            self._slots[slot] = take * count + self._keep * self._slots[slot]
        self._seen[slot] += 1
        if self._overall_seen == 0:
            self._overall = float(count)
        else:
            self._overall = take * count + self._keep * self._overall
        self._overall_seen += 1

    def _fold_empty(self, start: int, end: int) -> None:
        """Fold the empty minutes ``start`` .. ``end - 1``, an hour-of-week slot at a time."""
        m = start
        while m < end:
            chunk_end = min(end, (m // 60 + 1) * 60)
            n = chunk_end - m
            slot = hour_of_week(m)
            decay = self._keep**n
            self._slots[slot] = 0.0 if self._seen[slot] == 0 else self._slots[slot] * decay
            self._seen[slot] += n
            self._overall = 0.0 if self._overall_seen == 0 else self._overall * decay
            self._overall_seen += n
            m = chunk_end

    def per_minute(self, at: datetime) -> float | None:
        """The usual rate at ``at``'s hour of the week (None before any warm-up)."""
        return self.per_minute_at(event_minute(at))

    def per_minute_at(self, minute: int) -> float | None:
        """``per_minute`` for event minute ``minute``."""
        slot = (minute // 60 + 3 * 24) % 168  # hour_of_week, inlined (once per mention)
        if self._seen[slot] >= self._warmup:
            return max(self._slots[slot], self._floor)
        if self._overall_seen >= self._warmup:
            return max(self._overall, self._floor)
        return None


class BurstWindow:
    """One tumbling window length: the open window's count and whether the previous one
    was hot."""

    __slots__ = ("count", "critical", "index", "minutes", "previous_hot")

    def __init__(self, minutes: int) -> None:
        self.minutes = minutes
        self.index: int | None = None
        self.count = 0
        self.previous_hot = False
        self.critical: int | None = None

    def add(self, minute: int, expected_per_minute: float | None, test: BurstTest) -> None:
        index = minute // self.minutes
        if self.index is None or index > self.index:
            was_hot = self.hot
            self.previous_hot = was_hot and self.index is not None and index == self.index + 1
            self.index = index
            self.count = 0
            self.critical = test.critical(expected_per_minute, self.minutes)
        self.count += 1  # a late mention counts in the open window

    def absorb(self, other: BurstWindow) -> None:
        """Count ``other``'s open window too (a story merged into this one): the later
        of the two open windows stays open; the same window adds up."""
        if other.index is None or (self.index is not None and other.index < self.index):
            return
        if self.index is not None and other.index == self.index:
            self.count += other.count
            self.previous_hot = self.previous_hot or other.previous_hot
            if self.critical is None:
                self.critical = other.critical
            return
        was_hot = self.hot and self.index is not None and other.index == self.index + 1
        self.index, self.count, self.critical = other.index, other.count, other.critical
        self.previous_hot = other.previous_hot or was_hot

    @property
    def hot(self) -> bool:
        return self.critical is not None and self.count >= self.critical

    @property
    def bursting(self) -> bool:
        return self.hot and self.previous_hot


class BurstTest:
    def __init__(
        self, windows: Sequence[int], alpha: float, min_count: int, min_ratio: float = 1.0
    ) -> None:
        """``min_ratio``: a hot window also holds this many times the expected count (real
        counts are overdispersed: a Poisson tail alone calls too many bursts on busy
        baselines)."""
        self.windows = tuple(BurstWindow(m) for m in windows)
        self._alpha = alpha
        self._min_count = min_count
        self._min_ratio = min_ratio

    def critical(self, expected_per_minute: float | None, minutes: int) -> int | None:
        """The count a window of ``minutes`` must reach (None: no baseline yet)."""
        if expected_per_minute is None:
            return None
        key = (expected_per_minute, minutes, self._alpha, self._min_count, self._min_ratio)
        known = _THRESHOLDS.get(key)
        if known is not None:
            return known
        expected = expected_per_minute * minutes
        count = max(
            critical_count(expected, self._alpha),
            self._min_count,
            math.ceil(self._min_ratio * expected),
        )
        if len(_THRESHOLDS) >= _CRITICAL_CAP:
            _THRESHOLDS.clear()
        _THRESHOLDS[key] = count
        return count

    def add(self, at: datetime, expected_per_minute: float | None) -> None:
        self.add_minute(event_minute(at), expected_per_minute)

    def add_minute(self, minute: int, expected_per_minute: float | None) -> None:
        """``add`` for a mention in event minute ``minute``."""
        for window in self.windows:
            index = window.index
            if index is not None and minute // window.minutes <= index:
                window.count += 1  # the open window (or a late mention): just count
            else:
                window.add(minute, expected_per_minute, self)

    def absorb(self, other: BurstTest) -> None:
        """Count ``other``'s open windows too (same window lengths: one config)."""
        for mine, theirs in zip(self.windows, other.windows, strict=True):
            mine.absorb(theirs)

    def bursting(self, now: datetime) -> tuple[int, ...]:
        """The window lengths (minutes) bursting at ``now`` (a window that has closed
        without a newer mention no longer bursts)."""
        return self.bursting_at(event_minute(now))

    def bursting_at(self, minute: int) -> tuple[int, ...]:
        """``bursting`` at event minute ``minute``."""
        found: tuple[int, ...] = ()
        for w in self.windows:
            # inlined ``w.bursting``: a hot previous window is checked first (rarely true)
            if (
                w.previous_hot
                and w.index == minute // w.minutes
                and w.critical is not None
                and w.count >= w.critical
            ):
                found += (w.minutes,)
        return found

    def counts(self, now: datetime) -> list[int]:
        """The count of each window length's window open at ``now``."""
        return self.counts_at(event_minute(now))

    def counts_at(self, minute: int) -> list[int]:
        """``counts`` at event minute ``minute``."""
        return [w.count if w.index == minute // w.minutes else 0 for w in self.windows]

    def count(self, minutes: int, now: datetime) -> int:
        """The count of the window of this length open at ``now``."""
        minute = event_minute(now)
        for w in self.windows:
            if w.minutes == minutes:
                return w.count if w.index == minute // w.minutes else 0
        raise KeyError(minutes)
