"""``core.db.savepoint``: one item of a transaction, undone alone when it raises; and
``on_commit`` actions follow the transaction, not its savepoints (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db import make_engine, make_sessionmaker, on_commit, savepoint, upgrade_database

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def any_sessions(db_url: str) -> AsyncIterator[Sessions]:
    engine = make_engine(db_url)
    await upgrade_database(engine)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE items (id INTEGER PRIMARY KEY, value INTEGER)"))
        await conn.execute(text("INSERT INTO items VALUES (1, 0), (2, 0)"))
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


async def values(sessions: Sessions) -> list[int]:
    async with sessions() as session:
        return list(await session.scalars(text("SELECT value FROM items ORDER BY id")))


async def test_a_block_that_raises_is_undone_alone_and_its_actions_dropped(
    any_sessions: Sessions,
) -> None:
    ran: list[str] = []
    async with any_sessions() as session:
        on_commit(session, lambda: ran.append("before"))
        async with savepoint(session):
            await session.execute(text("UPDATE items SET value = 1 WHERE id = 1"))
            on_commit(session, lambda: ran.append("first item"))
        with pytest.raises(RuntimeError):
            async with savepoint(session):
                await session.execute(text("UPDATE items SET value = 1 WHERE id = 2"))
                on_commit(session, lambda: ran.append("failed item"))
                raise RuntimeError("a bad row")
        on_commit(session, lambda: ran.append("after"))
        assert ran == [], "a released savepoint is not the commit"
        await session.commit()
    assert ran == ["before", "first item", "after"]
    assert await values(any_sessions) == [1, 0]


async def test_a_released_savepoint_is_undone_with_its_transaction(
    any_sessions: Sessions,
) -> None:
    """On SQLite a savepoint taken before any write was a transaction of its own: its
    release committed it, whatever became of the transaction."""
    ran: list[str] = []
    async with any_sessions() as session:
        await session.execute(text("SELECT value FROM items"))
        async with savepoint(session):
            await session.execute(text("UPDATE items SET value = 1 WHERE id = 1"))
            on_commit(session, lambda: ran.append("item"))
        await session.rollback()
    assert ran == []
    assert await values(any_sessions) == [0, 0]
