"""Migration 0004 builds exactly the table listener/cursors.py declares; the store works."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.clock import ManualClock
from listener.cursors import DbCursorStore, SourceCursor
from tests.support import schema_diff

TABLES = {SourceCursor.__tablename__}


async def _check(url: str) -> None:
    diff = await schema_diff(url, TABLES)
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
