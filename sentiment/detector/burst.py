"""The burst layer: counts in sliding event-time windows tested against a baseline that
knows the hour of the week, with a persistence gate.

``poisson_tail(k, lam)`` is ``P(X >= k)`` for ``X ~ Poisson(lam)``: exact for small
counts, where a z-score would be wrong. ``critical_count(lam, alpha)`` is the smallest
count whose tail is at most ``alpha`` (cached: the same few rates come up again and
again).

``SeasonalBaseline`` is the usual mentions per minute for each of the 168 hours of the
week (an EWMA per hour-of-week slot, over the minutes that slot has seen), falling back to
the all-hours EWMA while a slot is young. Empty minutes count as zero.

``BurstTest`` holds one ``BurstWindow`` per window length ``W`` (1, 5, 15, 60 minutes by
default). The windows slide by the event minute: at minute ``m`` a window counts the
mentions of minutes ``m - W + 1`` .. ``m`` (so a burst is seen as soon as it is one,
wherever it starts on the clock; tumbling windows split a burst at their edges). A
window is *hot* when its count reaches the critical count of the expected count
(baseline per minute x ``W``, from before a burst: that of its oldest minute) at
``alpha``, and at least ``min_count`` (below it no critical count is worked out at all);
a story *bursts* in ``W`` when the last ``W`` minutes are hot and the ``W`` minutes
before them were too (two consecutive windows, not overlapping: one unlucky minute is
not a burst, whatever the window). The state is, per window, the counts of the last
``2W`` minutes that had mentions, and two sums, kept as minutes come and go (a mention
costs the same however long the window).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from typing import Any

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
    """One sliding window length ``W``: the mentions of the last ``W`` event minutes (the
    window ending at the newest minute seen: ``recent``, ``current`` of them) and of the
    ``W`` minutes before them (``older``, ``earlier``: the persistence gate's window), as
    ``[minute, count, usual, critical]`` for each minute that had mentions; ``usual`` is
    the watch's expected mentions per minute when that minute's first mention came (None:
    no baseline yet, or not known), ``critical`` the count it makes a window reach (None
    until asked).

    A window is tested against the usual rate of its oldest minute with a known one: from
    before a burst, not one the burst has already raised (the watch's baseline counts the
    burst too), as a tumbling window kept the count it opened with. ``BurstTest`` turns it
    into a critical count, and only for a window that holds ``min_count`` mentions.

    As the newest minute moves on, minutes pass from ``recent`` to ``older`` and out, each
    once: a mention costs the same however long the windows are. A late mention counts in
    the minute it is dated, if that is still within the ``2W`` minutes."""

    __slots__ = ("current", "earlier", "minutes", "newest", "older", "recent")

    def __init__(self, minutes: int) -> None:
        self.minutes = minutes
        self.recent: deque[list[Any]] = deque()  # minutes newest - W + 1 .. newest
        self.older: deque[list[Any]] = deque()  # minutes newest - 2W + 1 .. newest - W
        self.newest: int | None = None
        self.current = 0  # mentions in ``recent``
        self.earlier = 0  # mentions in ``older``

    def add(self, minute: int, expected_per_minute: float | None) -> None:
        newest = self.newest
        if newest is not None and minute == newest:
            self.recent[-1][1] += 1
            self.current += 1
        elif newest is None or minute > newest:
            self.recent.append([minute, 1, expected_per_minute, None])
            self.current += 1
            self._advance(minute)
        else:
            self._add_late(minute, newest, expected_per_minute)

    def critical(self, older: bool, test: BurstTest) -> int | None:
        """The critical count of ``recent`` (or ``older``) as of the newest minute: that of
        its oldest minute with a usual rate, worked out once and kept in that minute's
        entry (the 4th field)."""
        for entry in self.older if older else self.recent:
            if entry[2] is not None:
                critical: int | None = entry[3]
                if critical is None:
                    critical = entry[3] = test.critical(entry[2], self.minutes)
                return critical
        return None

    def _advance(self, newest: int) -> None:
        """Make ``newest`` the newest minute: minutes leave ``recent`` for ``older``, and
        ``older`` for good."""
        self.newest = newest
        recent, older = self.recent, self.older
        split, oldest = newest - self.minutes, newest - 2 * self.minutes
        while recent[0][0] <= split:
            entry = recent.popleft()
            self.current -= entry[1]
            if entry[0] > oldest:
                older.append(entry)
                self.earlier += entry[1]
        while older and older[0][0] <= oldest:
            self.earlier -= older.popleft()[1]

    def _add_late(self, minute: int, newest: int, expected_per_minute: float | None) -> None:
        if minute <= newest - 2 * self.minutes:
            return  # older than both windows: nothing here to count it in
        if minute > newest - self.minutes:
            entries = self.recent
            self.current += 1
        else:
            entries = self.older
            self.earlier += 1
        i = len(entries)
        while i > 0 and entries[i - 1][0] > minute:
            i -= 1
        if i > 0 and entries[i - 1][0] == minute:
            entries[i - 1][1] += 1
        else:
            entries.insert(i, [minute, 1, expected_per_minute, None])

    def at(self, minute: int) -> tuple[int, int, float | None, float | None]:
        """(count, usual rate) of the last ``W`` minutes and of the ``W`` before them, as
        of event minute ``minute`` (any minute from the newest on)."""
        if minute == self.newest:
            return self.current, self.earlier, _usual(self.recent), _usual(self.older)
        split, oldest = minute - self.minutes, minute - 2 * self.minutes
        current = earlier = 0
        usual: float | None = None
        earlier_usual: float | None = None
        for m, c, u, _ in reversed((*self.older, *self.recent)):
            if m > minute:
                continue
            if m <= oldest:
                break
            if m > split:
                current += c
                usual = u if u is not None else usual
            else:
                earlier += c
                earlier_usual = u if u is not None else earlier_usual
        return current, earlier, usual, earlier_usual

    def counts_at(self, minute: int) -> tuple[int, int]:
        """(the last ``W`` minutes, the ``W`` before them) as of event minute ``minute``."""
        if minute == self.newest:
            return self.current, self.earlier
        current, earlier, _, _ = self.at(minute)
        return current, earlier

    def absorb(self, other: BurstWindow) -> None:
        """Count ``other``'s mentions too (a story merged into this one), minute by
        minute (a minute both counted keeps the lower usual rate)."""
        if other.newest is None:
            return
        merged: dict[int, list[Any]] = {}
        for m, c, u, _ in (*self.older, *self.recent, *other.older, *other.recent):
            seen = merged.get(m)
            if seen is None:
                merged[m] = [m, c, u, None]
            else:
                seen[1] += c
                if seen[2] is None or (u is not None and u < seen[2]):
                    seen[2] = u
        newest = other.newest if self.newest is None else max(self.newest, other.newest)
        self._refill([merged[m] for m in sorted(merged)], newest)

    def _refill(self, entries: list[list[Any]], newest: int | None) -> None:
        self.newest = newest
        if newest is None:
            self.recent, self.older, self.current, self.earlier = deque(), deque(), 0, 0
            return
        split, oldest = newest - self.minutes, newest - 2 * self.minutes
        self.recent = deque(e for e in entries if split < e[0] <= newest)
        self.older = deque(e for e in entries if oldest < e[0] <= split)
        self.current = sum(e[1] for e in self.recent)
        self.earlier = sum(e[1] for e in self.older)

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        """Also a snapshot of the tumbling windows before (``STATE_FORMAT`` 6): the open
        window's count is placed at its first minute, with no usual rate (it kept only its
        critical count); the window before it, whose count was not kept, counts as empty.
        So a story bursting at the upgrade bursts again once the window before is hot
        again, and is tested against the usual rate of the minutes after the upgrade."""
        slots = state[1]
        if "index" not in slots:
            for name, value in slots.items():
                setattr(self, name, value)
            return
        minutes, index, count = int(slots["minutes"]), slots["index"], int(slots["count"])
        self.minutes = minutes
        self._refill([], None)
        if isinstance(index, int) and count > 0:
            self._refill([[index * minutes, count, None, None]], index * minutes)


def _usual(entries: deque[list[Any]]) -> float | None:
    """The usual rate of the oldest of ``entries`` that knows one."""
    for entry in entries:
        if entry[2] is not None:
            return float(entry[2])
    return None


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

    def criticals(self, window: BurstWindow, minute: int) -> tuple[int | None, int | None]:
        """The counts ``window``'s last ``W`` minutes and the ``W`` before them must reach
        as of event minute ``minute``."""
        _, _, usual, earlier_usual = window.at(minute)
        return self.critical(usual, window.minutes), self.critical(earlier_usual, window.minutes)

    def hot(self, window: BurstWindow, minute: int) -> bool:
        """``window``'s last ``W`` minutes reach their critical count at ``minute``."""
        current, _, usual, _ = window.at(minute)
        critical = self.critical(usual, window.minutes)
        return critical is not None and current >= critical

    def add(self, at: datetime, expected_per_minute: float | None) -> None:
        self.add_minute(event_minute(at), expected_per_minute)

    def add_minute(self, minute: int, expected_per_minute: float | None) -> None:
        """``add`` for a mention in event minute ``minute``."""
        for window in self.windows:
            newest = window.newest
            if newest == minute:  # the newest minute (most mentions): just count
                window.recent[-1][1] += 1
                window.current += 1
            elif newest is None or minute > newest:  # a new minute (``BurstWindow.add``)
                window.recent.append([minute, 1, expected_per_minute, None])
                window.current += 1
                window._advance(minute)
            else:
                window._add_late(minute, newest, expected_per_minute)

    def absorb(self, other: BurstTest) -> None:
        """Count ``other``'s open windows too (same window lengths: one config)."""
        for mine, theirs in zip(self.windows, other.windows, strict=True):
            mine.absorb(theirs)

    def bursting(self, now: datetime) -> tuple[int, ...]:
        """The window lengths (minutes) bursting at ``now``: the last that many minutes
        and the as many before them both hot (as of ``now``: a story gone quiet stops
        bursting as its mentions leave the windows)."""
        return self.bursting_at(event_minute(now))

    def bursting_at(self, minute: int) -> tuple[int, ...]:
        """``bursting`` at event minute ``minute``."""
        found: tuple[int, ...] = ()
        floor = self._min_count
        for w in self.windows:
            if minute == w.newest:  # the usual case: no critical count below the floor
                current, earlier = w.current, w.earlier
                if current < floor or earlier < floor:
                    continue
                critical = w.critical(False, self)
                if critical is None or current < critical:
                    continue  # (the earlier window's count is not worked out)
                earlier_critical = w.critical(True, self)
            else:
                current, earlier, usual, earlier_usual = w.at(minute)
                if current < floor or earlier < floor:
                    continue
                critical = self.critical(usual, w.minutes)
                earlier_critical = self.critical(earlier_usual, w.minutes)
            if (
                critical is not None
                and earlier_critical is not None
                and current >= critical
                and earlier >= earlier_critical
            ):
                found += (w.minutes,)
        return found

    def counts(self, now: datetime) -> list[int]:
        """Each window length's count over the last that many minutes at ``now``."""
        return self.counts_at(event_minute(now))

    def counts_at(self, minute: int) -> list[int]:
        """``counts`` at event minute ``minute``."""
        return [w.current if w.newest == minute else w.counts_at(minute)[0] for w in self.windows]

    def count(self, minutes: int, now: datetime) -> int:
        """The count over the last ``minutes`` minutes at ``now`` (a window length)."""
        minute = event_minute(now)
        for w in self.windows:
            if w.minutes == minutes:
                return w.counts_at(minute)[0]
        raise KeyError(minutes)
