"""Downgrading the schema keeps the data: on SQLite a migration that rebuilds ``incidents``
(batch mode: copy, drop, rename) must not cascade the drop into the incidents' timelines,
evidence and deliveries."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.clock import ManualClock
from core.db import downgrade_database, make_engine, upgrade_database
from tests.integration.test_alerts_policies import Sessions, make_world

CHILDREN = ("incident_events", "incident_evidence", "alert_deliveries")


async def _counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        return {
            table: int(await conn.scalar(text(f"SELECT count(*) FROM {table}")) or 0)
            for table in ("incidents", *CHILDREN)
        }


async def test_sqlite_downgrade_and_upgrade_keep_every_incident_row(
    sessions: Sessions, clock: ManualClock
) -> None:
    async for world in make_world(sessions, clock):
        await world.signal("sig-1", tier=3, story="s-1")
        await world.signal("sig-2", tier=1, story="s-2")
    engine = sessions.kw["bind"]
    before = await _counts(engine)
    assert before["incidents"] == 2 and before["incident_events"] >= 2
    assert before["alert_deliveries"] >= 2
    await downgrade_database(engine, "0010")  # through 0015's ... 0011's downgrades
    assert await _counts(engine) == before
    await upgrade_database(engine)
    assert await _counts(engine) == before
    async with engine.connect() as conn:
        assert (await conn.execute(text("PRAGMA foreign_key_check"))).all() == []
        assert await conn.scalar(text("PRAGMA foreign_keys")) == 1, "checks back on"


async def test_alembic_refuses_sqlite_with_foreign_keys_on(sessions: Sessions) -> None:
    from alembic import command
    from sqlalchemy.engine import Connection

    from core.db import _alembic_config

    engine = sessions.kw["bind"]
    async with engine.connect() as conn:
        head = await conn.scalar(text("SELECT version_num FROM alembic_version"))

    def downgrade(connection: Connection) -> None:  # the way round core.db: keys still on
        cfg = _alembic_config(engine.url.render_as_string(hide_password=False))
        cfg.attributes["connection"] = connection  # type: ignore[attr-defined]
        command.downgrade(cfg, "0010")  # type: ignore[arg-type]

    with pytest.raises(RuntimeError, match="foreign keys off"):
        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT version_num FROM alembic_version")) == head


ORPHAN = (
    "INSERT INTO incident_events (incident_id, at, kind, actor, detail) "
    "VALUES (999999, '2026-01-01 00:00:00', 'note', 'someone', '{}')"
)


async def _version_and_indexes(engine: AsyncEngine) -> tuple[str, set[str]]:
    async with engine.connect() as conn:
        version = await conn.scalar(text("SELECT version_num FROM alembic_version"))
        names = await conn.scalars(text("SELECT name FROM sqlite_master WHERE type = 'index'"))
        return str(version), set(names)


async def test_a_failed_sqlite_migration_leaves_nothing_half_done(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All pending revisions or none: the driver used to run DDL outside any transaction,
    so 0014's index stayed when 0015 failed, and the next upgrade failed on it."""
    from alembic import op

    engine = make_engine(sqlite_url)
    try:
        await upgrade_database(engine, "0013")
        before = await _version_and_indexes(engine)
        real = op.create_table

        def orphaning_create_table(*args: object, **kw: object) -> object:
            op.execute(ORPHAN)  # a migration that breaks a reference: refused, rolled back
            return real(*args, **kw)

        monkeypatch.setattr(op, "create_table", orphaning_create_table)
        with pytest.raises(RuntimeError, match="1 broken reference"):
            await upgrade_database(engine, "0015")  # 0014 (an index), then 0015 (a table)
        assert await _version_and_indexes(engine) == before
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM incident_events")) == 0
            assert await conn.scalar(text("PRAGMA foreign_keys")) == 1
        monkeypatch.undo()
        await upgrade_database(engine)
        assert (await _version_and_indexes(engine))[0] > before[0]
    finally:
        await engine.dispose()


async def test_a_broken_reference_from_before_does_not_block_migrations(sqlite_url: str) -> None:
    """Rows written around the checks (the sqlite3 shell has foreign keys off) are not the
    migration's doing: the embedded runtime migrates at every start."""
    engine = make_engine(sqlite_url)
    try:
        await upgrade_database(engine, "0013")
        with closing(sqlite3.connect(sqlite_url.split("///", 1)[1])) as raw:
            raw.execute(ORPHAN)
            raw.commit()
        await upgrade_database(engine)
        await upgrade_database(engine)  # nothing to do, still fine
        await downgrade_database(engine, "0012")
    finally:
        await engine.dispose()
