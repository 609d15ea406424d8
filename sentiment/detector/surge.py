"""The watch-level burst: a brand-wide surge without one dominant story.

Every mention of the watch feeds a ``BurstTest`` over the watch's total (baseline: the
watch's hour-of-week rate, ``surge_alpha``, ``surge_min_count``, ``surge_min_ratio``;
windows of at least ``surge_min_window_minutes``). While one of its windows bursts (the
last ``W`` minutes and the ``W`` before them hot), and no single story holds
``surge_max_story_share`` of the last ``W`` minutes' mentions, the watch *surges*: many
stories at once (a product launch gone wrong, a wave of copy-paste complaints that do not
near-duplicate). A surge dominated by one story is that story's business: its own heat
reports it. A story's share is the largest count it reached within the window, over the
watch's count now: a story that dominated the window and is slowing still counts whole.

The surge level (0/1) is held like the story levels (rises at once, falls after the
cool-down); the detector reports its changes as Signals of kind ``"surge"``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sentiment.detector.burst import BurstTest, event_minute
from sentiment.detector.config import DetectorConfig
from sentiment.detector.policy import TIMES, Held


@dataclass(frozen=True)
class SurgeState:
    level: int
    window_minutes: int
    count: int
    expected: float | None
    top_share: float

    def explain(self) -> str:
        if self.level == 0:
            return "The brand-wide surge is over: mention volume is back to its usual level."
        usual = ""
        if self.expected is not None and self.expected > 0:
            ratio = self.count / self.expected
            usual = f", {ratio:.0f}{TIMES} the usual for this hour of the week"
        return (
            f"Brand-wide surge: {self.count} posts in the last {self.window_minutes} min"
            f"{usual}, spread over many stories (the largest holds {self.top_share:.0%})."
        )


class WatchSurge:
    def __init__(self, config: DetectorConfig) -> None:
        self._all_windows = tuple(config.burst_windows_minutes)
        self._windows = tuple(
            w for w in config.burst_windows_minutes if w >= config.surge_min_window_minutes
        ) or (config.burst_windows_minutes[-1],)
        self._test = BurstTest(
            self._windows, config.surge_alpha, config.surge_min_count, config.surge_min_ratio
        )
        # positions in ``burst_windows_minutes`` of the windows tested here
        self._picked = tuple((i, m) for i, m in enumerate(self._all_windows) if m in self._windows)
        self._max_share = config.surge_max_story_share
        # per window length: the largest story counts seen in the last that many minutes,
        # as [minute, count] with counts decreasing (a sliding maximum)
        self._top: dict[int, deque[list[int]]] = {m: deque() for m in self._windows}
        self._expected: float | None = None
        self._calm = SurgeState(0, self._windows[0], 0, None, 0.0)
        self.held = Held()
        self.reported = 0
        self.signals = 0

    @property
    def burst_windows(self) -> tuple[int, ...]:
        """The ``burst_windows_minutes`` this watch's objects were built with (each story's
        counts come in this order)."""
        return self._all_windows

    def add(
        self,
        minute: int,
        expected_per_minute: float | None,
        story: BurstTest,
        now_minute: int,
    ) -> None:
        """One mention of the watch, in event minute ``minute``; ``story``: its story's
        burst windows (of ``burst_windows_minutes``) after it was counted, read at the
        watch's event minute ``now_minute``."""
        if len(story.windows) != len(self._all_windows):
            raise ValueError("the story's burst windows must be the watch's")
        self._test.add_minute(minute, expected_per_minute)
        self._expected = expected_per_minute
        windows = story.windows
        for i, minutes in self._picked:
            top = self._top[minutes]
            if top and minute < top[-1][0]:
                # a late mention of an earlier minute: the current largest story stands
                # (taking it would read as "no story dominates": a false surge)
                continue
            w = windows[i]
            count = w.current if w.newest == now_minute else w.counts_at(now_minute)[0]
            while top and top[-1][1] <= count:
                top.pop()
            top.append([minute, count])
            while top[0][0] <= minute - minutes:
                top.popleft()

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Also a snapshot of the tumbling windows before (``STATE_FORMAT`` 6), which kept
        the largest story count per window as (window index, count)."""
        top = state.get("_top", {})
        for minutes in state.get("_windows", ()):
            kept = top.get(minutes)
            if isinstance(kept, tuple):
                index, count = kept
                top[minutes] = deque([[index * minutes, count]])
            elif kept is None:
                top[minutes] = deque()
        self.__dict__.update(state)

    def state(self, now: datetime, minute: int | None = None) -> SurgeState:
        """The raw surge level at ``now`` and what it rests on (the longest window).
        ``minute``: ``now``'s event minute, when the caller has it."""
        if minute is None:
            minute = event_minute(now)
        best = self._calm
        for minutes in self._test.bursting_at(minute):
            count = self._test.count(minutes, now)
            # the largest count a story reached within the window: an upper bound of its
            # count now, so a story that dominated the window is never missed
            top = max(
                (c for m, c in self._top[minutes] if minute - minutes < m <= minute), default=0
            )
            share = min(top / count, 1.0) if count else 0.0
            if share < self._max_share:
                expected = None if self._expected is None else self._expected * minutes
                best = SurgeState(1, minutes, count, expected, share)
        return best
