"""Kafka + PostgreSQL: two detectors share the "scored" partitions; one leaves mid-story
(a rebalance), the other picks its watches up from their saved state and carries every
story to its final tier: no Signal id twice, no tier signalled twice, one generation per
watch (the state was restored, not restarted)."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiokafka.partitioner import murmur2

from core.bus.kafka import KafkaBus
from core.db import make_engine, make_sessionmaker, upgrade_database
from core.events import TOPIC_SCORED, TOPIC_SIGNALS, ScoredMention, Signal, WatchMatch
from core.metrics import Metrics
from core.settings import BusConfig
from sentiment.detector.config import DetectorConfig
from sentiment.detector.detector import Detector
from sentiment.detector.service import DetectorService
from sentiment.detector.statestore import StateStore
from tests.integration.test_bus_contract import FAST_GROUPS, eventually
from tests.unit.test_detector import T0, by_time, chatter, complaint
from tests.unit.test_detector_state import on_watch

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

WATCHES = [WatchMatch(id=f"w{i}", brand=f"W{i}") for i in range(6)]
SPLIT = T0 + timedelta(minutes=133)  # after each complaint's tier 2, before its burst
TIMEOUT = 60.0


def stream(watch: WatchMatch) -> list[ScoredMention]:
    return on_watch(by_time(chatter(0, 180), complaint(120)), watch)


def reference() -> dict[str, list[tuple[str, int, int, int]]]:
    """Per watch: (story, n, tier, spread) of each Signal, from one detector in memory."""
    out: dict[str, list[tuple[str, int, int, int]]] = {}
    for watch in WATCHES:
        detector = Detector(DetectorConfig())
        out[watch.id] = [
            (s.story_id, int(s.id.rpartition("#")[2]), s.tier, s.spread)
            for m in stream(watch)
            for s in detector.observe(m)
        ]
    return out


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[StateStore]:
    engine = make_engine(pg_url)
    await upgrade_database(engine)
    try:
        yield StateStore(make_sessionmaker(engine))
    finally:
        await engine.dispose()


async def test_a_detector_leaving_mid_story_loses_and_repeats_nothing(
    kafka_config: BusConfig, store: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sentiment.detector.service")
    assert {(murmur2(w.id.encode()) & 0x7FFFFFFF) % 3 for w in WATCHES} == {0, 1, 2}
    expected = reference()
    first_part: dict[str, int] = {}
    signals: list[Signal] = []

    async def collect(events: list[Any]) -> None:
        signals.extend(events)

    def bus() -> KafkaBus:
        return KafkaBus(kafka_config, consumer_options=FAST_GROUPS, poll_timeout=0.5)

    config = DetectorConfig(max_batch=50, max_wait_seconds=0)
    tap, bus_a, bus_b = bus(), bus(), bus()
    tap.subscribe(TOPIC_SIGNALS, "test", collect, max_batch=100)
    a = DetectorService(bus_a, config, Metrics(), store=store)
    b = DetectorService(bus_b, config, Metrics(), store=store)
    a.register()
    b.register()
    try:
        await tap.start()
        await asyncio.gather(bus_a.start(), bus_b.start())  # the partitions are shared

        async def publish(part: list[tuple[str, ScoredMention]]) -> None:
            await tap.publish_many(TOPIC_SCORED, part)

        early = [(w.id, m) for w in WATCHES for m in stream(w) if m.mention.created_at < SPLIT]
        late = [(w.id, m) for w in WATCHES for m in stream(w) if m.mention.created_at >= SPLIT]
        await publish(early)
        # the Signals of the first part, per watch (from the reference)
        for watch in WATCHES:
            first = Detector(DetectorConfig())
            first_part[watch.id] = sum(
                len(first.observe(m)) for m in stream(watch) if m.mention.created_at < SPLIT
            )
        assert all(0 < n < len(expected[w]) for w, n in first_part.items()), first_part
        await eventually(
            lambda: len(signals) >= sum(first_part.values()),
            "the Signals of the first part",
            TIMEOUT,
        )
        assert a.detector.watches_held and b.detector.watches_held  # both took watches
        await bus_a.stop()  # A leaves the group mid-story: B gets every partition
        await a.stop()
        await publish(late)
        total = sum(len(v) for v in expected.values())
        await eventually(lambda: len(signals) >= total, f"{total} Signals", TIMEOUT)
        await asyncio.sleep(1.0)  # anything more (a duplicate) would arrive by now
    finally:
        await tap.stop()
        await bus_a.stop()
        await bus_b.stop()

    ids = [s.id for s in signals]
    assert len(ids) == len(set(ids)), "a Signal id was published twice"
    got: dict[str, list[tuple[str, int, int, int]]] = defaultdict(list)
    generations: dict[str, set[str]] = defaultdict(set)
    for s in signals:
        gen, _, n = s.id.rpartition("#")[2].rpartition(".")
        got[s.watch.id].append((s.story_id, int(n), s.tier, s.spread))
        generations[s.watch.id].add(gen)
    assert dict(got) == expected  # every tier once, in order, to the final tier
    assert all(len(g) == 1 for g in generations.values()), generations
    restored = b.metrics.registry.get_sample_value(
        "crisiswatch_detector_restores_total", {"outcome": "loaded"}
    )
    assert restored and restored >= 1  # B took A's watches over from their snapshots
    # the bus told the detectors of each rebalance (they dropped what they held)
    assert any("partitions moved" in r.getMessage() for r in caplog.records)


class StallingStore(StateStore):
    """A store whose saves hang while ``stall`` is set, until ``release`` (a detector
    paused mid-save: a GC pause, a frozen VM, a database lock)."""

    def __init__(self, store: StateStore) -> None:
        super().__init__(store.sessions)
        self.stall = False
        self.stalled = asyncio.Event()
        self.release = asyncio.Event()

    async def save(self, changes: Any, fmt: int) -> Any:
        if self.stall:
            self.stall = False
            self.stalled.set()
            await self.release.wait()
        return await super().save(changes, fmt)


async def test_a_stalled_detector_is_fenced_after_another_took_its_watches(
    kafka_config: BusConfig, store: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A stalls inside a state save for longer than ``max_poll_interval_ms``: the group
    gives its partitions to B, which claims the watches from their saved state and goes
    on. When A wakes, its save is refused (fenced): nothing of it is written, it is
    counted and logged, and A's batch fails instead of committing. Every Signal reaches
    the topic as one detector gives it (A's pre-stall Signals come again from B with the
    same ids: at-least-once, which the alerter takes once)."""
    caplog.set_level(logging.INFO)
    expected = reference()
    signals: list[Signal] = []

    async def collect(events: list[Any]) -> None:
        signals.extend(events)

    options = {**FAST_GROUPS, "max_poll_interval_ms": 3000}

    def bus() -> KafkaBus:
        return KafkaBus(kafka_config, consumer_options=options, poll_timeout=0.5)

    config = DetectorConfig(max_batch=50, max_wait_seconds=0)
    stalling = StallingStore(store)
    tap, bus_a, bus_b = bus(), bus(), bus()
    tap.subscribe(TOPIC_SIGNALS, "test", collect, max_batch=100)
    a = DetectorService(bus_a, config, Metrics(), store=stalling)
    b = DetectorService(bus_b, config, Metrics(), store=StateStore(store.sessions))
    a.register()
    b.register()
    total = sum(len(sigs) for sigs in expected.values())
    try:
        await tap.start()
        await asyncio.gather(bus_a.start(), bus_b.start())
        early = [(w.id, m) for w in WATCHES for m in stream(w) if m.mention.created_at < SPLIT]
        late = [(w.id, m) for w in WATCHES for m in stream(w) if m.mention.created_at >= SPLIT]
        await tap.publish_many(TOPIC_SCORED, early)
        await eventually(
            lambda: bool(a.detector.watches_held and b.detector.watches_held),
            "both detectors holding watches",
            TIMEOUT,
        )
        await eventually(lambda: not a._dirty and not b._dirty, "both saved", TIMEOUT)
        stalling.stall = True
        await tap.publish_many(TOPIC_SCORED, late)
        await asyncio.wait_for(stalling.stalled.wait(), TIMEOUT)
        # A is stuck in a save: past max_poll_interval_ms B gets every partition, claims
        # A's watches from the store and carries every story to its end
        distinct = lambda: len({s.id for s in signals})  # noqa: E731
        await eventually(lambda: distinct() >= total, f"{total} distinct Signals", TIMEOUT)
        stalling.release.set()
        await eventually(  # (one count per watch of the stalled batch)
            lambda: (
                (
                    a.metrics.registry.get_sample_value("crisiswatch_detector_state_fenced_total")
                    or 0
                )
                >= 1
            ),
            "A's save to be fenced",
            TIMEOUT,
        )
        await asyncio.sleep(2.0)  # A's batch fails and is not committed; nothing more comes
    finally:
        await tap.stop()
        await bus_a.stop()
        await bus_b.stop()

    assert any("was taken over by another detector" in r.getMessage() for r in caplog.records)
    first: dict[str, Signal] = {}
    for s in signals:
        if s.id in first:  # the same id again: the very same Signal (at-least-once)
            assert s.model_dump(exclude={"at"}) == first[s.id].model_dump(exclude={"at"})
        first.setdefault(s.id, s)
    got: dict[str, list[tuple[str, int, int, int]]] = defaultdict(list)
    for s in first.values():
        got[s.watch.id].append((s.story_id, int(s.id.rpartition(".")[2]), s.tier, s.spread))
    assert {w: sorted(v) for w, v in got.items()} == {w: sorted(v) for w, v in expected.items()}
