"""Review of the listener's core path (review 3): each test failed before its fix."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
from pydantic import BaseModel

from core.clock import ManualClock
from core.events import Mention
from core.metrics import Metrics
from listener.batching import SourceFailed, batched
from listener.config import ListenerConfig
from listener.cursors import MemoryCursorStore
from listener.dedup import Deduplicator
from listener.service import ListenerService, PublishFailed
from tests.integration.test_listener_service import (
    T0,
    WATCHES,
    KeyedBus,
    SteppingClock,
    Ticks,
    make,
    mention,
    sample,
    settle,
)


async def test_a_retried_batch_counts_its_duplicates_once() -> None:
    """Duplicates were counted when matched, so each failed try of a batch (a bus outage
    retries it every few seconds to a minute) counted its duplicates again."""
    service, bus, metrics = make()
    await service.ingest([mention(1, "acme")])
    bus.fail_next = 2
    for _ in range(2):
        with pytest.raises(PublishFailed):
            await service.ingest([mention(1, "acme"), mention(2, "acme")])
    report = await service.ingest([mention(1, "acme"), mention(2, "acme")])
    assert (report.duplicates, report.accepted) == (1, 1)
    assert sample(metrics, "mentions_duplicate", source="test") == 1
    assert sample(metrics, "mentions_ingested", source="test") == 2


async def test_a_repost_listed_before_its_root_in_the_same_batch_follows_it() -> None:
    """A webhook batch in any order (newest first, as many exports are): a text-less repost
    before its root was 'unmatched' and never published."""
    service, bus, _ = make()
    report = await service.ingest(
        [
            mention(3, "", reply_to="test:2"),  # reply to the repost, both before the root
            mention(2, "", repost_of="test:1"),
            mention(9, "unrelated"),
            mention(1, "Acme phone exploded"),
        ]
    )
    assert [(i.index, i.id, i.outcome) for i in report.items] == [
        (0, "test:3", "published"),
        (1, "test:2", "published"),
        (2, "test:9", "unmatched"),
        (3, "test:1", "published"),
    ]
    assert report.items[0].watches == ("acme", "phones")
    # parents go out before their children
    assert [m.id for _, m, _ in bus.sent] == ["test:1"] * 2 + ["test:2"] * 2 + ["test:3"] * 2


async def test_a_deep_reversed_chain_cycles_and_self_parents_in_one_batch() -> None:
    service, _, _ = make()
    n = 3000  # longer than the recursion limit
    chain = [mention(i, "", repost_of=f"test:{i - 1}") for i in range(n, 0, -1)]
    chain.append(mention(0, "acme"))
    report = await asyncio.wait_for(service.ingest(chain), timeout=30)
    assert report.published == n + 1 and report.unmatched == 0
    cycle = [
        mention("a", "", repost_of="test:b"),
        mention("b", "", repost_of="test:a"),
        mention("c", "", repost_of="test:c"),
        mention("d", "acme", reply_to="test:d"),
    ]
    report = await asyncio.wait_for(service.ingest(cycle), timeout=5)
    assert [i.outcome for i in report.items] == ["unmatched"] * 3 + ["published"]


async def test_a_stream_raising_cancelled_error_is_a_failure_not_a_hang() -> None:
    """A CancelledError from inside a stream (an inner future cancelled elsewhere) ended
    the pump without a word: the consumer waited for ever, the source silent."""

    async def stream() -> AsyncIterator[Mention]:
        yield mention(1, "acme")
        raise asyncio.CancelledError()

    got: list[str] = []

    async def consume() -> None:
        async for batch in batched(stream, 10):
            got.extend(m.id for m in batch)

    with pytest.raises(SourceFailed, match="CancelledError"):
        await asyncio.wait_for(consume(), timeout=5)
    assert got == ["test:1"]


async def test_a_source_stream_raising_cancelled_error_is_reopened() -> None:
    clock = SteppingClock(T0)
    service, bus, metrics = make(clock, source_retry_seconds=1)

    class Flaky:
        name = "flaky"

        def __init__(self) -> None:
            self.opened = 0

        async def start(self) -> None: ...

        async def stop(self) -> None: ...

        async def mentions(self) -> AsyncIterator[Mention]:
            self.opened += 1
            yield mention(self.opened, "acme")
            if self.opened == 1:
                raise asyncio.CancelledError()

    source = Flaky()
    assert await asyncio.wait_for(service.run_source(source), timeout=5) == 2
    assert [m.id for _, m, _ in bus.sent] == ["test:1", "test:2"]
    assert sample(metrics, "source_errors", source="flaky") == 1


class CancellingBus(KeyedBus):
    async def publish_many(self, topic: str, events: Sequence[tuple[str, BaseModel]]) -> None:
        raise asyncio.CancelledError()  # a future of the transport, cancelled elsewhere


async def test_a_source_task_ended_by_a_cancelled_error_inside_is_visible() -> None:
    """Such a task vanished as if stopped: health still up, nothing counted or logged."""
    clock, metrics, store = ManualClock(T0), Metrics(), MemoryCursorStore()
    source = Ticks(3, clock, store, metrics)
    cfg = ListenerConfig.model_validate({"watches": WATCHES})
    service = ListenerService(
        CancellingBus(), cfg, clock, metrics, Deduplicator(100), sources=[source]
    )
    await service.start()
    await settle(lambda: not service.running)
    assert source.health.state == "failed"
    assert "CancelledError" in (source.health.last_error or "")
    assert sample(metrics, "source_errors", source="ticks") == 1
    assert store.cursors == {}
    await service.stop()


async def test_stop_while_a_batch_is_being_published_unmarks_it_and_keeps_the_cursor() -> None:
    """(Fine before: kept as a guard.)"""
    clock, metrics, store = ManualClock(T0), Metrics(), MemoryCursorStore()
    entered, release = asyncio.Event(), asyncio.Event()

    class SlowBus(KeyedBus):
        async def publish_many(self, topic: str, events: Sequence[tuple[str, BaseModel]]) -> None:
            entered.set()
            await release.wait()
            await super().publish_many(topic, events)

    dedup = Deduplicator(100)
    source = Ticks(3, clock, store, metrics)
    cfg = ListenerConfig.model_validate({"watches": WATCHES})
    service = ListenerService(SlowBus(), cfg, clock, metrics, dedup, sources=[source])
    await service.start()
    await asyncio.wait_for(entered.wait(), timeout=5)
    await service.stop()
    assert store.cursors == {} and "test:1" not in dedup
