"""The dead-letter limit: a consumer that dead-letters too fast stops, loudly.

A burst of dead letters usually means a bug or a broken dependency, not a burst of bad
events: dead-lettering the whole stream would empty it into the ``.dlq`` topic, where
nobody looks. So each subscription (topic, group) may dead-letter at most ``limit``
records in any 60-second window; the next one raises ``ConsumerHalted`` instead. The
transports then leave the batch in flight uncommitted and stop that subscription's loop:
its records stay in the log, and a restart after the fix resumes there.

A handler that fails on every event (a bad deploy, a dependency down) is retried for
seconds per event before each dead letter, too slowly for that rate: so each subscription
may also see at most ``max_failures_in_a_row`` events in a row fail through all their
retries; the next failure halts it the same way (``FailureStreak``), before that event is
dead-lettered. Any event handled resets the streak.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_S = 60.0


@dataclass(frozen=True)
class Halt:
    """Why a subscription stopped."""

    topic: str
    group: str
    count: int  # dead letters in the last window (or failures in a row) when it stopped
    reason: str  # the reason of the dead letter that was one too many
    in_a_row: bool = False  # stopped by failures in a row, not by the dead-letter rate

    def describe(self) -> str:
        what = (
            "events in a row failed through every retry"
            if self.in_a_row
            else f"dead letters within {WINDOW_S:.0f} s"
        )
        last = f"(last: {self.reason})"
        return f"consumer {self.topic}/{self.group} halted: {self.count} {what} {last}"


class ConsumerHalted(Exception):
    """Raised out of ``Bus.process`` when a subscription exceeded its dead-letter limit.

    The transport must not commit the batch in flight, and must stop the subscription."""

    def __init__(self, halt: Halt) -> None:
        super().__init__(halt.describe())
        self.halt = halt


class DeadLetterRate:
    """Dead letters of each (topic, group) in a sliding 60-s window (``limit`` 0: none).

    ``clock`` is a monotonic clock in seconds (injected by tests)."""

    def __init__(self, limit: int, clock: Callable[[], float]) -> None:
        if limit < 0:
            raise ValueError("the dead-letter limit must not be negative")
        self.limit = limit
        self._clock = clock
        self._times: dict[tuple[str, str], deque[float]] = {}

    def _window(self, key: tuple[str, str]) -> deque[float]:
        times = self._times.setdefault(key, deque())
        horizon = self._clock() - WINDOW_S
        while times and times[0] <= horizon:
            times.popleft()
        return times

    def full(self, topic: str, group: str) -> int | None:
        """The window's count when one more dead letter would exceed the limit, else None."""
        if self.limit == 0:
            return None
        count = len(self._window((topic, group)))
        return count if count >= self.limit else None

    def add(self, topic: str, group: str) -> None:
        if self.limit == 0:
            return
        times = self._window((topic, group))
        times.append(self._clock())
        while len(times) > self.limit:  # never more than ``limit`` kept
            times.popleft()

    def reset(self) -> None:
        self._times.clear()


class FailureStreak:
    """Events of each (topic, group) that failed through every retry since the last one
    handled (``limit`` 0: no limit)."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError("the limit of failures in a row must not be negative")
        self.limit = limit
        self._streak: dict[tuple[str, str], int] = {}

    def full(self, topic: str, group: str) -> int | None:
        """The streak when one more failure would exceed the limit, else None."""
        count = self._streak.get((topic, group), 0)
        return count if self.limit and count >= self.limit else None

    def failed(self, topic: str, group: str) -> None:
        self._streak[(topic, group)] = self._streak.get((topic, group), 0) + 1

    def handled(self, topic: str, group: str) -> None:
        self._streak.pop((topic, group), None)

    def reset(self) -> None:
        self._streak.clear()
