"""Downgrading the schema keeps the data: on SQLite a migration that rebuilds ``incidents``
(batch mode: copy, drop, rename) must not cascade the drop into the incidents' timelines,
evidence and deliveries."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.clock import ManualClock
from core.db import downgrade_database, upgrade_database
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
