"""A handler waiting to retry gives its batch back when the bus needs it: a rebalance
(Kafka) or a stop. The alerter retries for hours through a database outage (30 s apart):
its revoke listener waited for the batch past the rebalance timeout (the member dropped
from the group while still working on the batch), and a stop waited out its whole budget
before cancelling. The batch is not committed: it is delivered again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from core.bus.base import RetryPolicy
from core.bus.memory import MemoryBus
from core.settings import BusConfig
from tests.integration.test_bus_contract import TIMEOUT, KafkaHarness, eventually, mention

SLOW = RetryPolicy(max_attempts=1_000_000, initial_backoff=120.0, max_backoff=120.0)


async def test_memory_stop_takes_back_a_batch_waiting_to_retry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="core.bus")
    bus = MemoryBus(capacity=100, stop_timeout=60.0)
    failing = True
    tried = asyncio.Event()
    seen: list[str] = []

    async def handler(events: list[Any]) -> None:
        if failing:
            tried.set()
            raise OSError("database or disk is full")
        seen.extend(e.id for e in events)

    bus.subscribe("mentions", "g", handler, max_batch=5, retry=SLOW)
    await bus.start()
    for i in range(5):
        await bus.publish("mentions", mention(i), key="k")
    await asyncio.wait_for(tried.wait(), TIMEOUT)
    # before: the batch slept out its 120 s backoff until stop_timeout (60 s) cancelled it
    await asyncio.wait_for(bus.stop(), timeout=10)
    assert not bus.started and seen == []
    messages = [r.getMessage() for r in caplog.records]
    assert any("given back unhandled after 1 attempt" in m for m in messages), messages
    assert not any("did not finish its batch" in m for m in messages), messages
    failing = False
    await bus.start()
    await asyncio.wait_for(bus.join(), TIMEOUT)
    assert seen == [f"test:{i}" for i in range(5)]  # delivered again, none lost
    await bus.stop()


@pytest.mark.kafka
async def test_kafka_a_rebalance_takes_back_a_batch_waiting_to_retry(
    kafka_config: BusConfig,
) -> None:
    """Member a's handler failed once (its database blinked) and waits 120 s to retry
    when b joins: a gives the batch back at once, the rebalance goes on, and every event
    is handled, the one given back included, by whichever member then owns it."""
    handled: dict[str, list[str]] = {"a": [], "b": []}
    tried = asyncio.Event()

    def handler_for(member: str) -> Callable[[list[Any]], Awaitable[None]]:
        async def handler(events: list[Any]) -> None:
            if member == "a" and not tried.is_set():
                tried.set()
                raise OSError("the database is down")
            handled[member].extend(e.id for e in events)

        return handler

    harness = KafkaHarness(kafka_config)
    try:
        a = harness.bus()
        a.subscribe("mentions", "shared", handler_for("a"), max_batch=1, retry=SLOW)
        await a.start()
        for i in range(12):
            await a.publish("mentions", mention(i), key=f"k{i % 6}")
        await asyncio.wait_for(tried.wait(), TIMEOUT)

        b = harness.bus()
        b.subscribe("mentions", "shared", handler_for("b"), max_batch=1)
        # before: b's join waited for a's batch, asleep for 120 s before its next try
        await asyncio.wait_for(b.start(), TIMEOUT)
        await eventually(
            lambda: len(set(handled["a"]) | set(handled["b"])) == 12,
            f"all 12 events handled (have {handled})",
        )
        assert not set(handled["a"]) & set(handled["b"]), handled
    finally:
        await harness.close()
