"""A "since" cursor for APIs that filter by a creation time in whole seconds.

Asking for items at or after second ``t`` (never strictly after: two items can share a
second, and the second one may not be indexed yet when the first is read) returns again
the items of second ``t`` that were delivered; ``ids`` remembers those, so each item is
taken once.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError

from core.events import Mention
from listener.sources.live import LiveSource, Step

Item = TypeVar("Item")


@dataclass
class TimeMark:
    t: int
    ids: list[str] = field(default_factory=list)

    def admits(self, t: int, item_id: str) -> bool:
        return t > self.t or (t == self.t and item_id not in self.ids)

    def advance(self, t: int, item_id: str) -> None:
        if t > self.t:
            self.t, self.ids = t, [item_id]
        elif t == self.t:
            self.ids = [*self.ids, item_id]

    def as_json(self) -> dict[str, Any]:
        return {"t": self.t, "ids": self.ids}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TimeMark:
        return cls(int(raw["t"]), [str(i) for i in raw.get("ids", [])])


def load_marks(cursor: str | None) -> dict[str, TimeMark]:
    if not cursor:
        return {}
    return {key: TimeMark.from_json(value) for key, value in json.loads(cursor).items()}


def dump_marks(marks: dict[str, TimeMark]) -> str:
    return json.dumps({key: mark.as_json() for key, mark in marks.items()})


async def poll_since(
    source: LiveSource,
    cursor: str | None,
    targets: Sequence[tuple[str, Callable[[int], Awaitable[list[Item]]]]],
    stamp: Callable[[Item], tuple[int, str]],
    to_mention: Callable[[Item], Mention],
    *,
    interval: Callable[[], float],
    lookback_minutes: float,
) -> AsyncIterator[Step]:
    """The polling loop of the "since" APIs: for each target (a query, a listing), fetch
    the items at or after its mark, oldest first, and yield the new ones with the cursor
    after each; then sleep ``interval()``. ``stamp(item)`` is (created second, id)."""
    marks = load_marks(cursor)
    start = int(source.started_at.timestamp() - lookback_minutes * 60)
    source.health.set_state("polling")
    while True:
        for key, fetch in targets:
            mark = marks.setdefault(key, TimeMark(start))
            for item in await fetch(mark.t):
                t, item_id = stamp(item)
                if not mark.admits(t, item_id):
                    continue
                mark.advance(t, item_id)
                try:
                    mention: Mention | None = to_mention(item)
                except (KeyError, TypeError, ValueError, ValidationError) as exc:
                    source.health.error(f"malformed item skipped: {type(exc).__name__}")
                    mention = None
                yield mention, dump_marks(marks)
        await source.clock.sleep(interval())
