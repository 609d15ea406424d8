"""Which watches a recent mention matched, so that its reposts and replies follow it.

A repost usually has no text of its own (Twitter retweets, Weibo reposts, Bluesky
reposts): it belongs to the story, and so to the watches, of what it reposts. The index
is bounded (LRU): a repost of a mention forgotten long ago, or of one that arrives after
it, matches on its own text only.
"""

from __future__ import annotations

from collections import OrderedDict

from core.events import WatchMatch


class CascadeIndex:
    def __init__(self, capacity: int = 500_000) -> None:
        if capacity < 1:
            raise ValueError("cascade capacity must be at least 1")
        self.capacity = capacity
        self._watches: OrderedDict[str, dict[str, WatchMatch]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._watches)

    def remember(self, mention_id: str, matches: list[WatchMatch]) -> None:
        if not matches:
            return
        self._watches[mention_id] = {m.id: m for m in matches}
        self._watches.move_to_end(mention_id)
        if len(self._watches) > self.capacity:
            self._watches.popitem(last=False)

    def watches_of(self, mention_id: str | None) -> dict[str, WatchMatch]:
        """The watches ``mention_id`` matched (empty when unknown or forgotten)."""
        if mention_id is None:
            return {}
        found = self._watches.get(mention_id)
        if found is None:
            return {}
        self._watches.move_to_end(mention_id)  # an active cascade stays remembered
        return found
