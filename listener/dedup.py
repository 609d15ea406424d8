"""Dedup by mention id: the same post arriving twice (a source's overlap, a redelivered
webhook batch, a replay loop) is published once.

``Deduplicator`` is bounded and in memory: it remembers the ``capacity`` most recently
seen ids (LRU, O(1) per call), so a restart forgets them and a very old id can come back.
Downstream stages are idempotent on the event id, so a rare repeat costs a little work,
never a second alert. A persistent variant (a database table or Redis with TTL, shared by
several listener processes) is a later issue; it implements the same ``Dedup`` protocol.

Memory: about 180 bytes per remembered id of 40 characters, ~180 MB at the default
capacity of one million.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

from core.events import Mention


def delivery_key(mention: Mention) -> str:
    """What dedup remembers: the id, plus the change for edits and deletions (an edit is
    a new version of a known id, not a duplicate of it)."""
    if mention.change == "created":
        return mention.id
    stamp = mention.edited_at.isoformat() if mention.edited_at else ""
    return f"{mention.id}#{mention.change}{stamp}"


class Dedup(Protocol):
    def seen(self, mention_id: str) -> bool:
        """Mark ``mention_id`` as seen; True when it had been seen before."""
        ...

    def forget(self, mention_id: str) -> None:
        """Unmark ``mention_id`` (its publication failed: it must be accepted again)."""
        ...


class Deduplicator:
    def __init__(self, capacity: int = 1_000_000) -> None:
        if capacity < 1:
            raise ValueError("dedup capacity must be at least 1")
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, mention_id: object) -> bool:
        return mention_id in self._ids

    def seen(self, mention_id: str) -> bool:
        ids = self._ids
        if mention_id in ids:
            ids.move_to_end(mention_id)
            return True
        ids[mention_id] = None
        if len(ids) > self.capacity:
            ids.popitem(last=False)
        return False

    def forget(self, mention_id: str) -> None:
        self._ids.pop(mention_id, None)
