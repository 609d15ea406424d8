"""The representative mentions a Signal carries: the story's root, then alternately its
most negative and its most followed mentions that have text of their own (bounded)."""

from __future__ import annotations

import heapq
import itertools

from core.events import Evidence, ScoredMention
from sentiment.textnorm import readable


def _trim(text: str, chars: int) -> str:
    text = readable(text, chars * 4)  # crawled text: "\\u2019" and "&amp;" as people read them
    return text if len(text) <= chars else text[: chars - 1].rstrip() + "…"


class EvidencePicker:
    def __init__(self, size: int, chars: int) -> None:
        self._size = size
        self._chars = chars
        self._root: Evidence | None = None
        self._seq = 0  # arrivals offered (a plain int: detector snapshots pickle it)
        # min-heaps of the best ``size``: (score, -arrival, evidence); arrival breaks ties,
        # so the evidence objects themselves are never compared.
        self._negative: list[tuple[float, int, Evidence]] = []
        self._followed: list[tuple[float, int, Evidence]] = []

    def offer(self, scored: ScoredMention, *, is_root: bool) -> None:
        mention = scored.mention
        if not mention.text.strip():
            return
        seq = self._seq
        self._seq += 1
        negative = (scored.sentiment.probs.get("negative", 0.0), -seq)
        followed = (float(mention.author.followers or 0), negative[1])
        if not is_root and not (
            self._better(self._negative, negative) or self._better(self._followed, followed)
        ):
            return  # not among the best: skip building it
        author = mention.author
        item = Evidence(
            id=mention.id,
            url=mention.url,
            text=_trim(mention.text, self._chars),
            author=author.handle or author.id,
            followers=author.followers,
            created_at=mention.created_at,
            label=scored.sentiment.label,
        )
        if is_root:
            self._root = item
            return
        self._push(self._negative, (*negative, item))
        self._push(self._followed, (*followed, item))

    def absorb(self, other: EvidencePicker) -> None:
        """Offer ``other``'s best mentions too (a story merged into this one); its root
        stands in for a root this story has not seen, else competes as a followed one."""
        if self._root is None:
            self._root = other._root
        elif other._root is not None:
            followers = float(other._root.followers or 0)
            self._push(self._followed, (followers, -self._seq, other._root))
            self._seq += 1
        base = self._seq  # other's arrivals a (entries hold -a) become base + a
        for heap, mine in ((other._negative, self._negative), (other._followed, self._followed)):
            for score, seq, item in heap:
                self._push(mine, (score, seq - base, item))
        self._seq = base + other._seq

    def _better(self, heap: list[tuple[float, int, Evidence]], key: tuple[float, int]) -> bool:
        return len(heap) < self._size or key > heap[0][:2]

    def _push(
        self, heap: list[tuple[float, int, Evidence]], entry: tuple[float, int, Evidence]
    ) -> None:
        if len(heap) < self._size:
            heapq.heappush(heap, entry)
        elif entry[:2] > heap[0][:2]:
            heapq.heapreplace(heap, entry)

    def pick(self) -> tuple[Evidence, ...]:
        chosen: dict[str, Evidence] = {}
        if self._root is not None:
            chosen[self._root.id] = self._root
        negative = [e for *_, e in sorted(self._negative, reverse=True)]
        followed = [e for *_, e in sorted(self._followed, reverse=True)]
        for item in itertools.chain.from_iterable(itertools.zip_longest(negative, followed)):
            if item is not None and len(chosen) < self._size:
                chosen.setdefault(item.id, item)
        return tuple(chosen.values())
