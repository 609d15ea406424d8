"""The detector's state survives a restart (SQLite store): a run split between two
services gives the Signals of an uninterrupted run, a crash between publishing and
saving re-emits the same ids, an unreadable snapshot starts its watch afresh (logged,
counted, no crash), a rebalance drops every watch and reloads it; the migration builds
the table the store declares."""

from __future__ import annotations

import logging
import pickle
import zlib
from collections import defaultdict
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import Update, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.bus.memory import MemoryBus
from core.events import TOPIC_SIGNALS, ScoredMention, Signal, WatchMatch
from core.metrics import Metrics
from sentiment.detector.config import DetectorConfig
from sentiment.detector.detector import Detector
from sentiment.detector.service import DetectorService
from sentiment.detector.snapshot import STATE_FORMAT, SnapshotError, WatchChanges
from sentiment.detector.statestore import (
    DetectorStateRow,
    DetectorStoryRow,
    Fenced,
    StateStore,
    WatchKey,
)
from tests.support import schema_diff
from tests.unit.test_detector import T0, WATCH, by_time, chatter, complaint

BETA = WatchMatch(id="beta", brand="Beta", terms=("beta",))
BATCH = 40
MINUTES_300 = timedelta(minutes=300)
SAVED = 14  # batches handled before a snapshot is damaged (both watches have signalled)


def on_watch(stream: list[ScoredMention], watch: WatchMatch) -> list[ScoredMention]:
    return [
        s.model_copy(update={"mention": s.mention.model_copy(update={"watch": watch})})
        for s in stream
    ]


def crisis() -> list[ScoredMention]:
    """Two watches and a drill: complaints that escalate to tier 3, then cool down in the
    chatter that follows (sweeps and cool-downs cross the split points)."""
    return by_time(
        chatter(0, 420),
        complaint(120),
        on_watch(by_time(chatter(0, 420, seed=9), complaint(150, root="r2")), BETA),
        complaint(200, root="d1", drill=True),
    )


def batches(stream: list[ScoredMention]) -> list[list[ScoredMention]]:
    return [stream[i : i + BATCH] for i in range(0, len(stream), BATCH)]


class RecordingBus(MemoryBus):
    """Keeps the Signals published (nobody reads them here)."""

    def __init__(self) -> None:
        super().__init__()
        self.signals: list[Signal] = []

    async def publish(self, topic: str, event: BaseModel, *, key: str) -> None:
        assert topic == TOPIC_SIGNALS and isinstance(event, Signal)
        self.signals.append(event)


class Killed(BaseException):
    """What a kill -9 looks like to the code that was running."""


class CrashingStore(StateStore):
    """Dies (as a kill -9 would, from the state's point of view) on its next save."""

    crash = False

    async def save(self, states: Any, fmt: int) -> list[Fenced]:
        if self.crash:
            raise Killed
        return await super().save(states, fmt)


# forecast reports at fixed story ages: more Signals numbered among the level changes,
# planned from saved state (a split or a crash must number them the same)
REPORTING = DetectorConfig.model_validate({"forecast_report_minutes": [5, 15, 30, 60]})
CONFIGS = pytest.mark.parametrize("config", [DetectorConfig(), REPORTING], ids=["", "reports"])


def service(
    store: StateStore | None, metrics: Metrics | None = None, config: DetectorConfig | None = None
) -> DetectorService:
    return DetectorService(
        RecordingBus(), config or DetectorConfig(), metrics or Metrics(), store=store
    )


def published(svc: DetectorService) -> list[Signal]:
    assert isinstance(svc.bus, RecordingBus)
    return svc.bus.signals


def generation(signal: Signal) -> str:
    return signal.id.rpartition("#")[2].rpartition(".")[0]


def normalised(signals: list[Signal]) -> list[tuple[str, str, int, int, int]]:
    """Each Signal without its generation: (story, n, tier, previous tier, spread), plus
    everything else it says (checked equal separately)."""
    return [
        (s.story_id, s.id.rpartition(".")[2], s.tier, s.previous_tier, s.spread) for s in signals
    ]


def one_generation_per_watch(signals: list[Signal]) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = defaultdict(set)
    for s in signals:
        seen[f"{s.watch.id}:{s.drill}"].add(generation(s))
    return seen


def sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.registry.get_sample_value(name, labels or {}) or 0.0


async def uninterrupted(config: DetectorConfig | None = None) -> list[Signal]:
    svc = service(None, config=config)
    for batch in batches(crisis()):
        await svc.handle(list(batch))
    signals = published(svc)
    if config is not None and config.forecast_report_minutes:
        assert sum(s.forecast_minutes is not None for s in signals) >= 6
    return signals


@CONFIGS
async def test_a_run_split_between_two_services_gives_the_uninterrupted_signals(
    sessions: async_sessionmaker[AsyncSession], config: DetectorConfig
) -> None:
    reference = await uninterrupted(config)
    assert {s.tier for s in reference} >= {1, 2, 3} and len(reference) >= 12
    parts = batches(crisis())
    for split in (4, 22, 33):
        store = StateStore(sessions)
        first, second = service(store, config=config), service(store, config=config)
        for batch in parts[:split]:
            await first.handle(list(batch))
        for batch in parts[split:]:
            await second.handle(list(batch))
        signals = published(first) + published(second)
        assert published(first) and published(second)
        assert normalised(signals) == normalised(reference)
        strip = {"id"}
        assert [s.model_dump(exclude=strip) for s in signals] == [
            s.model_dump(exclude=strip) for s in reference
        ]
        # the second service went on under the first one's generation, watch by watch
        assert all(len(g) == 1 for g in one_generation_per_watch(signals).values())
        async with sessions() as session:
            await session.execute(DetectorStateRow.__table__.delete())
            await session.commit()


@CONFIGS
async def test_a_crash_between_publishing_and_saving_re_emits_the_same_ids(
    sessions: async_sessionmaker[AsyncSession], config: DetectorConfig
) -> None:
    reference = await uninterrupted(config)
    parts = batches(crisis())
    svc = service(None, config=config)  # the first batch after the fifth that publishes
    for crashed_at, batch in enumerate(parts):
        before = len(published(svc))
        await svc.handle(list(batch))
        if crashed_at >= 5 and len(published(svc)) > before:
            break
    store = CrashingStore(sessions)
    first = service(store, config=config)
    for batch in parts[:crashed_at]:
        await first.handle(list(batch))
    before = len(published(first))
    store.crash = True
    with pytest.raises(Killed):
        await first.handle(list(parts[crashed_at]))
    store.crash = False
    lost_batch = published(first)[before:]
    assert lost_batch  # killed after publishing Signals, before saving the state
    # the bus never committed the batch: a new process gets it again, from the snapshot
    second = service(store, config=config)
    await second.handle(list(parts[crashed_at]))
    assert [s.id for s in published(second)] == [s.id for s in lost_batch]
    for batch in parts[crashed_at + 1 :]:
        await second.handle(list(batch))
    # the alerter applies each id once: what it sees is the uninterrupted run
    applied = {s.id: s for s in published(first) + published(second)}
    assert normalised(list(applied.values())) == normalised(reference)


async def _saved_then_damaged(
    sessions: async_sessionmaker[AsyncSession], damage: Update
) -> tuple[DetectorService, DetectorService, Metrics, list[list[ScoredMention]]]:
    """The first ``SAVED`` batches handled and saved by one service, then ``damage`` run
    on the store; a second service (with its metrics) on the same store, and the batches."""
    parts = batches(crisis())
    store = StateStore(sessions)
    first = service(store)
    for batch in parts[:SAVED]:
        await first.handle(list(batch))
    async with sessions() as session:
        await session.execute(damage)
        await session.commit()
    metrics = Metrics()
    return first, service(store, metrics), metrics, parts


class Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("pwned",))


@pytest.mark.parametrize(
    "damage",
    [
        {"state": b"not a snapshot"},
        {"state": zlib.compress(b"\x80\x05garbage")},
        {"state": zlib.compress(pickle.dumps(Evil()))},
        {"state": zlib.compress(pickle.dumps({"a": 1}))},
        {"format": STATE_FORMAT + 1},
    ],
    ids=["not-zlib", "not-pickle", "forbidden-class", "not-a-watch", "other-format"],
)
async def test_an_unreadable_snapshot_starts_its_watch_afresh(
    sessions: async_sessionmaker[AsyncSession],
    damage: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    acme = update(DetectorStateRow).where(
        DetectorStateRow.watch_id == "acme", DetectorStateRow.drill.is_(False)
    )
    first, second, metrics, parts = await _saved_then_damaged(sessions, acme.values(**damage))
    caplog.set_level(logging.ERROR, logger="sentiment.detector.service")
    for batch in parts[SAVED:]:
        await second.handle(list(batch))  # no crash
    assert sample(metrics, "crisiswatch_detector_restores_total", {"outcome": "failed"}) == 1
    assert sample(metrics, "crisiswatch_detector_restores_total", {"outcome": "loaded"}) == 1
    assert any("'acme'" in r.getMessage() and "afresh" in r.getMessage() for r in caplog.records)
    assert "pwned" not in capsys.readouterr().out
    # acme started afresh: its stories are gone, and its new Signals carry a new
    # generation (the alerter must not take them for redeliveries); beta went on
    assert second.detector.story_of("acme", "x:root") is None
    assert second.detector.story_of("beta", "x:r2") == "beta:x:r2"
    await second.handle(complaint(430, root="late"))
    before = one_generation_per_watch(published(first))
    after = one_generation_per_watch(published(second))
    assert after["acme:False"] and not after["acme:False"] & before["acme:False"]
    assert after["beta:False"] == before["beta:False"] != set()


async def test_a_rebalance_drops_every_watch_and_reloads_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference = await uninterrupted()
    metrics = Metrics()
    svc = service(StateStore(sessions), metrics)
    parts = batches(crisis())
    for i, batch in enumerate(parts):
        if i in (9, 17):
            await svc.rebalanced()
            assert svc.detector.watches_held == 0
        await svc.handle(list(batch))
    assert normalised(published(svc)) == normalised(reference)
    assert sample(metrics, "crisiswatch_detector_restores_total", {"outcome": "loaded"}) >= 4
    # one save per batch, and one more for each batch that started a watch (saved empty
    # before it signals: its generation stored first)
    seen: set[WatchKey] = set()
    starting = 0
    for batch in parts:
        keys = {Detector.key_of(s) for s in batch}
        starting += bool(keys - seen)
        seen |= keys
    assert starting >= 2
    saves = sample(metrics, "crisiswatch_detector_snapshot_save_seconds_count")
    assert saves == len(parts) + starting
    assert sample(metrics, "crisiswatch_detector_snapshot_bytes_sum") > 0


async def test_the_memory_store_saves_nothing_and_keeps_the_replay_ids() -> None:
    svc = DetectorService(RecordingBus(), DetectorConfig(), Metrics(), generation="")
    for batch in batches(crisis()):
        await svc.handle(list(batch))
    assert svc.store is None
    assert published(svc)[0].id == "acme:x:root#1"


def delta(
    watch: bytes, stories: dict[str, bytes], removed: tuple[str, ...] = (), *, whole: bool = False
) -> WatchChanges:
    return WatchChanges(watch, stories, frozenset(removed), whole)


async def test_the_store_loads_what_it_saved(sessions: async_sessionmaker[AsyncSession]) -> None:
    store = StateStore(sessions)
    keys: list[WatchKey] = [("acme", False), ("acme", True), ("beta", False)]
    assert await store.load(keys) == {}
    await store.save(
        {
            ("acme", False): delta(b"1", {"a": b"a1", "b": b"b1", "c": b"c1"}),
            ("acme", True): delta(b"2", {"a": b"drill"}),
        },
        1,
    )
    await store.save(
        {
            ("acme", False): delta(b"3", {"b": b"b2", "d": b"d2"}, ("c", "never-saved")),
            ("beta", False): delta(b"4", {}),
        },
        2,
    )
    loaded = await store.load(keys)
    assert {k: (v.format, v.state, v.stories) for k, v in loaded.items()} == {
        ("acme", False): (2, b"3", {"a": b"a1", "b": b"b2", "d": b"d2"}),
        ("acme", True): (1, b"2", {"a": b"drill"}),
        ("beta", False): (2, b"4", {}),
    }
    assert set(await store.load([("acme", True)])) == {("acme", True)}
    # a whole watch replaces every story row of the watch (and of it only)
    await store.save({("acme", False): delta(b"5", {"e": b"e5"}, whole=True)}, 2)
    loaded = await store.load(keys)
    assert loaded[("acme", False)].stories == {"e": b"e5"}
    assert loaded[("acme", True)].stories == {"a": b"drill"}


async def _check_schema(url: str) -> None:
    tables = {DetectorStateRow.__tablename__, DetectorStoryRow.__tablename__}
    diff = await schema_diff(url, tables)
    assert diff == [], f"models and migrations disagree: {diff}"


async def test_sqlite_schema_matches_the_state_model(sqlite_url: str) -> None:
    await _check_schema(sqlite_url)


@pytest.mark.postgres
async def test_postgres_schema_matches_the_state_model(pg_url: str) -> None:
    await _check_schema(pg_url)


def test_a_restored_watch_remembers_its_retired_stories() -> None:
    """A story forgotten before the snapshot and revived after the restore goes on
    counting its Signals (the retired-story memory is part of the watch's state)."""
    config = DetectorConfig(max_stories=20)  # evicted by the chatter, still remembered
    stream = by_time(complaint(120), chatter(150, 250)) + complaint(300)  # evicted, revived
    uninterrupted = Detector(config)
    reference = [s.id for m in stream for s in uninterrupted.observe(m)]
    assert "acme:x:root#5" in reference  # the revival counts on from the first life
    split = next(i for i, m in enumerate(stream) if m.mention.created_at >= T0 + MINUTES_300)
    first, second = Detector(config), Detector(config)
    ids = [s.id for m in stream[:split] for s in first.observe(m)]
    second.restore(("acme", False), first.snapshot(("acme", False)))
    ids += [s.id for m in stream[split:] for s in second.observe(m)]
    assert ids == reference


@pytest.mark.parametrize("windows", [[1, 5, 15, 60, 240], [5, 15, 60]])
def test_a_snapshot_counted_in_other_burst_windows_is_refused(windows: list[int]) -> None:
    """Restored into a config with other ``burst_windows_minutes``, the watch's stories
    and surge test counted in the old windows and new stories in the new ones: every
    mention that started a story raised, was retried, dead-lettered, and halted the
    consumer. Refused, the service starts the watch afresh instead."""
    first = Detector(DetectorConfig())
    for m in complaint(120):
        first.observe(m)
    snapshot = first.snapshot(("acme", False))
    second = Detector(DetectorConfig(burst_windows_minutes=windows))
    with pytest.raises(SnapshotError, match="burst windows"):
        second.restore(("acme", False), snapshot)
    second.observe(chatter(200, 201)[0])  # afresh: its new stories count as configured


class Refused(Exception):
    """A save the database refuses for another reason than an outage (an outage is
    waited out: ``test_detector_state_outage.py``)."""


class FlakyStore(StateStore):
    """Refuses its next ``failures`` saves."""

    failures = 0

    async def save(self, states: Any, fmt: int) -> list[Fenced]:
        if self.failures:
            self.failures -= 1
            raise Refused("the database refused the rows")
        return await super().save(states, fmt)


async def test_a_failed_save_is_retried_and_loses_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A batch whose save failed (the bus gave up on it and moved on) is saved with the
    next batch that succeeds, even one of another watch: a new process loses nothing of
    it and repeats no Signal."""
    reference = await uninterrupted()
    stream = crisis()
    acme = batches([m for m in stream if m.mention.watch == WATCH and not m.mention.drill])
    beta = batches([m for m in stream if m.mention.watch == BETA])
    probe = service(None)  # the acme batches that publish Signals
    signalling = []
    for i, batch in enumerate(acme):
        before = len(published(probe))
        await probe.handle(list(batch))
        if len(published(probe)) > before:
            signalling.append(i)
    failing = signalling[-2]  # one with Signals after it
    store = FlakyStore(sessions)
    first = service(store)
    for batch in acme[:failing]:
        await first.handle(list(batch))
    store.failures = 1
    with pytest.raises(Refused):
        await first.handle(list(acme[failing]))  # published, not saved, not redelivered
    for batch in beta:  # the next saves succeed (of beta only)
        await first.handle(list(batch))
    second = service(store)  # a new process from what the store holds
    for batch in acme[failing + 1 :]:
        await second.handle(list(batch))
    signals = published(first) + published(second)
    assert len({s.id for s in signals}) == len(signals)
    for watch in ("acme", "beta"):
        assert [n for n in normalised(signals) if n[0].startswith(f"{watch}:x:")] == [
            n for n in normalised(reference) if n[0].startswith(f"{watch}:x:")
        ]


async def test_an_unreadable_story_row_starts_its_watch_afresh_and_is_replaced(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """One damaged story row makes its whole watch unreadable (a watch is restored whole
    or not at all); the watch starts afresh, and its first save replaces every story row
    it had (none of the old rows is loaded with the new watch later)."""
    damage = (
        update(DetectorStoryRow)
        .where(DetectorStoryRow.story_id == "acme:x:root")
        .values(state=zlib.compress(pickle.dumps(Evil())))
    )
    _, second, metrics, parts = await _saved_then_damaged(sessions, damage)
    store = second.store
    assert store is not None
    for batch in parts[SAVED:]:
        await second.handle(list(batch))
    assert sample(metrics, "crisiswatch_detector_restores_total", {"outcome": "failed"}) == 1
    assert second.detector.story_of("acme", "x:root") is None
    stored = (await store.load([("acme", False)]))[("acme", False)]
    assert set(stored.stories) == set(second.detector.snapshot(("acme", False)).stories)
    assert "acme:x:root" not in stored.stories
