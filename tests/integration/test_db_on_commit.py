"""``core.db.on_commit``: effects outside the database follow the transaction's fate."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db import on_commit, unit_of_work


async def test_runs_after_commit_and_never_after_rollback(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    ran: list[str] = []
    async with unit_of_work(sessions) as session:
        await session.execute(text("SELECT 1"))
        on_commit(session, lambda: ran.append("committed"))
        assert ran == []
    assert ran == ["committed"]

    with pytest.raises(RuntimeError):
        async with unit_of_work(sessions) as session:
            await session.execute(text("SELECT 1"))
            on_commit(session, lambda: ran.append("rolled back"))
            raise RuntimeError("boom")
    assert ran == ["committed"]
