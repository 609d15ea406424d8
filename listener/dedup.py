"""Dedup by mention id: the same post arriving twice (a source's overlap, a redelivered
webhook batch, a replay loop) is published once.

``Deduplicator`` is bounded and in memory: it remembers the ``capacity`` most recently
seen ids (LRU, O(1) per call), so a restart forgets them and a very old id can come back.
Downstream stages are idempotent on the event id, so a rare repeat costs a little work,
never a second alert. A persistent variant (a database table or Redis with TTL, shared by
several listener processes) is a later issue; it implements the same ``Dedup`` protocol.

Memory: each id is remembered by a 128-bit digest of it (BLAKE2b), not the id itself,
so about 155 bytes per id whatever its length (a feed item keyed by a long link, a
webhook sender's 500-character id: the ids themselves cost up to ~1 KB each), ~155 MB at
the default capacity of one million. Two ids share a digest with a probability of about
2**-128 per pair: negligible.

``InFlight``: the delivery keys a webhook request is publishing now, so that a second
request with one of them (the sender's retry of a slow request) waits for the first's
outcome instead of being answered "duplicate" while the first may still fail.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Protocol

from core.events import Mention


def delivery_key(mention: Mention) -> str:
    """What dedup remembers: the id, plus the change for edits and deletions (an edit is
    a new version of a known id, not a duplicate of it) and what tells edits apart: their
    ``edited_at`` or, for an edit without one, a digest of its text. (Without it, a
    webhook sender's second untimed edit of a post had the first's key and was dropped
    as a duplicate; an exact redelivery of an edit still has its key.)"""
    if mention.change == "created":
        return mention.id
    if mention.edited_at is not None:
        stamp = mention.edited_at.isoformat()
    elif mention.change == "edited":
        text = mention.text.encode("utf-8", "surrogatepass")
        stamp = "~" + hashlib.blake2b(text, digest_size=12).hexdigest()
    else:
        stamp = ""
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
        self._ids: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, mention_id: object) -> bool:
        return isinstance(mention_id, str) and _digest(mention_id) in self._ids

    def seen(self, mention_id: str) -> bool:
        ids = self._ids
        key = _digest(mention_id)
        if key in ids:
            ids.move_to_end(key)
            return True
        ids[key] = None
        if len(ids) > self.capacity:
            ids.popitem(last=False)
        return False

    def forget(self, mention_id: str) -> None:
        self._ids.pop(_digest(mention_id), None)


def _digest(mention_id: str) -> bytes:
    # surrogatepass: an id is never refused here (a Mention's id holds no lone surrogate)
    return hashlib.blake2b(mention_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class InFlight:
    """Delivery keys being published by one request, each until that request ends.

    ``claim(keys)`` waits while another request holds any of ``keys``, then holds them
    all (taken at once, with no wait in between: two requests never wait on each other).
    A request answered "duplicate" for a mention that another request was still
    publishing told its sender the mention was kept; if that publication then failed,
    dedup forgot the id and no one sent it again.
    """

    def __init__(self) -> None:
        self._held: dict[str, asyncio.Event] = {}
        self.waiting = 0  # requests waiting for another's outcome now

    def __len__(self) -> int:
        return len(self._held)

    def holds(self, keys: Iterable[str]) -> bool:
        """Whether another request holds any of ``keys`` now (``claim`` would wait)."""
        return any(key in self._held for key in keys)

    @asynccontextmanager
    async def claim(self, keys: Iterable[str]) -> AsyncIterator[None]:
        wanted = set(keys)
        while busy := [self._held[key] for key in wanted if key in self._held]:
            self.waiting += 1
            try:
                await busy[0].wait()
            finally:
                self.waiting -= 1
        done = asyncio.Event()
        for key in wanted:
            self._held[key] = done
        try:
            yield
        finally:
            for key in wanted:
                del self._held[key]
            done.set()
