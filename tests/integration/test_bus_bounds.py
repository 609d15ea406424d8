"""Nothing in the memory bus grows without bound: a topic no group reads keeps its last
``capacity`` events (the rest counted), and ``dead_letters`` keeps the last
``dead_letter_capacity`` letters (each forgotten one logged)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from core.bus.memory import MemoryBus
from tests.integration.test_bus_contract import TIMEOUT, Collector, mention, signal


def discarded(bus: MemoryBus, topic: str) -> float:
    value = bus.metrics.registry.get_sample_value(
        "crisiswatch_bus_unread_discarded_total", {"topic": topic}
    )
    return value or 0.0


async def test_memory_a_topic_nobody_reads_keeps_its_last_capacity_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="core.bus.memory")
    bus = MemoryBus(capacity=3)
    bus.subscribe("mentions", "g", Collector())
    await bus.start()
    for i in range(10):
        await asyncio.wait_for(bus.publish("signals", signal(i), key="k"), TIMEOUT)
    await bus.stop()
    late = Collector()
    bus.subscribe("signals", "late", late)  # a group added at a restart: the last 3
    await bus.start()
    try:
        await asyncio.wait_for(bus.join(), TIMEOUT)
        assert [e.id for e in late.events] == ["sig-7", "sig-8", "sig-9"]
        assert discarded(bus, "signals") == 7
        warnings = [r.getMessage() for r in caplog.records if "no group reads" in r.message]
        assert len(warnings) == 1 and "only its last 3 events are kept" in warnings[0]
    finally:
        await bus.stop()


async def test_memory_a_topic_read_by_a_group_is_never_trimmed_for_it() -> None:
    bus = MemoryBus(capacity=3)
    got = Collector()
    bus.subscribe("mentions", "g", got, max_batch=2)
    await bus.start()
    try:
        for i in range(10):
            await asyncio.wait_for(bus.publish("mentions", mention(i), key="k"), TIMEOUT)
        await asyncio.wait_for(bus.join(), TIMEOUT)
        assert got.ids == [f"test:{i}" for i in range(10)]
        assert discarded(bus, "mentions") == 0
    finally:
        await bus.stop()


async def test_memory_keeps_the_last_dead_letters(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="core.bus.memory")
    bus = MemoryBus(dead_letter_capacity=2)
    bus.subscribe("mentions", "g", Collector())
    await bus.start()
    try:
        for i in range(4):
            await bus.publish_raw("mentions", f"junk {i}".encode(), key=None)
        await asyncio.wait_for(bus.join(), TIMEOUT)
        assert [d.value for d in bus.dead_letters] == [b"junk 2", b"junk 3"]
        forgotten = [r for r in caplog.records if "forgetting" in r.message]
        assert [r.getMessage().split("forgetting ")[1][:14] for r in forgotten] == [
            "mentions[0]@0 ",
            "mentions[0]@1 ",
        ]
    finally:
        await bus.stop()
