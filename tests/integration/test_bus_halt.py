"""The dead-letter limit: a flood of poison stops that consumer, loudly and losslessly.

Past ``max_dead_letters_per_minute`` dead letters of one subscription in 60 s, the next
one halts it: nothing of the batch in flight is committed, the halted gauge reads 1,
readiness names it, other groups go on, and a restart (after the fix) resumes at the
record that halted it. Below the limit (the window slides) nothing stops. A handler
failing on every event through all its retries halts after ``max_failures_in_a_row``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.runtime import Role, Runtime
from api.settings import Settings
from core.bus.base import Bus, PermanentError, RetryPolicy
from core.bus.halt import DeadLetterRate
from core.bus.kafka import KafkaBus
from core.bus.memory import MemoryBus
from core.events import Mention
from core.settings import BusConfig
from tests.integration.test_bus_contract import (
    FAST_GROUPS,
    TIMEOUT,
    Collector,
    KafkaHarness,
    eventually,
    mention,
)

LIMIT = 3
NO_RETRY = RetryPolicy(max_attempts=1)
# 2 good, 10 poison, 2 good: the 4th poison (offset 5) is one too many
STREAM = ["good0", "good1", *(f"poison{i}" for i in range(10)), "good2", "good3"]
HALT_AT = 2 + LIMIT


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Poisoned:
    """A handler that refuses every ``poison`` event until it is fixed."""

    def __init__(self) -> None:
        self.handled: list[str] = []
        self.fixed = False

    async def __call__(self, events: list[Any]) -> None:
        for e in events:
            if "poison" in e.id and not self.fixed:
                raise PermanentError(f"cannot handle {e.id}")
        self.handled.extend(e.id for e in events)


def gauge(bus: Bus, name: str, topic: str, group: str) -> float | None:
    return bus.metrics.registry.get_sample_value(
        f"crisiswatch_bus_{name}", {"topic": topic, "group": group}
    )


def test_the_window_slides_and_zero_means_no_limit() -> None:
    clock = FakeMonotonic()
    rate = DeadLetterRate(2, clock)
    for _ in range(2):
        assert rate.full("t", "g") is None
        rate.add("t", "g")
    assert rate.full("t", "g") == 2
    assert rate.full("t", "other") is None  # per subscription
    clock.now += 59.0
    assert rate.full("t", "g") == 2
    clock.now += 1.0  # 60 s after both: out of the window
    assert rate.full("t", "g") is None
    unlimited = DeadLetterRate(0, clock)
    for _ in range(1000):
        unlimited.add("t", "g")
    assert unlimited.full("t", "g") is None


async def test_memory_a_poison_flood_halts_the_group_and_a_restart_resumes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.CRITICAL, logger="core.bus.base")
    bus = MemoryBus(capacity=100, max_dead_letters_per_minute=LIMIT, monotonic=FakeMonotonic())
    poisoned, other = Poisoned(), Collector()
    bus.subscribe("mentions", "g", poisoned, retry=NO_RETRY)
    bus.subscribe("mentions", "other", other, max_batch=4)
    runtime = Runtime(Settings(), roles=frozenset({Role.SCORER}))
    runtime.bus, runtime.ready = bus, True
    await bus.start()
    try:
        assert gauge(bus, "consumer_halted", "mentions", "g") == 0
        for n in STREAM:
            await bus.publish("mentions", mention(n), key="k")
        await eventually(lambda: bool(bus.halted()), "the group to halt")
        await asyncio.wait_for(bus.join(), TIMEOUT)  # the other group drains; g is halted

        assert [d.offset for d in bus.dead_letters] == [2, 3, 4]  # the limit, no more
        assert poisoned.handled == ["test:good0", "test:good1"]
        assert other.ids == [f"test:{n}" for n in STREAM]  # the rest of the process goes on
        assert gauge(bus, "consumer_halted", "mentions", "g") == 1
        assert gauge(bus, "consumer_halted", "mentions", "other") == 0
        # nothing committed past the halt point: g still has to handle the rest
        assert gauge(bus, "consumer_lag", "mentions", "g") == len(STREAM) - HALT_AT
        assert gauge(bus, "consumer_lag", "mentions", "other") == 0
        (halt,) = bus.halted()
        assert (halt.topic, halt.group, halt.count) == ("mentions", "g", LIMIT)
        assert halt.reason == "permanent: cannot handle test:poison3"
        problems = await runtime.check_ready()
        assert problems == [halt.describe()]
        assert "mentions/g halted" in problems[0]
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://cw") as client:
            ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"status": "not ready", "problems": problems}
        (critical,) = [r for r in caplog.records if r.levelno == logging.CRITICAL]
        assert "HALTING consumer mentions/g" in critical.getMessage()

        await bus.stop()
        poisoned.fixed = True
        await bus.start()  # after the fix: resumes at the record that halted it
        await asyncio.wait_for(bus.join(), TIMEOUT)
        assert poisoned.handled == [f"test:{n}" for n in STREAM if n not in STREAM[2:HALT_AT]]
        assert len(bus.dead_letters) == LIMIT
        assert bus.halted() == [] and await runtime.check_ready() == []
        assert gauge(bus, "consumer_halted", "mentions", "g") == 0
        assert gauge(bus, "consumer_lag", "mentions", "g") == 0
    finally:
        await bus.stop()


async def test_memory_below_the_limit_per_minute_it_keeps_going() -> None:
    clock = FakeMonotonic()
    bus = MemoryBus(capacity=100, max_dead_letters_per_minute=LIMIT, monotonic=clock)
    poisoned = Poisoned()
    bus.subscribe("mentions", "g", poisoned, retry=NO_RETRY)
    await bus.start()
    try:
        for minute in range(3):  # LIMIT poison per minute, three minutes in a row
            for i in range(LIMIT):
                await bus.publish("mentions", mention(f"poison{minute}-{i}"), key="k")
            await bus.publish("mentions", mention(f"good{minute}"), key="k")
            await asyncio.wait_for(bus.join(), TIMEOUT)
            clock.now += 60.0
        assert bus.halted() == []
        assert len(bus.dead_letters) == 3 * LIMIT
        assert poisoned.handled == ["test:good0", "test:good1", "test:good2"]
    finally:
        await bus.stop()


class Broken:
    """A handler whose dependency is down: every event fails (not the event's fault),
    except those named ``good`` when ``good_passes``."""

    def __init__(self, good_passes: bool = False) -> None:
        self.good_passes = good_passes
        self.handled: list[str] = []

    async def __call__(self, events: list[Any]) -> None:
        for e in events:
            if not (self.good_passes and "good" in e.id):
                raise ConnectionError("the database is down")
        self.handled.extend(e.id for e in events)


FAST_RETRY = RetryPolicy(max_attempts=2, initial_backoff=0.001)


async def test_memory_a_handler_failing_on_every_event_halts_after_failures_in_a_row() -> None:
    """Retried for seconds per event, a broken dependency dead-letters far below the
    per-minute limit: it would empty the whole stream into the .dlq. The streak stops it
    before that, with the event that would have been one too many still in the log."""
    bus = MemoryBus(capacity=100, max_dead_letters_per_minute=100, max_failures_in_a_row=LIMIT)
    broken = Broken()
    bus.subscribe("mentions", "g", broken, retry=FAST_RETRY)
    await bus.start()
    try:
        for i in range(10):
            await bus.publish("mentions", mention(f"m{i}"), key="k")
        await eventually(lambda: bool(bus.halted()), "the group to halt")
        (halt,) = bus.halted()
        assert halt.in_a_row and halt.count == LIMIT
        assert "in a row failed through every retry" in halt.describe()
        assert "ConnectionError: the database is down" in halt.reason
        assert [d.offset for d in bus.dead_letters] == [0, 1, 2]  # the streak, no more
        assert gauge(bus, "consumer_lag", "mentions", "g") == 10 - LIMIT
        assert gauge(bus, "consumer_halted", "mentions", "g") == 1
    finally:
        await bus.stop()


async def test_memory_failures_with_events_handled_in_between_do_not_halt() -> None:
    bus = MemoryBus(capacity=100, max_dead_letters_per_minute=100, max_failures_in_a_row=LIMIT)
    broken = Broken(good_passes=True)
    bus.subscribe("mentions", "g", broken, retry=FAST_RETRY)
    await bus.start()
    try:
        for i in range(4):  # LIMIT bad events in a row, then a good one, four times
            for j in range(LIMIT):
                await bus.publish("mentions", mention(f"bad{i}-{j}"), key="k")
            await bus.publish("mentions", mention(f"good{i}"), key="k")
        await asyncio.wait_for(bus.join(), TIMEOUT)
        assert bus.halted() == []
        assert len(bus.dead_letters) == 4 * LIMIT
        assert broken.handled == [f"test:good{i}" for i in range(4)]
    finally:
        await bus.stop()


@pytest.mark.kafka
async def test_kafka_a_poison_flood_halts_the_group_and_a_restart_resumes(
    kafka_config: BusConfig,
) -> None:
    config = kafka_config.model_copy(update={"max_dead_letters_per_minute": LIMIT})
    harness = KafkaHarness(config)
    try:
        publisher = harness.bus()
        await publisher.start()
        for n in STREAM:  # one key: one partition, in order
            await publisher.publish("mentions", mention(n), key="k")

        bus = harness.bus()
        assert isinstance(bus, KafkaBus)
        poisoned = Poisoned()
        bus.subscribe("mentions", "g", poisoned, retry=NO_RETRY)
        await bus.start()
        await eventually(lambda: bool(bus.halted()), "the group to halt")
        letters = await harness.dead_letters(bus, "mentions", LIMIT)
        assert [d.offset for d in letters] == [2, 3, 4]
        assert poisoned.handled == ["test:good0", "test:good1"]
        assert gauge(bus, "consumer_halted", "mentions", "g") == 1
        await eventually(  # reported once the halted batch is rewound
            lambda: gauge(bus, "consumer_lag", "mentions", "g") == len(STREAM) - HALT_AT,
            "the lag of the halted group",
        )
        await bus.stop()

        fixed = Poisoned()
        fixed.fixed = True
        again = harness.bus()
        again.subscribe("mentions", "g", fixed, retry=NO_RETRY)
        await again.start()
        expected = [f"test:{n}" for n in STREAM[HALT_AT:]]
        await eventually(lambda: len(fixed.handled) >= len(expected), f"{expected}")
        assert fixed.handled == expected  # resumed at the halt point: nothing lost or redone
        assert again.halted() == []
        assert gauge(again, "consumer_halted", "mentions", "g") == 0
        await eventually(
            lambda: gauge(again, "consumer_lag", "mentions", "g") == 0, "the lag to reach 0"
        )
    finally:
        await harness.close()


def test_kafka_bus_takes_its_limits_from_the_config() -> None:
    config = BusConfig(
        kind="kafka", max_dead_letters_per_minute=7, max_failures_in_a_row=4, stop_timeout=3.5
    )
    bus = KafkaBus(config, consumer_options=FAST_GROUPS)
    assert bus._dead_letter_rate.limit == 7
    assert bus._failures.limit == 4
    assert BusConfig().max_failures_in_a_row == 10
    assert bus._stop_timeout == 3.5
    assert BusConfig().max_dead_letters_per_minute == 100


@pytest.mark.kafka
async def test_kafka_a_halted_consumer_leaves_its_group_and_another_member_resumes_at_once(
    kafka_config: BusConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """A halted member used to stay in its group, heartbeating, holding its partitions
    until ``max_poll_interval_ms`` (300 s) passed without a fetch: the other members could
    not take them over for minutes. Now it leaves the group at once; another member gets
    every partition and every record not dead-lettered, the one that halted it included
    (nothing was committed past it), while the halt stays reported."""
    caplog.set_level(logging.ERROR, logger="core.bus")
    config = kafka_config.model_copy(
        update={"max_dead_letters_per_minute": 100, "max_failures_in_a_row": LIMIT}
    )
    assert config.max_poll_interval_ms == 300_000  # the default: what a halted member held
    harness = KafkaHarness(config)
    try:
        publisher = harness.bus()
        await publisher.start()
        sent = [f"m{i}" for i in range(30)]
        for n in sent:  # a key each: spread over the topic's 3 partitions
            await publisher.publish("mentions", mention(n), key=n)

        first = harness.bus()
        assert isinstance(first, KafkaBus)
        first.subscribe("mentions", "g", Broken(), retry=FAST_RETRY)
        await first.start()
        await eventually(lambda: bool(first.halted()), "the first member to halt")
        letters = await harness.dead_letters(first, "mentions", LIMIT)
        dead = {Mention.model_validate_json(d.value).id for d in letters}
        assert len(dead) == LIMIT

        second = harness.bus()
        assert isinstance(second, KafkaBus)
        healthy = Collector()
        second.subscribe("mentions", "g", healthy)
        loop = asyncio.get_running_loop()
        joined = loop.time()
        await second.start()
        expected = {f"test:{n}" for n in sent} - dead
        await eventually(
            lambda: set(healthy.ids) >= expected,
            f"the second member to get every record the first did not dead-letter "
            f"({len(expected)}; has {len(set(healthy.ids))})",
        )
        took = loop.time() - joined
        assert took < TIMEOUT < config.max_poll_interval_ms / 1000 / 10
        assert set(healthy.ids) == expected  # the halting record too; no dead letter redone
        (state,) = second._consumers
        assert len(state.consumer.assignment()) == config.partitions  # all of them

        # the halt stays loud on the first member
        (halt,) = first.halted()
        assert halt.in_a_row and halt.group == "g"
        assert gauge(first, "consumer_halted", "mentions", "g") == 1
        runtime = Runtime(Settings(), roles=frozenset({Role.SCORER}))
        runtime.bus, runtime.ready = first, True
        assert await runtime.check_ready() == [halt.describe()]
        messages = [r.getMessage() for r in caplog.records]
        assert any("HALTING consumer mentions/g" in m for m in messages)
        assert any("mentions/g: halted; its consumer left the group" in m for m in messages)
        await first.stop()  # its consumer is closed already: a clean no-op
        assert first.halted() == [halt]  # until the next start
    finally:
        await harness.close()
