"""The scorer stage: Mentions in, ScoredMentions out, in batches, off the event loop.

Consumes ``mentions`` (group ``scorer``) in batches of up to ``batch_size``, waiting at most
``max_wait_ms`` for a batch to fill. Within a batch, identical (text, language) pairs are
classified once; across batches an LRU cache of ``cache_size`` entries answers repeats
(reposts, copy-paste campaigns) without the model; texts over 256 characters are cached
under a 128-bit digest (``bytes``, so no text, a ``str``, can ever share its key), so hostile
40 kB posts cannot blow up its memory; the language part of the key is what routing reads of
it (``sentiment.transformer.routing_language``: ``"en"``, a Chinese code, ``""`` or
``"other"``), so ``"EN"`` and ``"en-US"`` share entries and a long ``lang`` string is not
kept. The model runs in a worker thread (``asyncio.to_thread``), never on the event loop.

The classifier never waits for the rest of the stage: where the bus shows the next batch
early (the memory bus's ``prefetch``, once a whole batch waits behind the one being
handled), its classification starts at once, so it runs while this batch's results are
published and committed; the next ``handle`` of those same mentions takes its answers.
Nothing is published early: a prefetched batch that never comes is just work lost.

A text that kills the classifier's child process (``sentiment.process``: twice in one
call, or hung past its timeout twice) is isolated and dead-lettered, never retried in a
loop: a batch the child died on raises ``PermanentError``, so the bus hands its mentions
over one by one; a single text it died on is remembered (``_POISON_KEPT`` of them) and
its mention, and every later one with the same text, dead-lettered at once. Only the
poison is dead-lettered: the rest of the batch is scored as usual.

``crisiswatch_mentions_scored_total`` counts mentions by label, an abstention (a language
the classifier does not read) as ``abstain``, not as the ``neutral`` its Sentiment carries.

With ``embedder`` set (``scorer.embedder``), the texts of mentions without a parent also
get a sentence embedding (``sentiment.embedder``), in the same worker-thread fashion.

Idempotent by nature: the output is a pure function of the mention (and the model), so a
redelivered batch republishes the same ScoredMentions.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence

from core.bus import Bus, PermanentError
from core.events import TOPIC_MENTIONS, TOPIC_SCORED, Mention, ScoredMention, Sentiment
from core.metrics import Metrics
from sentiment.classifier import ABSTAIN_SUFFIX, Classifier
from sentiment.config import ScorerConfig
from sentiment.embedder import Embedder
from sentiment.process import ClassifierCrashed
from sentiment.transformer import routing_language

log = logging.getLogger(__name__)

GROUP = "scorer"
NO_WATCH_KEY = "_"
_LONG_TEXT = 256  # longer texts are cached under a digest, so the cache's memory stays small
_POISON_KEPT = 1000  # texts known to kill the classifier's child, remembered (LRU)

CacheKey = tuple[str | bytes, str | None]


def cache_key(text: str, lang: str | None) -> CacheKey:
    """(the text, or its digest as bytes when long; the routing part of ``lang``)."""
    key: str | bytes = text
    if len(text) > _LONG_TEXT:
        key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    return (key, routing_language(lang))


class SentimentCache:
    """A bounded LRU map (text, lang) -> Sentiment. Size 0 keeps nothing."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[CacheKey, Sentiment] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: CacheKey) -> Sentiment | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: CacheKey, value: Sentiment) -> None:
        if self.size <= 0:
            return
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)


ABSTAINED = "abstain"
"""The ``label`` of ``crisiswatch_mentions_scored_total`` for a mention the classifier
abstained on (a language it does not read): its Sentiment says ``neutral``, a prior, and a
stream that turns unreadable (a new market, a source's odd language codes) must show."""


def _counted_as(sentiment: Sentiment) -> str:
    return ABSTAINED if sentiment.model.endswith(ABSTAIN_SUFFIX) else sentiment.label


_Ahead = tuple[list[Mention], "asyncio.Task[list[Sentiment]]", float]
"""A prefetched batch: its mentions, their classification, when that started."""


def _retrieved(task: asyncio.Task[list[Sentiment]]) -> None:
    """A prefetched classification that fails is logged by the ``handle`` that awaits it
    (its batch is retried), or by nobody when it is dropped: never "never retrieved"."""
    if not task.cancelled():
        task.exception()


class ScorerService:
    def __init__(
        self,
        bus: Bus,
        classifier: Classifier,
        config: ScorerConfig,
        metrics: Metrics,
        embedder: Embedder | None = None,
    ) -> None:
        self.bus = bus
        self.classifier = classifier
        self.config = config
        self.metrics = metrics
        self.embedder = embedder
        self.cache = SentimentCache(config.cache_size)
        self._poison: OrderedDict[CacheKey, None] = OrderedDict()  # see the module's text
        # prefetched batches, by the identity of their first mention: the one handled now
        # (shown while the last was handled) and the next (shown as this one was taken)
        self._ahead: OrderedDict[int, _Ahead] = OrderedDict()

    def register(self) -> None:
        self.bus.subscribe(
            TOPIC_MENTIONS,
            GROUP,
            self.handle,
            max_batch=self.config.batch_size,
            max_wait=self.config.max_wait_ms / 1000,
            prefetch=self.prefetch,
        )

    async def start(self) -> None:
        """Nothing runs in the background: the bus drives ``handle``."""

    async def stop(self) -> None:
        """The bus finishes the batch in flight; prefetched classifications are dropped."""
        while self._ahead:
            self._ahead.popitem()[1][1].cancel()

    def prefetch(self, mentions: list[Mention]) -> None:
        """Start classifying a batch the bus hands over next (see the module's text)."""
        if not mentions:
            return
        task = asyncio.ensure_future(self.score(mentions))
        task.add_done_callback(_retrieved)
        old = self._ahead.pop(id(mentions[0]), None)
        if old is not None:
            old[1].cancel()
        self._ahead[id(mentions[0])] = (mentions, task, time.perf_counter())
        while len(self._ahead) > 2:  # shown, never handled (the bus stopped): dropped
            self._ahead.popitem(last=False)[1][1].cancel()

    async def _sentiments(self, mentions: list[Mention]) -> tuple[list[Sentiment], float]:
        """The batch's Sentiments, and when their classification started (earlier than
        now where the batch was prefetched: the stage's latency counts from there)."""
        ahead = self._ahead.pop(id(mentions[0]), None) if mentions else None
        if ahead is not None:
            early, task, started = ahead
            if len(early) == len(mentions) and all(
                a is b for a, b in zip(early, mentions, strict=True)
            ):
                return await task, started
            task.cancel()
        started = time.perf_counter()
        return await self.score(mentions), started

    async def handle(self, mentions: list[Mention]) -> None:
        sentiments, started = await self._sentiments(mentions)
        embeddings = await self.embed(mentions, sentiments)
        await self.bus.publish_many(
            TOPIC_SCORED,
            [
                (
                    mention.watch.id if mention.watch is not None else NO_WATCH_KEY,
                    ScoredMention(mention=mention, sentiment=sentiment, embedding=embedding),
                )
                for mention, sentiment, embedding in zip(
                    mentions, sentiments, embeddings, strict=True
                )
            ],
        )
        for label, count in Counter(_counted_as(s) for s in sentiments).items():
            self.metrics.mentions_scored.labels(label).inc(count)  # per label, not per mention
        self.metrics.stage_latency.labels(GROUP).observe(time.perf_counter() - started)

    async def embed(
        self, mentions: Sequence[Mention], sentiments: Sequence[Sentiment]
    ) -> list[str | None]:
        """The sentence embedding of each mention without a parent whose label is one of
        ``embed_labels`` (None for the others, and for all without an embedder)."""
        out: list[str | None] = [None] * len(mentions)
        if self.embedder is None:
            return out
        labels = self.config.embed_labels
        rows = [
            i
            for i, (m, s) in enumerate(zip(mentions, sentiments, strict=True))
            if m.parent_id is None and s.label in labels and m.text.strip()
        ]
        if rows:
            texts = [mentions[i].text for i in rows]
            vectors = await asyncio.to_thread(self.embedder.embed, texts)
            for i, vector in zip(rows, vectors, strict=True):
                out[i] = vector
            self.metrics.mentions_embedded.inc(sum(v is not None for v in vectors))
        return out

    async def score(self, mentions: Sequence[Mention]) -> list[Sentiment]:
        """One Sentiment per mention, in order; each distinct uncached text classified once."""
        keys = [cache_key(m.text, m.lang) for m in mentions]
        known: dict[CacheKey, Sentiment] = {}
        missing: dict[CacheKey, Mention] = {}  # one mention per distinct key, in order
        for key, mention in zip(keys, mentions, strict=True):
            if key in known or key in missing:
                continue
            hit = self.cache.get(key)
            if hit is None:
                missing[key] = mention
            else:
                known[key] = hit
        if missing:
            self._refuse_poison(missing)
            todo = list(missing.values())
            try:
                results = await asyncio.to_thread(
                    self.classifier.classify, [m.text for m in todo], [m.lang for m in todo]
                )
            except ClassifierCrashed as exc:
                raise self._crashed(missing, exc) from exc
            if len(results) != len(missing):
                raise RuntimeError(
                    f"classifier {self.classifier.name} returned {len(results)} results "
                    f"for {len(missing)} texts"
                )
            for key, sentiment in zip(missing, results, strict=True):
                known[key] = sentiment
                self.cache.put(key, sentiment)
        return [known[key] for key in keys]

    def _refuse_poison(self, missing: dict[CacheKey, Mention]) -> None:
        """PermanentError where a text of the batch is known to kill the classifier."""
        for key, mention in missing.items():
            if key in self._poison:
                self._poison.move_to_end(key)
                raise PermanentError(
                    f"the text of mention {mention.id} killed the sentiment classifier's "
                    "child process before: not classified again"
                )

    def _crashed(self, missing: dict[CacheKey, Mention], exc: ClassifierCrashed) -> Exception:
        """What to raise when the classifier's child died twice on ``missing``: the one
        text it died on is remembered as poison; a batch is handed over one by one."""
        if len(missing) > 1:
            return PermanentError(
                f"{exc}: the batch's {len(missing)} texts are handled one by one, to find it"
            )
        key, mention = next(iter(missing.items()))
        self._poison[key] = None
        while len(self._poison) > _POISON_KEPT:
            self._poison.popitem(last=False)
        log.error(
            "the text of mention %s (%d characters) killed the sentiment classifier's child "
            "process twice: its mention, and any later one with the same text, is "
            "dead-lettered",
            mention.id,
            len(mention.text),
        )
        return PermanentError(f"the text of mention {mention.id} killed the classifier: {exc}")
