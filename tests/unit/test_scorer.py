"""The scorer stage over the memory bus with the deterministic fake classifier."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from core.bus.memory import MemoryBus
from core.events import Mention, ScoredMention, Sentiment, WatchMatch
from core.metrics import Metrics
from sentiment.classifier import Classifier
from sentiment.config import ScorerConfig
from sentiment.scorer import ScorerService, SentimentCache, cache_key
from tests.fakes import FakeClassifier

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class SpyClassifier(FakeClassifier):
    """The fake, also recording each batch it was given and the thread it ran in."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[tuple[str, str | None]]] = []
        self.threads: set[int] = set()

    def classify(self, texts: Sequence[str], langs: Sequence[str | None]) -> list[Sentiment]:
        self.batches.append(list(zip(texts, langs, strict=True)))
        self.threads.add(threading.get_ident())
        return super().classify(texts, langs)


def mention(n: int, text: str, *, lang: str | None = "en", watch: str | None = "w1") -> Mention:
    return Mention(
        id=f"test:{n}",
        source="test",
        text=text,
        lang=lang,
        created_at=T0,
        watch=WatchMatch(id=watch, brand="Acme") if watch else None,
    )


class Harness:
    def __init__(self, classifier: Classifier, metrics: Metrics, **config: object) -> None:
        self.bus = MemoryBus(metrics=metrics)
        self.config = ScorerConfig.model_validate({"max_wait_ms": 0, **config})
        self.scorer = ScorerService(self.bus, classifier, self.config, metrics)
        self.scorer.register()
        self.out: list[ScoredMention] = []
        self.bus.subscribe("scored", "test", self._collect, max_batch=100)

    async def _collect(self, events: list[ScoredMention]) -> None:
        self.out.extend(events)

    async def run(self, *mentions: Mention) -> list[ScoredMention]:
        """Publish everything first, then start: batches are exactly max_batch long."""
        before = len(self.out)
        for m in mentions:
            await self.bus.publish("mentions", m, key=m.id)
        await self.bus.start()
        await self.bus.join()
        await self.bus.stop()
        return self.out[before:]


async def test_scores_every_mention_in_order_with_labels(metrics: Metrics) -> None:
    h = Harness(FakeClassifier(), metrics)
    texts = ["I love it", "total scam, refund now", "it is a phone", "best day", "awful"]
    scored = await h.run(*(mention(i, t) for i, t in enumerate(texts)))
    assert [s.mention.id for s in scored] == [f"test:{i}" for i in range(5)]
    assert [s.sentiment.label for s in scored] == [
        "positive",
        "negative",
        "neutral",
        "positive",
        "negative",
    ]
    assert all(s.sentiment.model == "fake-keywords" for s in scored)


async def test_batches_follow_batch_size(metrics: Metrics) -> None:
    spy = SpyClassifier()
    h = Harness(spy, metrics, batch_size=4)
    await h.run(*(mention(i, f"text number {i}") for i in range(10)))
    assert [len(b) for b in spy.batches] == [4, 4, 2]


def test_register_converts_max_wait_to_seconds(metrics: Metrics) -> None:
    bus = MemoryBus(metrics=metrics)
    config = ScorerConfig(batch_size=16, max_wait_ms=20)
    ScorerService(bus, FakeClassifier(), config, metrics).register()
    (sub,) = bus._subscriptions
    assert (sub.topic, sub.group, sub.max_batch, sub.max_wait) == ("mentions", "scorer", 16, 0.02)


async def test_identical_texts_in_a_batch_are_classified_once(metrics: Metrics) -> None:
    spy = SpyClassifier()
    h = Harness(spy, metrics, batch_size=10)
    scored = await h.run(
        *(mention(i, "worst airline ever") for i in range(6)), mention(6, "great crew")
    )
    assert spy.batches == [[("worst airline ever", "en"), ("great crew", "en")]]
    assert [s.sentiment.label for s in scored] == ["negative"] * 6 + ["positive"]


async def test_cache_answers_repeats_across_batches(metrics: Metrics) -> None:
    spy = SpyClassifier()
    h = Harness(spy, metrics, batch_size=2)
    await h.run(mention(0, "love it"), mention(1, "hate it"))
    assert spy.calls == 1
    scored = await h.run(mention(2, "hate it"), mention(3, "love it"))
    assert spy.calls == 1  # both from the cache
    assert [s.sentiment.label for s in scored] == ["negative", "positive"]
    await h.run(mention(4, "love it"), mention(5, "something new"))
    assert spy.calls == 2
    assert spy.batches[-1] == [("something new", "en")]


async def test_cache_is_keyed_by_language_too(metrics: Metrics) -> None:
    spy = SpyClassifier()
    h = Harness(spy, metrics, batch_size=10)
    await h.run(
        mention(0, "ok", lang="en"), mention(1, "ok", lang="de"), mention(2, "ok", lang=None)
    )
    assert spy.batches == [[("ok", "en"), ("ok", "de"), ("ok", None)]]


async def test_cache_size_zero_disables_the_cache(metrics: Metrics) -> None:
    spy = SpyClassifier()
    h = Harness(spy, metrics, batch_size=1, cache_size=0)
    await h.run(mention(0, "same"), mention(1, "same"))
    assert spy.calls == 2


def test_cache_is_bounded_and_evicts_least_recently_used() -> None:
    cache = SentimentCache(2)
    s = Sentiment(label="neutral", probs={"neutral": 1.0}, model="m", version="1")
    cache.put(("a", None), s)
    cache.put(("b", None), s)
    assert cache.get(("a", None)) is s  # "a" is now the most recently used
    cache.put(("c", None), s)
    assert len(cache) == 2
    assert cache.get(("b", None)) is None
    assert cache.get(("a", None)) is s and cache.get(("c", None)) is s


async def test_long_texts_are_cached_under_a_digest(metrics: Metrics) -> None:
    spy = SpyClassifier()
    h = Harness(spy, metrics, batch_size=1)
    long_a, long_b = "refund " * 100, "refund " * 99 + "thanks "
    scored = await h.run(mention(0, long_a), mention(1, long_b), mention(2, long_a))
    assert [b[0][0] for b in spy.batches] == [long_a, long_b]  # the model sees the real text
    assert all(len(key[0]) < 64 for key in h.scorer.cache._data)
    assert [s.mention.text for s in scored] == [long_a, long_b, long_a]
    assert cache_key("short", "en") == ("short", "en")
    assert cache_key(long_a, "en") != cache_key(long_b, "en")


async def test_empty_text_and_missing_watch(metrics: Metrics) -> None:
    h = Harness(FakeClassifier(), metrics)
    scored = await h.run(mention(0, "", watch=None), mention(1, "   ", watch="w2"))
    assert [s.sentiment.label for s in scored] == ["neutral", "neutral"]
    assert [s.mention.watch for s in scored] == [None, WatchMatch(id="w2", brand="Acme")]


async def test_keys_are_watch_ids(metrics: Metrics) -> None:
    bus = MemoryBus(metrics=metrics)
    scorer = ScorerService(bus, FakeClassifier(), ScorerConfig(max_wait_ms=0), metrics)
    await scorer.handle([mention(0, "a", watch="w1"), mention(1, "b", watch=None)])
    records = bus._topics["scored"].records  # nobody consumes: the records stay
    assert [r.key for r in records] == ["w1", "_"]


async def test_model_runs_off_the_event_loop(metrics: Metrics) -> None:
    spy = SpyClassifier()
    h = Harness(spy, metrics)
    await h.run(mention(0, "hello"))
    assert spy.threads and threading.get_ident() not in spy.threads


async def test_metrics_count_labels_and_latency(metrics: Metrics) -> None:
    h = Harness(FakeClassifier(), metrics, batch_size=2)
    await h.run(mention(0, "love"), mention(1, "scam"), mention(2, "love"))
    reg = metrics.registry
    assert reg.get_sample_value("crisiswatch_mentions_scored_total", {"label": "positive"}) == 2
    assert reg.get_sample_value("crisiswatch_mentions_scored_total", {"label": "negative"}) == 1
    batches = reg.get_sample_value("crisiswatch_stage_latency_seconds_count", {"stage": "scorer"})
    assert batches == 2


async def test_redelivery_republishes_the_same_result(metrics: Metrics) -> None:
    bus = MemoryBus(metrics=metrics)
    scorer = ScorerService(bus, FakeClassifier(), ScorerConfig(max_wait_ms=0), metrics)
    batch = [mention(0, "terrible service")]
    await scorer.handle(batch)
    await scorer.handle(batch)
    first, second = bus._topics["scored"].records
    assert first.value == second.value


class ShortClassifier(FakeClassifier):
    def classify(self, texts: Sequence[str], langs: Sequence[str | None]) -> list[Sentiment]:
        return super().classify(texts, langs)[:-1]


async def test_a_classifier_returning_too_few_results_is_an_error(metrics: Metrics) -> None:
    bus = MemoryBus(metrics=metrics)
    scorer = ScorerService(bus, ShortClassifier(), ScorerConfig(), metrics)
    with pytest.raises(RuntimeError, match="returned 1 results for 2 texts"):
        await scorer.score([mention(0, "a"), mention(1, "b")])
