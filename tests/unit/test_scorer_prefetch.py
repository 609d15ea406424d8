"""The scorer classifies the next batch while it publishes this one (the bus's prefetch)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Sequence

from core.bus.memory import MemoryBus
from core.events import Mention, ScoredMention, Sentiment
from core.metrics import Metrics
from sentiment.config import ScorerConfig
from sentiment.scorer import ScorerService
from tests.fakes import FakeClassifier
from tests.unit.test_scorer import mention


class SlowClassifier(FakeClassifier):
    """The fake, taking ``seconds`` a call, recording when each call started and ended."""

    def __init__(self, seconds: float = 0.05, fail_first: int = 0) -> None:
        super().__init__()
        self.seconds = seconds
        self.fail_first = fail_first
        self.log: list[tuple[str, str, float]] = []  # (first text, "start"/"end", time)
        self.lock = threading.Lock()

    def classify(self, texts: Sequence[str], langs: Sequence[str | None]) -> list[Sentiment]:
        with self.lock:
            self.log.append((texts[0], "start", time.monotonic()))
            failing = self.fail_first > 0
            self.fail_first -= 1
        time.sleep(self.seconds)
        if failing:
            raise RuntimeError("model broke")
        out = super().classify(texts, langs)
        with self.lock:
            self.log.append((texts[0], "end", time.monotonic()))
        return out


async def run(
    classifier: FakeClassifier, metrics: Metrics, mentions: list[Mention], batch: int = 4
) -> tuple[list[ScoredMention], list[tuple[str, float]]]:
    """Publish everything, then start; returns what was scored and when the publishing of
    each scorer batch ended (first text, time; each publish takes 20 ms here)."""
    bus = MemoryBus(capacity=100, metrics=metrics)
    config = ScorerConfig.model_validate({"max_wait_ms": 0, "batch_size": batch})
    scorer = ScorerService(bus, classifier, config, metrics)
    scorer.register()
    out: list[ScoredMention] = []
    published: list[tuple[str, float]] = []

    async def collect(events: list[ScoredMention]) -> None:
        out.extend(events)

    bus.subscribe("scored", "test", collect, max_batch=100)
    publish_many = bus.publish_many

    async def spy(topic: str, items: list[tuple[str, ScoredMention]]) -> None:
        await publish_many(topic, items)
        if topic == "scored":
            await asyncio.sleep(0.02)  # as long as a journal's disk write can take
            published.append((items[0][1].mention.text, time.monotonic()))

    bus.publish_many = spy  # type: ignore[method-assign]
    for m in mentions:
        await bus.publish("mentions", m, key=m.id)
    await bus.start()
    await bus.join()
    await bus.stop()
    await scorer.stop()
    return out, published


async def test_the_next_batch_is_classified_before_this_one_is_published(
    metrics: Metrics,
) -> None:
    slow = SlowClassifier()
    mentions = [mention(i, f"post {i}") for i in range(12)]
    scored, published = await run(slow, metrics, mentions)
    assert [s.mention.id for s in scored] == [m.id for m in mentions]  # in order, all
    started = [text for text, what, _ in slow.log if what == "start"]
    assert started == ["post 0", "post 4", "post 8"]  # each batch classified once
    starts = {text: t for text, what, t in slow.log if what == "start"}
    # batch 2's classification started while batch 1 was being published (and so on)
    assert starts["post 4"] < dict(published)["post 0"]
    assert starts["post 8"] < dict(published)["post 4"]


async def test_answers_equal_those_without_prefetch(metrics: Metrics) -> None:
    texts = ["I love it", "total scam, refund now", "it is a phone", "best day", "awful"]
    mentions = [mention(i, texts[i % 5]) for i in range(23)]
    scored, _ = await run(SlowClassifier(0.005), metrics, mentions, batch=3)
    expected = FakeClassifier().classify([m.text for m in mentions], [m.lang for m in mentions])
    assert [s.sentiment for s in scored] == expected
    assert [s.mention for s in scored] == mentions


async def test_a_failed_early_classification_is_retried_with_its_batch(
    metrics: Metrics,
) -> None:
    slow = SlowClassifier(0.01, fail_first=2)  # the first batch's and the prefetched one's
    mentions = [mention(i, f"post {i}") for i in range(8)]
    scored, _ = await run(slow, metrics, mentions)
    assert [s.mention.id for s in scored] == [m.id for m in mentions]
    assert metrics.bus_handler_errors.labels("mentions", "scorer")._value.get() >= 1


class GatedClassifier(FakeClassifier):
    """The fake, where the first ``held`` calls wait for ``gate`` (set by the test):
    a classification the test must still find running is held running, whatever the
    machine's speed (no timing assumption)."""

    def __init__(self, held: int = 1) -> None:
        super().__init__()
        self.held = held
        self.entered = 0
        self.gate = threading.Event()
        self.lock = threading.Lock()

    def classify(self, texts: Sequence[str], langs: Sequence[str | None]) -> list[Sentiment]:
        with self.lock:
            hold = self.entered < self.held
            self.entered += 1
        if hold and not self.gate.wait(timeout=30.0):
            raise RuntimeError("the test never opened the gate")
        return super().classify(texts, langs)


async def entered(classifier: GatedClassifier, count: int) -> None:
    """Wait until ``count`` classifications entered the classifier (bounded)."""
    async with asyncio.timeout(10.0):
        while classifier.entered < count:
            await asyncio.sleep(0.001)


async def test_a_batch_other_than_the_prefetched_one_is_classified_itself(
    metrics: Metrics,
) -> None:
    # The early classification is held in the classifier until the end: it is still
    # running when ``stop()`` drops it. (With a 1-ms classifier instead, it sometimes
    # finished first, and then there was nothing left for ``stop()`` to cancel.)
    gated = GatedClassifier(held=1)
    scorer = ScorerService(MemoryBus(metrics=metrics), gated, ScorerConfig(), metrics)
    try:
        early = [mention(i, f"post {i}") for i in range(3)]
        scorer.prefetch(early)
        await entered(gated, 1)  # the early batch's call is the held one
        other = [mention(i, f"post {i}") for i in range(3)]  # equal, not the same instances
        # taking the early (held) classification for it would wait for the gate: bounded
        answers, _ = await asyncio.wait_for(scorer._sentiments(other), 10.0)
        assert [s.label for s in answers] == ["neutral"] * 3
        assert gated.entered == 2  # classified itself, by its own call
        ((kept, task, _),) = scorer._ahead.values()  # the early batch was not taken for it
        assert kept is early
        assert not task.done()
        await scorer.stop()  # and is dropped at stop
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert not scorer._ahead and task.cancelled()
    finally:
        gated.gate.set()  # let the held worker thread end (the loop's executor waits for it)
        await scorer.stop()
