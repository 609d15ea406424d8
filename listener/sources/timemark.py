"""A "since" cursor for APIs that filter by a creation time in whole seconds.

Asking for items at or after second ``t`` (never strictly after: two items can share a
second, and the second one may not be indexed yet when the first is read) returns again
the items of second ``t`` that were delivered; ``ids`` remembers those, so each item is
taken once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


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
