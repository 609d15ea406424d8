"""The bus contract, run against both implementations (memory and Kafka).

Each case gets a ``BusHarness``: it makes buses of one kind, reads their dead letters,
restarts a group, and stops every bus it made at the end. Waits are bounded.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from pydantic import BaseModel

from core.bus.base import Bus, DeadLetter, PermanentError, RetryPolicy, decode_event, dlq_topic
from core.bus.journal import BusJournal
from core.bus.kafka import KafkaBus
from core.bus.memory import MemoryBus
from core.events import (
    Evidence,
    HeatFeatures,
    Mention,
    ScoredMention,
    Sentiment,
    Signal,
    WatchMatch,
)
from core.settings import BusConfig

TIMEOUT = 20.0
FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)
# Tansu answers a JoinGroup after about half the session timeout: keep it short in tests.
FAST_GROUPS = {
    "session_timeout_ms": 2000,
    "heartbeat_interval_ms": 500,
    "rebalance_timeout_ms": 10000,
}
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def mention(n: int | str) -> Mention:
    return Mention(id=f"test:{n}", source="test", text=f"post {n}", created_at=T0)


def scored(n: int) -> ScoredMention:
    probs = {"negative": 0.8, "neutral": 0.1, "positive": 0.1}
    return ScoredMention(
        mention=mention(n),
        sentiment=Sentiment(label="negative", probs=probs, model="fake", version="1"),
    )


def signal(n: int) -> Signal:
    heat = HeatFeatures(
        mentions=5,
        mentions_window=5,
        window_minutes=10,
        unique_authors=4,
        reach=100,
        negative_share=0.8,
    )
    return Signal(
        id=f"sig-{n}",
        story_id=f"story-{n}",
        story_root=f"test:{n}",
        watch=WatchMatch(id="w1", brand="Acme", terms=("acme",)),
        tier=2,
        previous_tier=1,
        spread=1,
        heat=heat,
        explanation="five negative posts",
        evidence=(Evidence(id=f"test:{n}", created_at=T0, label="negative"),),
        at=T0,
    )


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Poll ``predicate`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.01)


class Collector:
    """A handler that records every batch it gets."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []

    async def __call__(self, events: list[Any]) -> None:
        self.batches.append(list(events))

    @property
    def events(self) -> list[Any]:
        return [e for batch in self.batches for e in batch]

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.events]

    async def wait_for(self, count: int) -> None:
        await eventually(lambda: len(self.events) >= count, f"{count} events (have {self.events})")


# -- harnesses -----------------------------------------------------------------------


class BusHarness(ABC):
    kind: str

    def __init__(self) -> None:
        self.made: list[Bus] = []

    def bus(self) -> Bus:
        bus = self._new()
        self.made.append(bus)
        return bus

    @abstractmethod
    def _new(self) -> Bus: ...

    @abstractmethod
    async def dead_letters(self, bus: Bus, topic: str, count: int) -> list[DeadLetter]:
        """Wait until ``topic`` has at least ``count`` dead letters; return them."""

    @abstractmethod
    async def reopen(self, bus: Bus, subscribe: Callable[[Bus], None]) -> Bus:
        """After ``bus.stop()``: a started bus where the same groups go on."""

    async def close(self) -> None:
        for bus in reversed(self.made):
            await bus.stop()


class MemoryHarness(BusHarness):
    kind = "memory"

    def _new(self) -> Bus:
        return MemoryBus(capacity=100)

    async def dead_letters(self, bus: Bus, topic: str, count: int) -> list[DeadLetter]:
        assert isinstance(bus, MemoryBus)

        def letters() -> list[DeadLetter]:
            return [d for d in bus.dead_letters if d.topic == topic]

        await eventually(lambda: len(letters()) >= count, f"{count} dead letters of {topic}")
        return letters()

    async def reopen(self, bus: Bus, subscribe: Callable[[Bus], None]) -> Bus:
        # The log lives in the instance: the same instance restarts, its groups resume.
        await bus.start()
        return bus


class JournalHarness(MemoryHarness):
    """The memory bus over a journal; a restart is a new instance on the same file (a new
    process), as in the embedded runtime."""

    kind = "memory-journal"

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self.files: dict[int, Path] = {}

    def _new(self) -> Bus:
        path = self.folder / f"bus-{len(self.made)}.journal"
        bus = MemoryBus(capacity=100, journal=BusJournal(path))
        self.files[id(bus)] = path
        return bus

    def _on(self, path: Path) -> Bus:
        bus = MemoryBus(capacity=100, journal=BusJournal(path))
        self.files[id(bus)] = path
        self.made.append(bus)
        return bus

    async def reopen(self, bus: Bus, subscribe: Callable[[Bus], None]) -> Bus:
        assert isinstance(bus, MemoryBus)
        await bus.close()
        fresh = self._on(self.files[id(bus)])
        subscribe(fresh)
        await fresh.start()
        return fresh

    async def close(self) -> None:
        await super().close()
        for bus in self.made:
            assert isinstance(bus, MemoryBus)
            await bus.close()


class KafkaHarness(BusHarness):
    kind = "kafka"

    def __init__(self, config: BusConfig) -> None:
        super().__init__()
        self.config = config

    def _new(self) -> Bus:
        return KafkaBus(self.config, consumer_options=FAST_GROUPS, poll_timeout=0.5)

    async def dead_letters(self, bus: Bus, topic: str, count: int) -> list[DeadLetter]:
        consumer = AIOKafkaConsumer(
            self.config.topic_prefix + dlq_topic(topic),
            bootstrap_servers=self.config.bootstrap_servers,
            group_id=None,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        letters: list[DeadLetter] = []
        try:

            async def read() -> None:
                while len(letters) < count:
                    batches = await consumer.getmany(timeout_ms=500)
                    for messages in batches.values():
                        for m in messages:
                            h = {k: v.decode() for k, v in m.headers}
                            letters.append(
                                DeadLetter(
                                    topic=h["topic"],
                                    group=h["group"],
                                    key=m.key.decode() if m.key is not None else None,
                                    value=m.value,
                                    reason=h["reason"],
                                    partition=int(h["partition"]),
                                    offset=int(h["offset"]),
                                )
                            )

            try:
                await asyncio.wait_for(read(), TIMEOUT)
            except TimeoutError:
                pytest.fail(f"timed out waiting for {count} dead letters of {topic}: {letters}")
        finally:
            await consumer.stop()
        return letters

    async def reopen(self, bus: Bus, subscribe: Callable[[Bus], None]) -> Bus:
        # A new instance (a new process, say) with the same config and groups.
        fresh = self.bus()
        subscribe(fresh)
        await fresh.start()
        return fresh


@pytest.fixture(params=["memory", "memory-journal", pytest.param("kafka", marks=pytest.mark.kafka)])
async def bus_factory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BusHarness]:
    harness: BusHarness
    if request.param == "memory":
        harness = MemoryHarness()
    elif request.param == "memory-journal":
        harness = JournalHarness(tmp_path)
    else:
        harness = KafkaHarness(request.getfixturevalue("kafka_config"))
    try:
        yield harness
    finally:
        await harness.close()


def dead_letter_count(bus: Bus, topic: str, group: str) -> float:
    value = bus.metrics.registry.get_sample_value(
        "crisiswatch_bus_dead_letters_total", {"topic": topic, "group": group}
    )
    return value or 0.0


# -- the contract ----------------------------------------------------------------------


async def test_round_trip_delivers_decoded_events(bus_factory: BusHarness) -> None:
    bus = bus_factory.bus()
    got = {topic: Collector() for topic in ("mentions", "scored", "signals")}
    for topic, collector in got.items():
        bus.subscribe(topic, "g", collector)
    await bus.start()
    sent: dict[str, BaseModel] = {"mentions": mention(1), "scored": scored(2), "signals": signal(3)}
    for topic, event in sent.items():
        await bus.publish(topic, event, key="k")
    for topic, event in sent.items():
        await got[topic].wait_for(1)
        assert got[topic].events == [event]
        assert type(got[topic].events[0]) is type(event)


async def test_every_group_gets_every_event(bus_factory: BusHarness) -> None:
    bus = bus_factory.bus()
    first, second = Collector(), Collector()
    bus.subscribe("mentions", "first", first, max_batch=5)
    bus.subscribe("mentions", "second", second)
    await bus.start()
    sent = [mention(i) for i in range(12)]
    for i, event in enumerate(sent):
        await bus.publish("mentions", event, key=f"key-{i % 4}")
    await first.wait_for(12)
    await second.wait_for(12)
    assert sorted(first.ids) == sorted(e.id for e in sent)
    assert sorted(second.ids) == sorted(e.id for e in sent)


async def test_events_with_the_same_key_keep_their_order(bus_factory: BusHarness) -> None:
    bus = bus_factory.bus()
    got = Collector()
    bus.subscribe("mentions", "g", got, max_batch=4)
    await bus.start()
    keys = ("a", "b", "c")
    for i in range(10):
        for key in keys:
            await bus.publish("mentions", mention(f"{key}{i}"), key=key)
    await got.wait_for(30)
    for key in keys:
        seen = [e.id for e in got.events if e.id.startswith(f"test:{key}")]
        assert seen == [f"test:{key}{i}" for i in range(10)]


async def test_publish_many_delivers_all_in_key_order(bus_factory: BusHarness) -> None:
    bus = bus_factory.bus()
    got = Collector()
    bus.subscribe("mentions", "g", got, max_batch=8)
    await bus.start()
    keys = ("a", "b", "c")
    await bus.publish_many(
        "mentions", [(key, mention(f"{key}{i}")) for i in range(10) for key in keys]
    )
    await got.wait_for(30)
    for key in keys:
        seen = [e.id for e in got.events if e.id.startswith(f"test:{key}")]
        assert seen == [f"test:{key}{i}" for i in range(10)]


async def test_batches_respect_max_batch_and_deliver_everything(bus_factory: BusHarness) -> None:
    bus = bus_factory.bus()
    gate = asyncio.Event()
    batches: list[list[str]] = []

    async def handler(events: list[Any]) -> None:
        await gate.wait()  # the first batch waits until everything is published
        batches.append([e.id for e in events])

    bus.subscribe("mentions", "g", handler, max_batch=3)
    await bus.start()
    for i in range(10):
        await bus.publish("mentions", mention(i), key="one-key")
    gate.set()
    await eventually(lambda: sum(map(len, batches)) >= 10, "10 events")
    assert all(1 <= len(b) <= 3 for b in batches), batches
    assert max(map(len, batches)) == 3, batches  # batching happened
    assert [i for b in batches for i in b] == [f"test:{i}" for i in range(10)]


async def test_a_transient_failure_is_retried_not_lost(bus_factory: BusHarness) -> None:
    bus = bus_factory.bus()
    calls: list[str] = []
    handled: list[str] = []

    async def flaky(events: list[Any]) -> None:
        for e in events:
            calls.append(e.id)
            if e.id == "test:1" and calls.count(e.id) == 1:
                raise ConnectionError("database went away")
            handled.append(e.id)

    bus.subscribe("mentions", "g", flaky, retry=FAST_RETRY)
    await bus.start()
    for i in range(3):
        await bus.publish("mentions", mention(i), key="k")
    await eventually(lambda: len(set(handled)) == 3, "all three handled")
    assert calls.count("test:1") == 2  # delivered again after the failure
    assert handled == ["test:0", "test:1", "test:2"]
    assert dead_letter_count(bus, "mentions", "g") == 0


async def test_a_handler_that_keeps_failing_dead_letters_the_event(
    bus_factory: BusHarness,
) -> None:
    bus = bus_factory.bus()
    handled: list[str] = []
    attempts: list[str] = []

    async def handler(events: list[Any]) -> None:
        attempts.extend(e.id for e in events)
        if any(e.id == "test:bad" for e in events):
            raise TimeoutError("downstream is down")
        handled.extend(e.id for e in events)

    bus.subscribe("mentions", "g", handler, retry=FAST_RETRY)
    await bus.start()
    for n in ("0", "bad", "2"):
        await bus.publish("mentions", mention(n), key="k")
    (letter,) = await bus_factory.dead_letters(bus, "mentions", 1)
    await eventually(lambda: "test:2" in handled, "the event after the failing one")
    assert attempts.count("test:bad") == FAST_RETRY.max_attempts
    assert letter.reason.startswith("failed 3 times: TimeoutError")
    assert decode_event("mentions", letter.value) == mention("bad")
    assert (letter.group, letter.key) == ("g", "k")
    assert handled == ["test:0", "test:2"]


async def test_permanent_error_goes_to_the_dlq_and_later_events_flow(
    bus_factory: BusHarness,
) -> None:
    bus = bus_factory.bus()
    handled: list[str] = []

    async def handler(events: list[Any]) -> None:
        for e in events:
            if e.id == "test:poison":
                raise PermanentError("cannot ever score this")
        handled.extend(e.id for e in events)

    bus.subscribe("mentions", "g", handler, max_batch=10, retry=FAST_RETRY)
    await bus.start()
    ids = ["0", "1", "poison", "3", "4"]
    for n in ids:
        await bus.publish("mentions", mention(n), key="k")
    (letter,) = await bus_factory.dead_letters(bus, "mentions", 1)
    await eventually(lambda: "test:4" in handled, "the events after the poison")
    assert letter.reason == "permanent: cannot ever score this"
    assert (letter.topic, letter.group, letter.key) == ("mentions", "g", "k")
    assert decode_event("mentions", letter.value) == mention("poison")
    # every good event handled, in order (a batch may be retried one by one: dedupe)
    assert list(dict.fromkeys(handled)) == ["test:0", "test:1", "test:3", "test:4"]


async def test_undecodable_bytes_are_dead_lettered_not_a_crash(bus_factory: BusHarness) -> None:
    bus = bus_factory.bus()
    got = Collector()
    bus.subscribe("mentions", "g", got, max_batch=5)
    await bus.start()
    await bus.publish_raw("mentions", b"\x00not json", key="junk")
    await bus.publish_raw("mentions", b'{"id": "x"}', key=None)
    await bus.publish("mentions", mention(1), key="k")
    letters = await bus_factory.dead_letters(bus, "mentions", 2)
    await got.wait_for(1)
    assert got.ids == ["test:1"]
    assert sorted(d.value for d in letters) == [b"\x00not json", b'{"id": "x"}']
    assert all(d.reason.startswith("undecodable: ") for d in letters)
    assert {d.key for d in letters} == {"junk", None}
    assert dead_letter_count(bus, "mentions", "g") == 2


async def test_a_large_undecodable_record_is_not_quoted_whole_in_its_reason_or_the_log(
    bus_factory: BusHarness, caplog: pytest.LogCaptureFixture
) -> None:
    """A decoding error quotes its input: the reason of a 200 kB undecodable record held
    the whole record, in the ERROR line (and, for the one that halts a consumer, in the
    CRITICAL line and /readyz). The record itself is the dead letter's value."""
    caplog.set_level(logging.INFO, logger="core.bus")
    bus = bus_factory.bus()
    got = Collector()
    bus.subscribe("mentions", "g", got)
    await bus.start()
    junk = b"<" + b"x" * 200_000
    await bus.publish_raw("mentions", junk, key="junk")
    await bus.publish("mentions", mention(1), key="junk")
    [letter] = await bus_factory.dead_letters(bus, "mentions", 1)
    await got.wait_for(1)
    assert letter.value == junk
    assert letter.reason.startswith("undecodable: ")
    assert len(letter.reason) <= 2000
    assert max(len(r.getMessage()) for r in caplog.records) < 5000


async def test_a_restarted_group_resumes_after_its_last_commit(bus_factory: BusHarness) -> None:
    """Stop mid-stream: what was handled is not delivered again, the rest is not lost."""
    seen: list[list[str]] = [[], []]  # per incarnation of the group
    incarnation = 0
    in_flight = asyncio.Event()
    release = asyncio.Event()

    async def handler(events: list[Any]) -> None:
        for e in events:
            if incarnation == 0 and e.id == "test:3":
                in_flight.set()
                await release.wait()  # stop() is called while this batch is in flight
            seen[incarnation].append(e.id)

    def subscribe(bus: Bus) -> None:
        bus.subscribe("mentions", "resume", handler, max_batch=1)

    bus = bus_factory.bus()
    subscribe(bus)
    await bus.start()
    sent = [f"test:{i}" for i in range(10)]
    for i in range(10):
        await bus.publish("mentions", mention(i), key="k")
    await asyncio.wait_for(in_flight.wait(), TIMEOUT)
    stopping = asyncio.create_task(bus.stop())
    await asyncio.sleep(0)  # let stop() begin (it flags "stop fetching" before it awaits)
    assert not stopping.done()  # it waits for the batch in flight
    release.set()
    await asyncio.wait_for(stopping, TIMEOUT)
    assert seen[0] == sent[:4]  # the in-flight batch finished; nothing new was taken

    incarnation = 1
    if bus_factory.kind == "kafka":
        more = bus_factory.bus()  # a producer while the group is down
        await more.start()
        publisher = more
    else:
        publisher = bus
    for i in range(10, 12):
        await publisher.publish("mentions", mention(i), key="k")
    await bus_factory.reopen(bus, subscribe)
    await eventually(lambda: len(seen[1]) >= 8, f"the rest of the stream (have {seen[1]})")
    assert seen[1] == [f"test:{i}" for i in range(4, 12)]


async def test_a_group_subscribes_to_a_topic_once(bus_factory: BusHarness) -> None:
    bus = bus_factory.bus()
    bus.subscribe("mentions", "g", Collector())
    bus.subscribe("scored", "g", Collector())  # another topic: fine
    with pytest.raises(ValueError, match="already subscribes"):
        bus.subscribe("mentions", "g", Collector())


async def test_memory_a_group_added_at_a_restart_reads_from_the_oldest_kept_event() -> None:
    bus = MemoryBus(capacity=10)
    old = Collector()
    bus.subscribe("mentions", "old", old)
    await bus.start()
    for i in range(5):
        await bus.publish("mentions", mention(i), key="k")
    await asyncio.wait_for(bus.join(), TIMEOUT)  # all handled: the log is trimmed
    await bus.stop()
    new = Collector()
    bus.subscribe("mentions", "new", new)
    await bus.start()
    try:
        await bus.publish("mentions", mention(5), key="k")
        await asyncio.wait_for(bus.join(), TIMEOUT)
        assert new.ids == ["test:5"]
        assert old.ids == [f"test:{i}" for i in range(6)]
    finally:
        await bus.stop()


async def test_memory_a_topic_nobody_reads_never_blocks_publishers() -> None:
    bus = MemoryBus(capacity=2)
    bus.subscribe("mentions", "g", Collector())
    await bus.start()
    try:
        for i in range(5):  # more than capacity, and no group reads "signals"
            await asyncio.wait_for(bus.publish("signals", signal(i), key="k"), TIMEOUT)
    finally:
        await bus.stop()


async def test_memory_publish_waits_while_a_group_lags_capacity() -> None:
    bus = MemoryBus(capacity=3)
    release = asyncio.Event()
    got = Collector()

    async def slow(events: list[Any]) -> None:
        await release.wait()
        await got(events)

    bus.subscribe("mentions", "slow", slow, max_batch=1)
    bus.subscribe("mentions", "fast", Collector())
    await bus.start()
    try:
        for i in range(3):
            await asyncio.wait_for(bus.publish("mentions", mention(i), key="k"), TIMEOUT)
        blocked = asyncio.create_task(bus.publish("mentions", mention(3), key="k"))
        done, _ = await asyncio.wait({blocked}, timeout=0.2)
        assert not done, "publish must wait while the slow group lags 3 events"
        release.set()
        await asyncio.wait_for(blocked, TIMEOUT)
        await asyncio.wait_for(bus.join(), TIMEOUT)
        assert got.ids == [f"test:{i}" for i in range(4)]
    finally:
        release.set()
        await bus.stop()


async def test_memory_publish_many_beyond_capacity_waits_in_runs_and_keeps_order() -> None:
    bus = MemoryBus(capacity=4)
    release = asyncio.Event()
    got = Collector()

    async def slow(events: list[Any]) -> None:
        await release.wait()
        await got(events)

    bus.subscribe("mentions", "slow", slow, max_batch=3)
    await bus.start()
    try:
        sent = [("k", mention(i)) for i in range(10)]
        many = asyncio.create_task(bus.publish_many("mentions", sent))
        done, _ = await asyncio.wait({many}, timeout=0.2)
        assert not done, "publish_many must wait while the group lags capacity"
        assert bus._topics["mentions"].end == 4  # the first run: as many as there is room for
        release.set()
        await asyncio.wait_for(many, TIMEOUT)
        await asyncio.wait_for(bus.join(), TIMEOUT)
        assert got.ids == [f"test:{i}" for i in range(10)]
        assert all(len(batch) <= 3 for batch in got.batches)
    finally:
        release.set()
        await bus.stop()


async def test_memory_stop_is_bounded_while_a_handler_keeps_retrying() -> None:
    """SIGTERM while a handler retries until it works (the alerter's policy, the database
    full): stop() waited for ever. After ``stop_timeout`` the batch is cancelled,
    uncommitted, and a restart delivers it again."""
    bus = MemoryBus(capacity=100, stop_timeout=0.3)
    failing = True
    seen: list[str] = []

    async def handler(events: list[Any]) -> None:
        if failing:
            raise OSError("database or disk is full")
        seen.extend(e.id for e in events)

    forever = RetryPolicy(max_attempts=1_000_000_000, initial_backoff=0.01, max_backoff=0.05)
    bus.subscribe("mentions", "g", handler, max_batch=5, retry=forever)
    await bus.start()
    for i in range(5):
        await bus.publish("mentions", mention(i), key="k")
    await asyncio.sleep(0.1)
    await asyncio.wait_for(bus.stop(), timeout=5)
    assert not bus.started and seen == []
    failing = False
    await bus.start()
    await asyncio.wait_for(bus.join(), TIMEOUT)
    assert seen == [f"test:{i}" for i in range(5)]
    await bus.stop()


async def test_memory_consumers_get_the_published_event_equal_to_its_decoding() -> None:
    bus = MemoryBus(capacity=100)
    got = Collector()
    bus.subscribe("scored", "g", got)
    await bus.start()
    try:
        event = scored(1)
        await bus.publish("scored", event, key="k")
        await got.wait_for(1)
        assert got.events[0] is event  # handed over as published, not decoded again
        assert got.events == [decode_event("scored", event.model_dump_json().encode())]
    finally:
        await bus.stop()


async def test_memory_an_event_of_another_type_is_decoded_from_its_bytes() -> None:
    """Published to a topic of another type, the event is not handed over as it is: its
    bytes are decoded as the topic's type, and dead-lettered when they are not one (as
    on Kafka)."""
    bus = MemoryBus(capacity=100)
    got = Collector()
    bus.subscribe("mentions", "g", got)
    await bus.start()
    try:
        await bus.publish("mentions", signal(1), key="k")
        await bus.publish("mentions", mention(2), key="k")
        await got.wait_for(1)
        assert got.ids == ["test:2"]
        assert [d.reason.startswith("undecodable: ") for d in bus.dead_letters] == [True]
    finally:
        await bus.stop()


# -- Kafka only: rebalancing ----------------------------------------------------------


@pytest.mark.kafka
async def test_kafka_rebalance_commits_the_batch_in_flight(
    kafka_config: BusConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """A second member joins while the first is mid-batch: the first finishes and commits
    before giving partitions up, so no event is handled by both."""
    caplog.set_level(logging.INFO, logger="core.bus.kafka")
    handled: dict[str, list[str]] = {"a": [], "b": []}
    in_flight = asyncio.Event()
    release = asyncio.Event()

    def handler_for(member: str) -> Callable[[list[Any]], Awaitable[None]]:
        async def handler(events: list[Any]) -> None:
            for e in events:
                if member == "a" and e.id == "test:0":
                    in_flight.set()
                    await release.wait()
                handled[member].append(e.id)

        return handler

    harness = KafkaHarness(kafka_config)
    try:
        a = harness.bus()
        a.subscribe("mentions", "shared", handler_for("a"), max_batch=1)
        await a.start()
        for i in range(12):
            await a.publish("mentions", mention(i), key=f"k{i % 6}")
        await asyncio.wait_for(in_flight.wait(), TIMEOUT)

        b = harness.bus()
        b.subscribe("mentions", "shared", handler_for("b"), max_batch=1)
        # start() returns once b has partitions: after a gave its up (so, after release)
        b_started = asyncio.create_task(b.start())
        await eventually(
            lambda: any(
                "revoked; finishing the batch in flight" in r.message for r in caplog.records
            ),
            "member a to be asked to give partitions up",
        )
        # The rebalance cannot finish while a's batch is in flight (a Tansu join takes
        # about 1 s here, so 2.5 s would be plenty if the listener did not wait).
        done, _ = await asyncio.wait({b_started}, timeout=2.5)
        assert not done, "the rebalance went on while a batch was in flight"
        release.set()
        await asyncio.wait_for(b_started, TIMEOUT)
        await eventually(
            lambda: len(set(handled["a"]) | set(handled["b"])) == 12,
            f"all 12 events handled (have {handled})",
        )
        assert "test:0" in handled["a"]
        assert not set(handled["a"]) & set(handled["b"]), handled
    finally:
        release.set()
        await harness.close()


# -- Kafka only: poison records --------------------------------------------------------


@pytest.mark.kafka
async def test_kafka_a_record_too_large_to_dead_letter_whole_is_dead_lettered_cut_and_flow_goes_on(
    kafka_config: BusConfig,
) -> None:
    """A record that fits its topic but not the dead-letter topic once the reason and the
    other headers are added (here: just under the producer's 1 MiB) is dead-lettered cut
    short, with its full size in a header; before, its dead letter failed on every try and
    its partition never moved past it (while the dead-letter count went up each time)."""
    harness = KafkaHarness(kafka_config)
    try:
        bus = harness.bus()
        got = Collector()
        bus.subscribe("mentions", "g", got)
        await bus.start()
        # fits alone (about 90 bytes of record framing), not with the dead letter's
        # headers (its reason, topic, group, partition, offset: some 250 bytes)
        huge = b"x" * (1_048_576 - 150)
        await bus.publish_raw("mentions", huge, key="k")
        await bus.publish("mentions", mention(1), key="k")  # the same partition, after it
        letters = await harness.dead_letters(bus, "mentions", 1)
        await got.wait_for(1)
        assert got.ids == ["test:1"]
        assert [(d.offset, d.key) for d in letters] == [(0, "k")]
        assert letters[0].reason.startswith("undecodable: ")
        assert 0 < len(letters[0].value) < len(huge)
        assert huge.startswith(letters[0].value)
        assert dead_letter_count(bus, "mentions", "g") == 1
    finally:
        await harness.close()
