"""The memory bus shows a subscription its next batch early (``prefetch``), and only that."""

from __future__ import annotations

import asyncio
from typing import Any

from core.bus.memory import MemoryBus
from core.events import Mention
from core.metrics import Metrics
from tests.unit.test_scorer import mention


class Recorder:
    """A handler that can be held inside a batch, and a prefetch callback, both recording."""

    def __init__(self) -> None:
        self.handled: list[list[Any]] = []
        self.shown: list[list[Any]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.fail_prefetch = False

    async def handle(self, events: list[Mention]) -> None:
        self.handled.append(events)
        await asyncio.sleep(0.001)  # a handler that waits for something (the scorer does)
        await self.release.wait()

    def prefetch(self, events: list[Mention]) -> None:
        self.shown.append(events)
        if self.fail_prefetch:
            raise RuntimeError("prefetch broke")


def bus_with(recorder: Recorder, metrics: Metrics, batch: int = 3) -> MemoryBus:
    bus = MemoryBus(capacity=100, metrics=metrics)
    bus.subscribe("mentions", "g", recorder.handle, max_batch=batch, prefetch=recorder.prefetch)
    return bus


async def deliver(bus: MemoryBus, mentions: list[Mention]) -> None:
    """Publish everything first, then start: batches are exactly max_batch long."""
    for m in mentions:
        await bus.publish("mentions", m, key=m.id)
    await bus.start()
    await bus.join()
    await bus.stop()


def same(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


async def test_the_next_whole_batch_is_shown_while_one_is_handled(metrics: Metrics) -> None:
    rec = Recorder()
    bus = bus_with(rec, metrics)
    published = [mention(i, f"text {i}") for i in range(8)]
    await deliver(bus, published)
    assert [len(b) for b in rec.handled] == [3, 3, 2]
    # shown: the second batch while the first ran; not the third (not a whole batch)
    assert len(rec.shown) == 1
    assert same(rec.shown[0], rec.handled[1])  # the very instances the handler then got
    assert same(rec.handled[1], published[3:6])


async def test_a_batch_is_shown_once_it_is_whole(metrics: Metrics) -> None:
    rec = Recorder()
    rec.release.clear()
    bus = bus_with(rec, metrics)
    await bus.start()
    first = [mention(i, f"text {i}") for i in range(3)]
    for m in first:
        await bus.publish("mentions", m, key=m.id)
    while not rec.handled:  # the first batch is being handled (and held)
        await asyncio.sleep(0.001)
    later = [mention(i, f"text {i}") for i in range(3, 6)]
    await bus.publish("mentions", later[0], key=later[0].id)
    await bus.publish("mentions", later[1], key=later[1].id)
    await asyncio.sleep(0.01)
    assert rec.shown == []  # two of three: not a whole batch yet
    await bus.publish("mentions", later[2], key=later[2].id)
    await asyncio.sleep(0.01)
    assert len(rec.shown) == 1 and same(rec.shown[0], later)
    rec.release.set()
    await bus.join()
    await bus.stop()
    assert same(rec.handled[1], later)


async def test_a_failing_prefetch_changes_nothing(metrics: Metrics) -> None:
    rec = Recorder()
    rec.fail_prefetch = True
    bus = bus_with(rec, metrics)
    published = [mention(i, f"text {i}") for i in range(9)]
    await deliver(bus, published)
    assert [m for batch in rec.handled for m in batch] == published
    assert len(rec.shown) == 2


async def test_nothing_is_shown_after_stop(metrics: Metrics) -> None:
    rec = Recorder()
    rec.release.clear()
    bus = bus_with(rec, metrics)
    await bus.start()
    for i in range(3):
        m = mention(i, f"text {i}")
        await bus.publish("mentions", m, key=m.id)
    while not rec.handled:
        await asyncio.sleep(0.001)
    stopping = asyncio.create_task(bus.stop())  # finishes the batch in flight
    await asyncio.sleep(0.01)
    rec.release.set()
    await stopping
    assert rec.shown == []
    assert len(rec.handled) == 1


async def test_without_prefetch_nothing_changes(metrics: Metrics) -> None:
    handled: list[list[Mention]] = []

    async def handle(events: list[Mention]) -> None:
        handled.append(events)

    bus = MemoryBus(capacity=100, metrics=metrics)
    bus.subscribe("mentions", "g", handle, max_batch=3)
    await deliver(bus, [mention(i, f"text {i}") for i in range(7)])
    assert [len(b) for b in handled] == [3, 3, 1]
