"""Fencing of the detector's saved state (SQLite and PostgreSQL): a process that loaded
a watch, then lost it to another process that claimed it since (an outage longer than
the poll interval, a long pause), is refused its save: the newer state stays intact,
the refusal is logged and counted, the watch is dropped from memory, the batch fails
(retried by the bus, never dead-lettered), and a later batch of that watch claims it
again and goes on from the state its successor saved."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.bus import PermanentError
from core.bus.memory import MemoryBus
from core.events import TOPIC_SCORED, TOPIC_SIGNALS, ScoredMention, Signal
from core.metrics import Metrics
from sentiment.detector import statestore
from sentiment.detector.config import DetectorConfig
from sentiment.detector.detector import Detector
from sentiment.detector.service import GROUP, DetectorService, StateFenced
from sentiment.detector.statestore import (
    DetectorStateRow,
    DetectorStoryRow,
    Fenced,
    StateStore,
    WatchKey,
)
from tests.unit.test_detector_state import (
    BATCH,
    batches,
    crisis,
    delta,
    normalised,
    one_generation_per_watch,
    published,
    sample,
    service,
    uninterrupted,
)
from tests.unit.test_detector_state_outage import FAST

ACME: WatchKey = ("acme", False)
BETA: WatchKey = ("beta", False)
FENCED = "crisiswatch_detector_state_fenced_total"
WAITING = text(  # sessions of this (test) database waiting for a lock
    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE NOT l.granted AND a.datname = current_database()"
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest) -> async_sessionmaker[AsyncSession]:
    """The same tests on SQLite (embedded mode) and PostgreSQL (distributed mode)."""
    name = "sessions" if request.param == "sqlite" else "pg_sessions"
    sessions: async_sessionmaker[AsyncSession] = request.getfixturevalue(name)
    return sessions


async def rows(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    """Everything the tables hold (to compare before and after a refused save)."""
    async with sessions() as session:
        watches = (
            await session.execute(
                select(
                    DetectorStateRow.watch_id,
                    DetectorStateRow.drill,
                    DetectorStateRow.format,
                    DetectorStateRow.state,
                    DetectorStateRow.updated_at,
                    DetectorStateRow.epoch,
                ).order_by(DetectorStateRow.watch_id, DetectorStateRow.drill)
            )
        ).all()
        stories = (
            await session.execute(
                select(
                    DetectorStoryRow.watch_id,
                    DetectorStoryRow.drill,
                    DetectorStoryRow.story_id,
                    DetectorStoryRow.state,
                ).order_by(
                    DetectorStoryRow.watch_id, DetectorStoryRow.drill, DetectorStoryRow.story_id
                )
            )
        ).all()
    return {"watches": [tuple(r) for r in watches], "stories": [tuple(r) for r in stories]}


async def epochs(sessions: async_sessionmaker[AsyncSession]) -> dict[WatchKey, int]:
    async with sessions() as session:
        found = await session.execute(
            select(DetectorStateRow.watch_id, DetectorStateRow.drill, DetectorStateRow.epoch)
        )
        return {(w, d): e for w, d, e in found.all()}


async def test_a_store_whose_watch_was_claimed_since_writes_nothing_of_it(
    db: async_sessionmaker[AsyncSession],
) -> None:
    a, b = StateStore(db), StateStore(db)
    assert await a.load([ACME, BETA]) == {}  # never saved: claimed all the same
    assert (a.epoch(ACME), a.epoch(BETA)) == (1, 1)
    assert await a.save({ACME: delta(b"a1", {"s": b"a1"}), BETA: delta(b"b1", {})}, 3) == []
    loaded = await b.load([ACME])  # B takes acme over
    assert loaded[ACME].state == b"a1" and b.epoch(ACME) == 2
    assert await b.save({ACME: delta(b"b2", {"s": b"b2", "t": b"b2"})}, 3) == []
    before = await rows(db)
    # A's stale save of acme is refused; beta, still its own, is written
    refused = await a.save({ACME: delta(b"a2", {"s": b"a2"}, ("t",)), BETA: delta(b"b3", {})}, 3)
    assert refused == [Fenced(ACME, held=1, stored=2)]
    assert a.epoch(ACME) is None and a.epoch(BETA) == 1
    after = await rows(db)
    assert after["stories"] == before["stories"]
    acme_rows = [r for r in after["watches"] if r[:2] == ACME]
    assert acme_rows == [r for r in before["watches"] if r[:2] == ACME]
    reread = await StateStore(db).load([ACME, BETA])
    assert (reread[ACME].state, reread[ACME].stories) == (b"b2", {"s": b"b2", "t": b"b2"})
    assert reread[BETA].state == b"b3"
    # a later load claims it again (epoch 4: the reread claimed 3) and the save goes through
    assert (await a.load([ACME]))[ACME].state == b"b2" and a.epoch(ACME) == 4
    assert await a.save({ACME: delta(b"a4", {})}, 3) == []
    assert await b.save({ACME: delta(b"b5", {})}, 3) == [Fenced(ACME, held=2, stored=4)]
    assert (await epochs(db))[ACME] == 4


async def test_a_detector_that_lost_its_watches_cannot_write_over_its_successor(
    db: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    """A handles the first batches; B takes the watches over (a rebalance while A was
    stuck) and goes on; A's stale batch is then refused: B's state is intact, A counts
    and logs it and drops the watches; A, handed a later batch, claims them again and
    goes on from B's state. All the Signals (redeliveries keep their ids) are those of
    one uninterrupted run."""
    caplog.set_level(logging.ERROR, logger="sentiment.detector.service")
    reference = await uninterrupted()
    parts = batches(crisis())
    k, m = 6, 14
    metrics_a = Metrics()
    svc_a = service(StateStore(db), metrics_a)
    svc_b = service(StateStore(db))
    for batch in parts[:k]:
        await svc_a.handle(list(batch))
    for batch in parts[k:m]:  # B claims the watches and handles what A had not committed
        await svc_b.handle(list(batch))
    held = svc_a.detector.watches_held
    touched = {Detector.key_of(event) for event in parts[k]}
    before = await rows(db)
    with pytest.raises(StateFenced) as refused:
        await svc_a.handle(list(parts[k]))  # A's stuck batch: its save comes through late
    assert not isinstance(refused.value, PermanentError)  # the bus tries it again
    assert {f.key for f in refused.value.fenced} == touched
    assert await rows(db) == before  # B's state is intact
    assert sample(metrics_a, FENCED) == len(touched)
    assert all(not svc_a.detector.holds(key) for key in touched)
    assert svc_a.detector.watches_held == held - len(touched)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == len(touched)
    assert "watch 'acme' was taken over by another detector (epoch 1 -> 2)" in errors[0]
    # A is handed the rest (it owns the partition again): it claims the watches again,
    # loads B's state and goes on
    for batch in parts[m:]:
        await svc_a.handle(list(batch))
    assert sample(metrics_a, FENCED) == len(touched)
    stored = await epochs(db)
    assert {key: stored[key] for key in touched} == dict.fromkeys(touched, 3)  # A, B, A
    signals: dict[str, Signal] = {}
    for s in published(svc_a) + published(svc_b):
        assert signals.setdefault(s.id, s) == s  # a redelivered Signal is the same Signal
    assert sorted(normalised(list(signals.values()))) == sorted(normalised(reference))
    assert all(len(g) == 1 for g in one_generation_per_watch(list(signals.values())).values())


async def test_a_fenced_batch_is_tried_again_on_the_bus_and_never_dead_lettered(
    db: async_sessionmaker[AsyncSession],
) -> None:
    parts = batches(crisis())
    metrics = Metrics()
    bus = MemoryBus(capacity=10_000, metrics=metrics)
    svc_a = DetectorService(bus, DetectorConfig(), metrics, store=StateStore(db))
    bus.subscribe(TOPIC_SCORED, GROUP, svc_a.handle, max_batch=BATCH, retry=FAST)
    received: list[Signal] = []

    async def collect(events: list[Signal]) -> None:
        received.extend(events)

    bus.subscribe(TOPIC_SIGNALS, "test", collect, max_batch=100)

    async def deliver(stream: list[ScoredMention]) -> None:
        for item in stream:
            await bus.publish(
                TOPIC_SCORED, item, key=item.mention.watch.id if item.mention.watch else "_"
            )
        await bus.join()

    await bus.start()
    try:
        await deliver([s for batch in parts[:5] for s in batch])
        svc_b = service(StateStore(db))
        await svc_b.handle(list(parts[5]))  # B claims what parts[5] names
        await deliver(list(parts[5]))  # A: fenced, then claims again on the bus's next try
    finally:
        await bus.stop()
    assert sample(metrics, FENCED) >= 1
    assert bus.dead_letters == []
    assert (
        sample(metrics, "crisiswatch_bus_handler_errors_total", {"topic": "scored", "group": GROUP})
        == 1
    )
    taken = {Detector.key_of(event) for event in parts[5]}
    assert {
        key: epoch for key, epoch in (await epochs(db)).items() if key in taken
    } == dict.fromkeys(taken, 3)


async def test_a_single_process_claims_each_watch_once(
    db: async_sessionmaker[AsyncSession],
) -> None:
    reference = await uninterrupted()
    metrics = Metrics()
    svc = service(StateStore(db), metrics)
    for batch in batches(crisis()):
        await svc.handle(list(batch))
    assert normalised(published(svc)) == normalised(reference)
    assert await epochs(db) == {("acme", False): 1, ("acme", True): 1, ("beta", False): 1}
    assert sample(metrics, FENCED) == 0


@pytest.mark.postgres
async def test_a_claim_waits_for_a_save_in_flight(
    pg_sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The epoch check and the write are one step: a claim that comes while a save holds
    the watch's row waits for it, and reads what it wrote (never an older state that the
    save would then overwrite)."""
    a, b = StateStore(pg_sessions), StateStore(pg_sessions)
    await a.load([ACME])
    await a.save({ACME: delta(b"a1", {})}, 3)
    locked, go_on = asyncio.Event(), asyncio.Event()
    lock = statestore._lock

    async def pausing(*args: Any) -> dict[WatchKey, int]:
        found = await lock(*args)
        locked.set()
        await go_on.wait()
        return found

    monkeypatch.setattr(statestore, "_lock", pausing)
    saving = asyncio.create_task(a.save({ACME: delta(b"a2", {})}, 3))
    await locked.wait()
    claiming = asyncio.create_task(b.load([ACME]))
    async with pg_sessions() as session:  # until B waits for the row, or got it
        while not claiming.done():
            waiting = await session.scalar(WAITING)
            await session.rollback()
            if waiting:
                break
            await asyncio.sleep(0.01)
    go_on.set()
    assert await saving == []
    loaded = await claiming
    assert loaded[ACME].state == b"a2" and b.epoch(ACME) == 2
    assert await a.save({ACME: delta(b"a3", {})}, 3) == [Fenced(ACME, held=1, stored=2)]
