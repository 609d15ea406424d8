"""Where each source keeps its position (a time cursor, a last id, feed validators), so
that a restart continues where the last run stopped instead of starting over or skipping.

A cursor is an opaque string the source writes (usually JSON) under a stable key (the
source's name). ``DbCursorStore`` keeps them in the ``source_cursors`` table (migration
``0004``); ``MemoryCursorStore`` is for tests and for running without a database (the
position is then lost at exit, and start-up says so).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from sqlalchemy import String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import Clock
from core.db import Base, UtcDateTime, unit_of_work


class SourceCursor(Base):
    __tablename__ = "source_cursors"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    cursor: Mapped[str] = mapped_column(Text, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)


class CursorStore(Protocol):
    durable: bool

    async def load(self, key: str) -> str | None: ...

    async def save(self, key: str, cursor: str) -> None: ...


class MemoryCursorStore:
    durable = False

    def __init__(self) -> None:
        self.cursors: dict[str, str] = {}
        self.saves = 0

    async def load(self, key: str) -> str | None:
        return self.cursors.get(key)

    async def save(self, key: str, cursor: str) -> None:
        self.cursors[key] = cursor
        self.saves += 1


class DbCursorStore:
    durable = True

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self.sessions = sessions
        self.clock = clock

    async def load(self, key: str) -> str | None:
        async with self.sessions() as session:
            return await session.scalar(select(SourceCursor.cursor).where(SourceCursor.key == key))

    async def save(self, key: str, cursor: str) -> None:
        async with unit_of_work(self.sessions) as session:
            row = await session.get(SourceCursor, key)
            if row is None:
                session.add(SourceCursor(key=key, cursor=cursor, updated_at=self.clock.now()))
            else:
                row.cursor = cursor
                row.updated_at = self.clock.now()
