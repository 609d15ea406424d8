"""``SELECT ... FOR UPDATE`` keeps a read-check-write whole on both databases: two at once
on one row run one after the other, neither update is lost. PostgreSQL locks the row;
SQLite, which drops the clause, takes its write lock first (``core.db``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts.models import StoryAlias
from core.db import unit_of_work

Sessions = async_sessionmaker[AsyncSession]


async def append(sessions: Sessions, letter: str, started: asyncio.Event | None) -> str:
    """Read the row under the lock, think a while, write what was read plus ``letter``."""
    async with unit_of_work(sessions) as session:
        row = await session.scalar(
            select(StoryAlias).where(StoryAlias.story_id == "x").with_for_update()
        )
        assert row is not None
        seen = row.into_story_id
        if started is not None:
            started.set()
        await asyncio.sleep(0.3)
        row.into_story_id = seen + letter
        return seen


async def test_sqlite_runs_two_locked_read_check_writes_one_after_the_other(
    sessions: Sessions,
) -> None:
    await two_at_once(sessions)


async def test_postgresql_runs_two_locked_read_check_writes_one_after_the_other(
    pg_sessions: Sessions,
) -> None:
    await two_at_once(pg_sessions)


async def two_at_once(sessions: Sessions) -> None:
    async with unit_of_work(sessions) as session:
        session.add(
            StoryAlias(
                watch_id="acme", story_id="x", into_story_id="s", signal_id="x#1",
                at=datetime(2026, 1, 5, tzinfo=UTC),
            )
        )  # fmt: skip
    started = asyncio.Event()
    first = asyncio.create_task(append(sessions, "a", started))
    await started.wait()  # the first holds the lock and has read "s"
    second = asyncio.create_task(append(sessions, "b", None))
    assert await first == "s"
    assert await second == "sa"  # it waited, then read what the first committed
    async with sessions() as session:
        row = await session.get(StoryAlias, ("acme", "x"))
        assert row is not None and row.into_story_id == "sab"
