"""The dead-letter limit: a consumer that dead-letters too fast stops, loudly.

A burst of dead letters usually means a bug or a broken dependency, not a burst of bad
events: dead-lettering the whole stream would empty it into the ``.dlq`` topic, where
nobody looks. So each subscription (topic, group) may dead-letter at most ``limit``
records in any 60-second window; the next one raises ``ConsumerHalted`` instead. The
transports then leave the batch in flight uncommitted and stop that subscription's loop:
its records stay in the log, and a restart after the fix resumes there.
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
    count: int  # dead letters in the last window when it stopped
    reason: str  # the reason of the dead letter that was one too many

    def describe(self) -> str:
        return (
            f"consumer {self.topic}/{self.group} halted: {self.count} dead letters within "
            f"{WINDOW_S:.0f} s (last: {self.reason})"
        )


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
