"""A database outage never dead-letters a detector batch: the state's save (and its lazy
load) waits for the database with a capped backoff, logged and counted, and the state is
saved once the database is back, with no Signal twice. A mention the detector cannot
observe still goes to the dead-letter topic after the bus's tries (it does not block)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.bus import RetryPolicy
from core.bus.memory import MemoryBus
from core.db import database_unavailable
from core.events import TOPIC_SCORED, TOPIC_SIGNALS, ScoredMention, Signal
from core.metrics import Metrics
from sentiment.detector.config import DetectorConfig
from sentiment.detector.detector import Detector
from sentiment.detector.service import DB_RETRY, GROUP, DetectorService
from sentiment.detector.statestore import StateStore
from tests.unit.test_detector_state import (
    BATCH,
    RecordingBus,
    crisis,
    normalised,
    one_generation_per_watch,
    sample,
    uninterrupted,
)

FAST = RetryPolicy(initial_backoff=0.001, max_backoff=0.001)  # the bus's tries, not the DB's


class Outage:
    """Makes the engine's statements fail (as a database that is down does), from the
    ``after``-th statement on, ``failures`` times."""

    def __init__(self) -> None:
        self.after = 0
        self.failures = 0
        self.failed: list[str] = []

    def __call__(self, _conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if self.after:
            self.after -= 1
            return
        if self.failures:
            self.failures -= 1
            self.failed.append(statement.split()[0])
            raise sa_exc.OperationalError(
                statement, params, sqlite3.OperationalError("unable to open database file")
            )


@contextmanager
def outage_of(sessions: async_sessionmaker[AsyncSession]) -> Iterator[Outage]:
    engine = sessions.kw["bind"].sync_engine
    outage = Outage()
    event.listen(engine, "before_cursor_execute", outage)
    try:
        yield outage
    finally:
        event.remove(engine, "before_cursor_execute", outage)


class Waits:
    """Records the backoff instead of sleeping it (no test waits for real time)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


def detector_on(
    bus: MemoryBus, store: StateStore, metrics: Metrics, waits: Waits
) -> DetectorService:
    svc = DetectorService(bus, DetectorConfig(), metrics, store=store, sleep=waits)
    bus.subscribe(TOPIC_SCORED, GROUP, svc.handle, max_batch=BATCH, retry=FAST)
    return svc


async def run_on_a_bus(
    store: StateStore, stream: list[ScoredMention], metrics: Metrics, waits: Waits
) -> tuple[DetectorService, MemoryBus, list[Signal]]:
    bus = MemoryBus(capacity=10_000, metrics=metrics)
    svc = detector_on(bus, store, metrics, waits)
    received: list[Signal] = []

    async def collect(events: list[Signal]) -> None:
        received.extend(events)

    bus.subscribe(TOPIC_SIGNALS, "test", collect, max_batch=100)
    await bus.start()
    try:
        for item in stream:
            await bus.publish(
                TOPIC_SCORED, item, key=item.mention.watch.id if item.mention.watch else "_"
            )
        await bus.join()
    finally:
        await bus.stop()
    return svc, bus, received


async def test_a_database_outage_waits_and_dead_letters_nothing(
    sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    """The first process finds the database down mid-stream (its saves wait), a second
    one finds it down when it loads the watches (its first batch waits): far more
    failures than the bus's five tries, and nothing is dead-lettered."""
    await _outage(sessions, caplog)


@pytest.mark.postgres
async def test_a_postgres_outage_waits_and_dead_letters_nothing(
    pg_sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    await _outage(pg_sessions, caplog)


async def _outage(
    sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sentiment.detector.service")
    reference = await uninterrupted()
    stream = crisis()
    half = len(stream) // 2
    store = StateStore(sessions)
    metrics, waits = Metrics(), Waits()
    with outage_of(sessions) as outage:
        outage.after, outage.failures = 40, 12  # a few batches in, 12 statements fail
        _, bus1, signals1 = await run_on_a_bus(store, stream[:half], metrics, waits)
        assert outage.failures == 0 and len(outage.failed) == 12
        saves = sample(
            metrics, "crisiswatch_detector_state_db_retries_total", {"operation": "save"}
        )
        assert saves == 12
        # the state of every batch was saved once the database was back: a second
        # process loads it -- through another outage
        outage.after, outage.failures = 0, 9
        _, bus2, signals2 = await run_on_a_bus(store, stream[half:], metrics, waits)
    assert outage.failed[12:] == ["INSERT"] * 9  # the lazy load (its claim first) waited too
    assert (
        sample(metrics, "crisiswatch_detector_state_db_retries_total", {"operation": "load"}) == 9
    )
    assert bus1.dead_letters == [] and bus2.dead_letters == []
    assert (
        sample(metrics, "crisiswatch_bus_dead_letters_total", {"topic": "scored", "group": GROUP})
        == 0
    )
    assert sample(metrics, "crisiswatch_detector_state_db_waiting") == 0
    # capped exponential backoff: 0.2, 0.4, ... 25.6, then 30 s
    assert waits.delays[:12] == [DB_RETRY.backoff(n) for n in range(1, 13)]
    assert max(waits.delays) == DB_RETRY.max_backoff == 30.0
    assert sample(metrics, "crisiswatch_detector_restores_total", {"outcome": "loaded"}) >= 2
    # the split run is the uninterrupted one: no Signal lost, none twice, one generation
    signals = signals1 + signals2
    assert len({s.id for s in signals}) == len(signals)
    assert normalised(signals) == normalised(reference)
    assert all(len(g) == 1 for g in one_generation_per_watch(signals).values())
    messages = [r.getMessage() for r in caplog.records]
    assert sum("database is unavailable for the state save" in m for m in messages) == 12
    assert any("database is back; state load done after 10 tries" in m for m in messages)


async def test_a_mention_that_fails_to_be_observed_is_still_dead_lettered(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mention whose observe raises after it was counted (so that a redelivery would
    take it for a duplicate): the bus's tries fail again, it goes to the dead-letter
    topic, its batch's other mentions are handled and saved; the database's retries
    have nothing to do with it."""
    stream = crisis()[:120]
    bad = stream[50].mention.id
    real = Detector.observe
    raised: list[str] = []

    def observe(self: Detector, scored: ScoredMention) -> list[Signal]:
        signals = real(self, scored)
        if scored.mention.id == bad and not raised:  # later: a redelivery, observed as []
            raised.append(bad)
            raise ArithmeticError("a bug this mention triggers")
        return signals

    monkeypatch.setattr(Detector, "observe", observe)
    store = StateStore(sessions)
    metrics = Metrics()
    svc, bus, _ = await run_on_a_bus(store, stream, metrics, Waits())
    assert [letter.offset for letter in bus.dead_letters] == [50]
    assert "ArithmeticError: a bug this mention triggers" in bus.dead_letters[0].reason
    assert (
        sample(metrics, "crisiswatch_detector_state_db_retries_total", {"operation": "save"}) == 0
    )
    key = ("acme", False)
    assert all(
        svc.detector.story_of("acme", m.mention.id) for m in stream if Detector.key_of(m) == key
    )
    stored = (await store.load([key]))[key]
    assert set(stored.stories) == set(svc.detector.snapshot(key).stories)


@pytest.mark.parametrize(
    "error,unavailable",
    [
        (ConnectionRefusedError(111, "Connection refused"), True),
        (TimeoutError(), True),
        (sa_exc.OperationalError("SELECT 1", {}, Exception("server closed the connection")), True),
        (sa_exc.InterfaceError("SELECT 1", {}, Exception("connection is closed")), True),
        (sa_exc.TimeoutError("QueuePool limit reached"), True),
        (sa_exc.DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True), True),
        (sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key")), False),
        (sa_exc.ProgrammingError("SELECT", {}, Exception("no such column")), False),
        (ValueError("not a database error"), False),
    ],
)
def test_which_errors_mean_the_database_is_unavailable(error: Exception, unavailable: bool) -> None:
    assert database_unavailable(error) is unavailable


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    "sqlstate,unavailable",
    [
        ("57P01", True),
        ("57P03", True),
        ("08006", True),
        ("53300", True),
        ("23505", False),
        ("22021", False),
    ],
)
def test_postgres_error_codes(sqlstate: str, unavailable: bool) -> None:
    error = sa_exc.DBAPIError("SELECT 1", {}, _PgError(sqlstate))
    assert database_unavailable(error) is unavailable


async def test_stopping_and_rebalancing_do_not_wait_for_the_database(
    sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    """Saving on shutdown or on a rebalance is tried once (neither may hang on a database
    that is down): what it could not save is delivered again to the next owner."""
    waits = Waits()
    store = StateStore(sessions)
    svc = DetectorService(RecordingBus(), DetectorConfig(), Metrics(), store=store, sleep=waits)
    stream = crisis()
    await svc.handle(stream[:BATCH])
    svc._dirty.add(("acme", False))  # (as a batch whose save failed leaves it)
    with outage_of(sessions) as outage:
        outage.failures = 10
        await svc.stop()
        await svc.rebalanced()
        assert outage.failures == 8  # one try each
    assert waits.delays == []
    assert sum("cannot save the state" in r.getMessage() for r in caplog.records) == 2
