"""The cascade index survives a restart: table ``listener_cascade`` (migration 0015),
``DbCascadeStore`` (SQLite and PostgreSQL) and the write-behind ``CascadeKeeper`` that
``ListenerService`` runs with a ``cascade_store``.

The restart bug these guard against: a text-less repost (a retweet, a Weibo repost) of a
mention accepted before the listener restarted was answered ``unmatched`` and dropped,
because the index that maps the root to its watches lived in memory only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.bus.memory import MemoryBus
from core.clock import ManualClock, SystemClock
from core.db import downgrade_database, make_engine, make_sessionmaker, upgrade_database
from core.events import Mention, WatchMatch
from core.metrics import Metrics
from listener import cascade_keeper
from listener.cascade_keeper import FINAL_TRIES
from listener.cascade_store import CHUNK, CascadeEntry, DbCascadeStore, Pruned, encode
from listener.config import ListenerConfig, WatchConfig
from listener.dedup import Deduplicator
from listener.service import ListenerService, PublishFailed
from tests.support import schema_diff

Sessions = async_sessionmaker[AsyncSession]

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
WATCHES = [
    WatchConfig(id="acme", brand="Acme", terms=["acme"]),
    WatchConfig(id="phones", terms=["phone"]),
]
ACME = WatchMatch(id="acme", brand="Acme", terms=("acme",))
PHONES = WatchMatch(id="phones", terms=("phone",))


class SteppingClock(ManualClock):
    """Sleeping moves it (the final save's waits)."""

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)


class FlakyStore(DbCascadeStore):
    """A DbCascadeStore whose database is down while ``down`` (each call counted)."""

    def __init__(self, sessions: Sessions, *, down: bool = False) -> None:
        super().__init__(sessions)
        self.down = down
        self.calls: dict[str, int] = {"load": 0, "save": 0, "prune": 0}

    def _check(self, operation: str) -> None:
        self.calls[operation] += 1
        if self.down:
            raise ConnectionRefusedError("database unavailable")

    async def load(
        self, since: datetime, limit: int
    ) -> AsyncGenerator[Sequence[tuple[str, str]], None]:
        self._check("load")
        async for page in super().load(since, limit):
            yield page

    async def save(
        self, entries: Sequence[tuple[str, str, datetime]], touched: Sequence[str], now: datetime
    ) -> None:
        self._check("save")
        await super().save(entries, touched, now)

    async def prune(self, older_than: datetime, keep: int, budget: int) -> Pruned:
        self._check("prune")
        return await super().prune(older_than, keep, budget)


class FailingBus(MemoryBus):
    def __init__(self) -> None:
        super().__init__(capacity=10_000)
        self.fail_next = 0

    async def publish_many(self, topic: str, events: Sequence[tuple[str, BaseModel]]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("broker unavailable")
        await super().publish_many(topic, events)


def mention(i: int | str, text: str = "", **extra: object) -> Mention:
    return Mention.model_validate(
        {"id": f"test:{i}", "source": "test", "text": text, "created_at": T0, **extra}
    )


def listener(
    store: DbCascadeStore | None,
    clock: ManualClock,
    metrics: Metrics | None = None,
    bus: MemoryBus | None = None,
    **config: object,
) -> ListenerService:
    cfg = ListenerConfig.model_validate({"watches": WATCHES, **config})
    return ListenerService(
        bus or MemoryBus(capacity=10_000),
        cfg,
        clock,
        metrics or Metrics(),
        Deduplicator(1000),
        sources=[],
        cascade_store=store,
    )


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(f"crisiswatch_{name}", labels)
    return value or 0.0


async def rows(sessions: Sessions) -> dict[str, tuple[str, datetime]]:
    async with sessions() as session:
        found = await session.execute(
            select(CascadeEntry.mention_id, CascadeEntry.watches, CascadeEntry.used_at)
        )
        return {i: (w, at) for i, w, at in found.all()}


async def fill(sessions: Sessions, n: int, start: datetime, *, step: float = 1.0) -> None:
    """``n`` rows ``test:0`` .. used ``step`` seconds apart from ``start`` (acme)."""
    store = DbCascadeStore(sessions)
    watches = encode([ACME])
    entries = [(f"test:{i}", watches, start + timedelta(seconds=i * step)) for i in range(n)]
    for part in range(0, n, 50_000):
        await store.save(entries[part : part + 50_000], [], start)


async def loaded(store: DbCascadeStore, since: datetime, limit: int) -> list[str]:
    return [i for page in [p async for p in store.load(since, limit)] for i, _ in page]


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Sessions]:
    """``db_url`` migrated."""
    engine = make_engine(db_url)
    await upgrade_database(engine)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


# --- the table ---------------------------------------------------------------------------


async def test_sqlite_schema_matches_the_cascade_model(sqlite_url: str) -> None:
    diff = await schema_diff(sqlite_url, {CascadeEntry.__tablename__})
    assert diff == [], f"models and migrations disagree: {diff}"


@pytest.mark.postgres
async def test_postgres_schema_matches_the_cascade_model(pg_url: str) -> None:
    diff = await schema_diff(pg_url, {CascadeEntry.__tablename__})
    assert diff == [], f"models and migrations disagree: {diff}"


async def test_migration_0015_up_and_down(db_url: str) -> None:
    engine = make_engine(db_url)

    def tables(connection: Connection) -> set[str]:
        return set(inspect(connection).get_table_names())

    try:
        await upgrade_database(engine, "0014")
        async with engine.connect() as conn:
            assert "listener_cascade" not in await conn.run_sync(tables)
        await upgrade_database(engine, "0015")
        async with engine.connect() as conn:
            assert "listener_cascade" in await conn.run_sync(tables)
            assert await conn.scalar(text("SELECT version_num FROM alembic_version")) == "0015"
        await downgrade_database(engine, "0014")
        async with engine.connect() as conn:
            assert "listener_cascade" not in await conn.run_sync(tables)
        await upgrade_database(engine)
    finally:
        await engine.dispose()


# --- DbCascadeStore (SQLite; PostgreSQL with the marker) ---------------------------------


async def test_the_store_upserts_and_loads_the_most_recently_used_first(db: Sessions) -> None:
    store = DbCascadeStore(db, page=2)
    await store.save(
        [
            ("test:a", encode([ACME]), T0),
            ("test:b", encode([ACME, PHONES]), T0 + timedelta(seconds=1)),
            ("test:c", encode([PHONES]), T0 + timedelta(seconds=2)),
        ],
        [],
        T0,
    )
    # a newer save of "a" replaces its watches and moves it up
    await store.save([("test:a", encode([PHONES]), T0 + timedelta(seconds=3))], [], T0)
    pages = [page async for page in store.load(T0, 10)]
    assert [len(p) for p in pages] == [2, 1]  # in pages of ``page`` rows
    assert [i for p in pages for i, _ in p] == ["test:a", "test:c", "test:b"]
    assert dict(pages[0])["test:a"] == '{"phones":["phone"]}'
    assert await loaded(store, T0, 2) == ["test:a", "test:c"]  # at most ``limit``
    assert await loaded(store, T0 + timedelta(seconds=2), 10) == ["test:a", "test:c"]  # since


async def test_a_touch_refreshes_a_stored_row_and_never_adds_one(db: Sessions) -> None:
    store = DbCascadeStore(db)
    await store.save([("test:root", encode([ACME]), T0)], [], T0)
    later = T0 + timedelta(minutes=5)
    await store.save([], ["test:root", "test:never-published"], later)
    stored = await rows(db)
    assert set(stored) == {"test:root"}
    assert stored["test:root"][1] == later
    await store.save([], ["test:root"], T0 + timedelta(minutes=1))  # never backwards
    assert (await rows(db))["test:root"][1] == later


async def test_prune_deletes_the_old_then_the_least_recent_beyond_the_capacity_in_batches(
    db: Sessions,
) -> None:
    store = DbCascadeStore(db)
    n = CHUNK * 2 + 500  # more than one batch of each kind
    await fill(db, n, T0)
    cut = T0 + timedelta(seconds=CHUNK + 100)  # rows 0 .. CHUNK + 99 are too old
    pruned = await store.prune(cut, keep=600, budget=10 * CHUNK)
    assert pruned == Pruned(age=CHUNK + 100, capacity=n - (CHUNK + 100) - 600)
    left = await rows(db)
    assert sorted(left, key=lambda i: int(i.split(":")[1])) == [
        f"test:{i}" for i in range(n - 600, n)
    ]
    assert await store.prune(cut, keep=600, budget=10 * CHUNK) == Pruned()


async def test_prune_stops_at_its_budget(db: Sessions) -> None:
    store = DbCascadeStore(db)
    await fill(db, 300, T0)
    assert await store.prune(T0 + timedelta(seconds=200), keep=10, budget=150) == Pruned(150, 0)
    assert await store.prune(T0 + timedelta(seconds=200), keep=10, budget=150) == Pruned(50, 90)
    assert len(await rows(db)) == 10


async def test_ids_of_every_allowed_length_and_charset_are_stored(db: Sessions) -> None:
    """Mention ids go up to 512 characters (any Unicode, e.g. a Weibo handle)."""
    store = DbCascadeStore(db)
    long_id = "weibo:" + "字" * 506
    watch = WatchMatch(id="acme", brand="Acme", terms=("艾克美", 'a"b'))
    await store.save([(long_id, encode([watch]), T0)], [], T0)
    assert [(i, w) for page in [p async for p in store.load(T0, 5)] for i, w in page] == [
        (long_id, '{"acme":["艾克美","a\\"b"]}')
    ]


# --- the listener across a restart --------------------------------------------------------


async def test_a_repost_after_a_restart_finds_the_root_accepted_before_it(tmp_path: Path) -> None:
    """The reproduction: root + text-less repost published, restart, another text-less
    repost of the root: it was ``unmatched`` (dropped); now it follows the root."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'cw.db'}"
    clock = ManualClock(T0)
    engine = make_engine(url)
    await upgrade_database(engine)
    try:
        first = listener(DbCascadeStore(make_sessionmaker(engine)), clock)
        await first.start()
        report = await first.ingest(
            [mention("root", "Acme X2 caught fire"), mention("rt1", "", repost_of="test:root")]
        )
        assert [i.outcome for i in report.items] == ["published", "published"]
        await first.stop()  # no flush was due: the stop writes them
    finally:
        await engine.dispose()

    engine = make_engine(url)  # a new process: nothing shared but the file
    try:
        second = listener(DbCascadeStore(make_sessionmaker(engine)), ManualClock(T0))
        await second.start()
        report = await second.ingest(
            [
                mention("rt2", "", repost_of="test:root"),
                mention("rt3", "", repost_of="test:rt1"),  # a repost of a repost
                mention("re1", "so scary", reply_to="test:root"),
            ]
        )
        assert [(i.outcome, i.watches) for i in report.items] == [
            ("published", ("acme",)),
            ("published", ("acme",)),
            ("published", ("acme",)),
        ]
        await second.stop()
    finally:
        await engine.dispose()


@pytest.mark.parametrize("with_api", [True, False], ids=["listener+api", "listener alone"])
async def test_a_restarted_runtime_matches_a_repost_of_a_root_from_before(
    tmp_path: Path, with_api: bool
) -> None:
    """The same through ``Runtime``: the process wiring gives the listener the database's
    cascade store, with the API role or alone (``crisiswatch listener``, which serves the
    webhook too: without live sources it kept the index in memory only, so after a
    restart a text-less repost of a mention from before matched no watch)."""
    from api.runtime import Role, Runtime
    from api.settings import Settings

    settings = Settings.model_validate(
        {
            "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'cw.db'}"},
            "listener": {"watches": [w.model_dump() for w in WATCHES]},
        }
    )
    roles = frozenset({Role.LISTENER, Role.API} if with_api else {Role.LISTENER})
    first = Runtime(settings, roles=roles, clock=ManualClock(T0), migrate=True)
    await first.start()
    try:
        assert first.listener is not None
        await first.listener.ingest(
            [mention("root", "Acme X2 caught fire"), mention("rt1", "", repost_of="test:root")]
        )
    finally:
        await first.stop()
    second = Runtime(settings, roles=roles, clock=ManualClock(T0), migrate=True)
    await second.start()
    try:
        assert second.listener is not None
        report = await second.listener.ingest([mention("rt2", "", repost_of="test:root")])
        assert [(i.outcome, i.watches) for i in report.items] == [("published", ("acme",))]
    finally:
        await second.stop()


async def test_a_listener_stays_ready_and_ingests_while_its_database_is_down() -> None:
    """The database only keeps a listener's hints (cursors, the cascade index), so it must
    not take the listener out of service (``/readyz`` decides whether the webhook gets
    traffic); an API process, which answers from the database, is not ready without it."""
    from api.runtime import Role, Runtime
    from api.settings import Settings

    settings = Settings.model_validate(
        {
            # nothing listens on port 1: the database is down
            "database": {"url": "postgresql+asyncpg://postgres@127.0.0.1:1/test"},
            "listener": {"watches": [w.model_dump() for w in WATCHES]},
        }
    )
    listener = Runtime(settings, roles=frozenset({Role.LISTENER}), clock=SystemClock())
    await listener.start()
    try:
        assert listener.listener is not None and listener.engine is not None
        report = await listener.listener.ingest(
            [mention("root", "Acme X2 caught fire"), mention("rt1", "", repost_of="test:root")]
        )
        assert [(i.outcome, i.watches) for i in report.items] == [
            ("published", ("acme",)),
            ("published", ("acme",)),
        ]
        assert await listener.check_ready() == []
    finally:
        await listener.stop()
    api = Runtime(settings, roles=frozenset({Role.API}), clock=SystemClock())
    await api.start()
    try:
        assert any("database unreachable" in p for p in await api.check_ready())
    finally:
        await api.stop()


async def test_a_listener_without_a_database_keeps_the_index_in_memory_only() -> None:
    service = listener(None, ManualClock(T0))
    assert service.cascade_keeper is None
    await service.start()
    report = await service.ingest(
        [mention("root", "acme"), mention("rt", "", repost_of="test:root")]
    )
    assert [i.watches for i in report.items] == [("acme",), ("acme",)]
    assert service.cascade.take_touched() == []  # nothing noted for a database
    await service.stop()


async def test_entries_are_written_in_the_background_every_flush_interval(
    sessions: Sessions,
) -> None:
    clock, metrics = ManualClock(T0), Metrics()
    service = listener(DbCascadeStore(sessions), clock, metrics, cascade_flush_seconds=5)
    await service.start()
    try:
        await service.ingest([mention("root", "acme phone")])
        assert sample(metrics, "listener_cascade_unsaved") == 1
        assert await rows(sessions) == {}  # not on the ingest path
        clock.advance(5)
        for _ in range(500):
            if await rows(sessions):
                break
            await asyncio.sleep(0.01)
        assert await rows(sessions) == {"test:root": ('{"acme":["acme"],"phones":["phone"]}', T0)}
        assert sample(metrics, "listener_cascade_unsaved") == 0
    finally:
        await service.stop()


async def test_only_published_mentions_are_written(sessions: Sessions) -> None:
    """A batch the bus refused is not handed to the database (its retry is)."""
    bus = FailingBus()
    service = listener(DbCascadeStore(sessions), ManualClock(T0), bus=bus)
    keeper = service.cascade_keeper
    assert keeper is not None
    bus.fail_next = 1
    with pytest.raises(PublishFailed):
        await service.ingest([mention("root", "acme")])
    assert keeper.unsaved == 0
    await keeper.flush()
    assert await rows(sessions) == {}
    await service.ingest([mention("root", "acme")])  # the retry
    assert keeper.unsaved == 1
    await keeper.flush()
    assert set(await rows(sessions)) == {"test:root"}


async def test_a_continued_cascade_stays_among_the_most_recent_rows(sessions: Sessions) -> None:
    """A root that reposts keep using is refreshed in the table too, so the capacity
    prune keeps it over newer rows nobody uses (as the LRU in memory does)."""
    clock = ManualClock(T0)
    service = listener(DbCascadeStore(sessions), clock, cascade_capacity=3)
    keeper = service.cascade_keeper
    assert keeper is not None
    await service.ingest([mention("root", "acme")])
    clock.advance(60)
    await service.ingest([mention(i, "acme") for i in (1, 2)])
    await keeper.flush()
    clock.advance(60)
    await service.ingest([mention("rt", "", repost_of="test:root")])  # uses the root
    await keeper.flush()
    stored = await rows(sessions)
    assert stored["test:root"][1] == T0 + timedelta(seconds=120)
    await keeper.prune()
    assert set(await rows(sessions)) == {"test:root", "test:2", "test:rt"}


@pytest.mark.parametrize(("capacity", "loaded", "by_capacity"), [(20, 5, 0), (3, 3, 2)])
async def test_start_loads_the_most_recent_entries_within_the_horizon_then_prunes(
    sessions: Sessions, capacity: int, loaded: int, by_capacity: int
) -> None:
    """Loaded: the ``cascade_capacity`` most recently used rows, none unused for
    ``cascade_keep_days``. The first round after start prunes the table to the same."""
    now = T0 + timedelta(days=10)
    await fill(sessions, 10, T0)  # ten days old: past cascade_keep_days
    store = DbCascadeStore(sessions)
    recent = [(f"test:r{i}", encode([ACME]), now - timedelta(hours=i)) for i in range(5)]
    await store.save(recent, [], now)
    clock, metrics = ManualClock(now), Metrics()
    service = listener(store, clock, metrics, cascade_capacity=capacity, cascade_keep_days=7)
    await service.start()
    try:
        assert sample(metrics, "listener_cascade_restored_total") == loaded
        known = [i for i in range(5) if service.cascade.watches_of(f"test:r{i}")]
        assert known == list(range(loaded))  # the most recent
        assert not any(service.cascade.watches_of(f"test:{i}") for i in range(10))
        await service.cascade_keeper.round()  # type: ignore[union-attr]
        assert sample(metrics, "listener_cascade_pruned_total", reason="age") == 10
        assert sample(metrics, "listener_cascade_pruned_total", reason="capacity") == by_capacity
        assert set(await rows(sessions)) == {f"test:r{i}" for i in range(loaded)}
    finally:
        await service.stop()


async def test_loaded_entries_take_todays_watch_config(sessions: Sessions) -> None:
    """A watch removed since is not inherited; a renamed brand is today's."""
    gone = WatchMatch(id="gone", brand="Gone", terms=("x",))
    old_brand = WatchMatch(id="acme", brand="Old Acme", terms=("acme",))
    store = DbCascadeStore(sessions)
    await store.save(
        [("test:a", encode([old_brand, gone]), T0), ("test:g", encode([gone]), T0)], [], T0
    )
    service = listener(store, ManualClock(T0))
    await service.start()
    try:
        assert service.cascade.watches_of("test:a") == {"acme": ACME}
        assert service.cascade.watches_of("test:g") == {}
        report = await service.ingest([mention("del", "", repost_of="test:g")])
        assert report.items[0].outcome == "unmatched"
    finally:
        await service.stop()


async def test_loading_stops_at_its_time_limit_with_the_most_recent(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fill(sessions, 30, T0)
    ticks = iter(range(1000))
    monkeypatch.setattr(cascade_keeper, "monotonic", lambda: float(next(ticks)))  # 1 s a read
    clock, metrics = ManualClock(T0), Metrics()
    service = listener(DbCascadeStore(sessions), clock, metrics, cascade_load_seconds=2)
    service.cascade_keeper.store.page = 10  # type: ignore[union-attr]
    await service.cascade_keeper.load()  # type: ignore[union-attr]
    assert sample(metrics, "listener_cascade_restored_total") == 20
    assert service.cascade.watches_of("test:29") and service.cascade.watches_of("test:10")
    assert service.cascade.watches_of("test:9") == {}


class SilentStore(FlakyStore):
    """A database that takes the connection and never answers the load."""

    async def load(
        self, since: datetime, limit: int
    ) -> AsyncGenerator[Sequence[tuple[str, str]], None]:
        await asyncio.Event().wait()
        yield []


async def test_start_waits_at_most_the_load_time_for_a_database_that_does_not_answer(
    sessions: Sessions,
) -> None:
    metrics = Metrics()
    service = listener(SilentStore(sessions), ManualClock(T0), metrics, cascade_load_seconds=0.2)
    started = time.monotonic()
    await asyncio.wait_for(service.start(), 5)
    assert time.monotonic() - started < 2
    assert sample(metrics, "listener_cascade_db_errors_total", operation="load") == 1
    assert service.cascade_keeper is not None and not service.cascade_keeper.loaded
    report = await service.ingest([mention("root", "acme")])  # the listener runs
    assert report.published == 1
    await service.stop()


# --- the database down ----------------------------------------------------------------------


async def test_a_database_outage_delays_the_writes_and_never_stops_ingesting(
    sessions: Sessions,
) -> None:
    clock, metrics = ManualClock(T0), Metrics()
    store = FlakyStore(sessions)
    service = listener(store, clock, metrics, cascade_flush_seconds=5)
    keeper = service.cascade_keeper
    assert keeper is not None
    await service.start()
    try:
        store.down = True
        report = await service.ingest([mention("root", "acme")])
        assert report.published == 1  # ingesting goes on
        assert not await keeper.flush()
        assert sample(metrics, "listener_cascade_db_errors_total", operation="save") == 1
        assert keeper.unsaved == 1  # kept for the next try
        report = await service.ingest([mention("rt", "", repost_of="test:root")])
        assert report.items[0].watches == ("acme",)  # the index in memory still works
        assert not await keeper.flush()
        assert keeper.failures == 2 and keeper.unsaved == 2
        store.down = False
        assert await keeper.flush()
        assert set(await rows(sessions)) == {"test:root", "test:rt"}
        assert keeper.failures == 0 and sample(metrics, "listener_cascade_unsaved") == 0
    finally:
        await service.stop()


async def test_the_background_writer_backs_off_while_the_database_is_down(
    sessions: Sessions,
) -> None:
    clock, metrics = ManualClock(T0), Metrics()
    store = FlakyStore(sessions, down=True)
    service = listener(store, clock, metrics, cascade_flush_seconds=5)
    await service.start()  # the load fails: the listener starts all the same
    assert sample(metrics, "listener_cascade_db_errors_total", operation="load") == 1
    keeper = service.cascade_keeper
    assert keeper is not None and not keeper.loaded

    async def settle(condition: Callable[[], bool]) -> None:
        for _ in range(500):
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("condition not reached")

    try:
        await service.ingest([mention("root", "acme")])
        await asyncio.sleep(0)  # the writer is asleep
        clock.advance(5)  # first round: load and save fail
        await settle(lambda: store.calls["save"] == 1)
        assert store.calls["load"] == 2
        clock.advance(5)  # the next try waits 10 s
        await asyncio.sleep(0.05)
        assert store.calls["save"] == 1
        store.down = False
        clock.advance(5)
        await settle(lambda: keeper.unsaved == 0 and keeper.loaded)
        assert store.calls["save"] == 2
        assert set(await rows(sessions)) == {"test:root"}
    finally:
        store.down = False  # (the last save's waits are on this clock)
        await service.stop()


async def test_stop_tries_the_last_write_and_counts_what_is_lost(sessions: Sessions) -> None:
    clock, metrics = SteppingClock(T0), Metrics()
    store = FlakyStore(sessions, down=True)
    service = listener(store, clock, metrics)  # (not started: the clock steps when slept on)
    await service.ingest([mention(i, "acme") for i in range(3)])
    await service.stop()
    assert store.calls["save"] == FINAL_TRIES
    assert sample(metrics, "listener_cascade_dropped_total", reason="stop") == 3
    assert sample(metrics, "listener_cascade_unsaved") == 0


class HeldStore(FlakyStore):
    """Saves wait until ``release`` is set (a slow or silent database)."""

    def __init__(self, sessions: Sessions) -> None:
        super().__init__(sessions)
        self.release = asyncio.Event()
        self.saving = asyncio.Event()

    async def save(
        self, entries: Sequence[tuple[str, str, datetime]], touched: Sequence[str], now: datetime
    ) -> None:
        self.saving.set()
        await self.release.wait()
        await super().save(entries, touched, now)


async def test_stop_lets_a_write_in_progress_end_and_returns_at_once(sessions: Sessions) -> None:
    clock = ManualClock(T0)
    store = HeldStore(sessions)
    service = listener(store, clock, cascade_flush_seconds=5)
    await service.start()
    await service.ingest([mention("root", "acme")])
    await asyncio.sleep(0)
    clock.advance(5)
    await asyncio.wait_for(store.saving.wait(), 5)  # the background write is under way
    stopping = asyncio.create_task(service.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # it waits for that write...
    started = time.monotonic()
    store.release.set()
    await asyncio.wait_for(stopping, 5)
    assert time.monotonic() - started < 2  # ...and no longer than it takes
    assert store.calls["save"] == 1
    assert set(await rows(sessions)) == {"test:root"}


async def test_stop_gives_up_on_a_database_that_does_not_answer(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cascade_keeper, "STOP_WAIT_SECONDS", 0.2)
    metrics = Metrics()
    store = HeldStore(sessions)  # never released
    service = listener(store, ManualClock(T0), metrics)
    await service.start()
    await service.ingest([mention(i, "acme") for i in range(2)])
    started = time.monotonic()
    await asyncio.wait_for(service.stop(), 5)
    assert time.monotonic() - started < 1
    assert sample(metrics, "listener_cascade_dropped_total", reason="stop") == 2


async def test_a_long_outage_keeps_at_most_capacity_entries_waiting(sessions: Sessions) -> None:
    metrics = Metrics()
    store = FlakyStore(sessions, down=True)
    service = listener(store, ManualClock(T0), metrics, cascade_capacity=4)
    keeper = service.cascade_keeper
    assert keeper is not None
    await service.ingest([mention(i, "acme") for i in range(6)])
    assert keeper.unsaved == 4
    assert sample(metrics, "listener_cascade_dropped_total", reason="overflow") == 2
    store.down = False
    await keeper.flush()
    assert set(await rows(sessions)) == {f"test:{i}" for i in range(2, 6)}


# --- load time ------------------------------------------------------------------------------


async def test_loading_many_rows_takes_little_time(sessions: Sessions) -> None:
    """20,000 rows (a tenth of the measurement in the report) load well within the
    default ``cascade_load_seconds``."""
    await fill(sessions, 20_000, T0, step=0.001)
    service = listener(DbCascadeStore(sessions), ManualClock(T0 + timedelta(seconds=30)))
    started = time.monotonic()
    assert await service.cascade_keeper.load()  # type: ignore[union-attr]
    assert time.monotonic() - started < 10
    assert len(service.cascade) == 20_000
