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
