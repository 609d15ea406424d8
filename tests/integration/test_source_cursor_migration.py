"""Migration 0004 builds exactly the table listener/cursors.py declares; the store works."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import ManualClock
from core.db import Base, make_engine, upgrade_database
from listener.cursors import DbCursorStore, SourceCursor

TABLES = {SourceCursor.__tablename__}


def _diff(connection: Connection) -> list[Any]:
    def include_object(
        obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        # Other stages' tables (in the database and on Base.metadata) are checked by their
        # own tests; compare ours completely.
        return type_ != "table" or name in TABLES

    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_object": include_object}
    )
    return list(compare_metadata(context, Base.metadata))


async def _check(url: str) -> None:
    engine = make_engine(url)
    try:
        await upgrade_database(engine)
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
    finally:
        await engine.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"


async def test_sqlite_schema_matches_the_cursor_model(sqlite_url: str) -> None:
    await _check(sqlite_url)


@pytest.mark.postgres
async def test_postgres_schema_matches_the_cursor_model(pg_url: str) -> None:
    await _check(pg_url)


async def test_cursors_are_saved_replaced_and_loaded(
    sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    store = DbCursorStore(sessions, clock)
    assert await store.load("bluesky") is None
    await store.save("bluesky", '{"time_us": 1}')
    await store.save("bluesky", '{"time_us": 2}')
    await store.save("rss", "{}")
    assert await store.load("bluesky") == '{"time_us": 2}'
    assert await store.load("rss") == "{}"
