"""Which watches a recent mention matched, so that its reposts and replies follow it.

A repost usually has no text of its own (Twitter retweets, Weibo reposts, Bluesky
reposts): it belongs to the story, and so to the watches, of what it reposts. The index
is bounded (LRU): a repost of a mention forgotten long ago, or of one that arrives after
it, matches on its own text only.

The index lives in memory; ``listener.cascade_store`` keeps a copy in the database so
that it survives a restart. For that copy the index can note which entries were used
(``track_touches``): a cascade still being reposted stays among the most recent entries
there too.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping

from core.events import WatchMatch


class CascadeIndex:
    def __init__(self, capacity: int = 500_000, *, track_touches: bool = False) -> None:
        if capacity < 1:
            raise ValueError("cascade capacity must be at least 1")
        self.capacity = capacity
        self._watches: OrderedDict[str, Mapping[str, WatchMatch]] = OrderedDict()
        self._touched: dict[str, None] | None = {} if track_touches else None

    def __len__(self) -> int:
        return len(self._watches)

    def remember(self, mention_id: str, matches: list[WatchMatch]) -> None:
        if not matches:
            return
        self._watches[mention_id] = {m.id: m for m in matches}
        self._watches.move_to_end(mention_id)
        if len(self._watches) > self.capacity:
            self._watches.popitem(last=False)

    def watches_of(self, mention_id: str | None) -> Mapping[str, WatchMatch]:
        """The watches ``mention_id`` matched (empty when unknown or forgotten). The
        mapping is shared: read it, never change it."""
        if mention_id is None:
            return {}
        found = self._watches.get(mention_id)
        if found is None:
            return {}
        self._watches.move_to_end(mention_id)  # an active cascade stays remembered
        touched = self._touched
        if touched is not None and mention_id not in touched:
            touched[mention_id] = None
            if len(touched) > self.capacity:  # (the first noted: long evicted, or saved)
                del touched[next(iter(touched))]
        return found

    def take_touched(self) -> list[str]:
        """The ids used by ``watches_of`` since the last call (in order of first use)."""
        if not self._touched:
            return []
        touched, self._touched = list(self._touched), {}
        return touched

    def restore(self, entries: Iterable[tuple[str, Mapping[str, WatchMatch]]]) -> int:
        """Add ``entries`` (most recent first) behind everything the index holds, as
        less recently used: an id it knows keeps what it knows, and nothing is added
        once the index is full. Returns the number added."""
        added = 0
        for mention_id, matches in entries:
            if len(self._watches) >= self.capacity:
                break
            if not matches or mention_id in self._watches:
                continue
            self._watches[mention_id] = matches
            self._watches.move_to_end(mention_id, last=False)
            added += 1
        return added
