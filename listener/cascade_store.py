"""The cascade index's copy in the database (table ``listener_cascade``, migration
``0015``), so that a repost of a mention taken in before a restart still finds its
watches after it.

One row per matched mention: its id, the watches it matched with their matched terms
(JSON, ``{"<watch id>": ["<term>", ...]}``; the brand comes from the configuration when
the row is loaded) and ``used_at``, when it was last used (remembered, or continued by a
repost or reply). The rows are hints, never a record: losing some only means that their
reposts match on their own text, as before a restart.

``DbCascadeStore`` is the SQL; ``listener.cascade_keeper`` decides when it runs (batched,
off the ingest path). ``save`` upserts in chunks, ``load`` reads the most recently used
rows first, ``prune`` deletes in batches, each batch its own short transaction (the
embedded process shares its SQLite file with the alerter: no write holds the lock for
long).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import Index, String, Text, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UtcDateTime, unit_of_work
from core.events import WatchMatch

CHUNK = 1_000
"""Rows (or ids) per statement: far below SQLite's and PostgreSQL's parameter limits."""

_T = TypeVar("_T")


class CascadeEntry(Base):
    __tablename__ = "listener_cascade"
    __table_args__ = (Index("ix_listener_cascade_used_at", "used_at", "mention_id"),)

    mention_id: Mapped[str] = mapped_column(String(512), primary_key=True)
    watches: Mapped[str] = mapped_column(Text, nullable=False)
    used_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)


def encode(matches: Sequence[WatchMatch]) -> str:
    """The ``watches`` column: each watch id with its matched terms."""
    return json.dumps(
        {m.id: list(m.terms) for m in matches}, ensure_ascii=False, separators=(",", ":")
    )


class Decoder:
    """Reads ``watches`` columns back into the index's mappings, keeping only the watches
    configured now (with their brand now). Rows that hold the same watches and terms
    (most do) share one mapping."""

    def __init__(self, brands: Mapping[str, str]) -> None:
        self.brands = dict(brands)
        self.unreadable = 0
        self._seen: dict[str, Mapping[str, WatchMatch]] = {}

    def __call__(self, raw: str) -> Mapping[str, WatchMatch]:
        found = self._seen.get(raw)
        if found is not None:
            return found
        try:
            stored = json.loads(raw)
            found = {
                watch_id: WatchMatch(id=watch_id, brand=self.brands[watch_id], terms=tuple(terms))
                for watch_id, terms in stored.items()
                if watch_id in self.brands
            }
        except (ValueError, TypeError, AttributeError):
            self.unreadable += 1
            found = {}
        if len(self._seen) < 100_000:  # terms could be anything: bounded
            self._seen[raw] = found
        return found


@dataclass(frozen=True)
class Pruned:
    """Rows one ``prune`` deleted: unused for too long, and beyond the capacity."""

    age: int = 0
    capacity: int = 0


class CascadeStore(Protocol):
    def load(self, since: datetime, limit: int) -> AsyncGenerator[Sequence[tuple[str, str]], None]:
        """Pages of ``(mention id, watches)``, most recently used first: at most ``limit``
        rows, used at or after ``since``."""
        ...

    async def save(
        self, entries: Sequence[tuple[str, str, datetime]], touched: Sequence[str], now: datetime
    ) -> None:
        """Upsert ``entries`` (mention id, watches, used at), then set ``used_at`` to
        ``now`` on the rows of ``touched`` that exist (a touch never adds a row)."""
        ...

    async def prune(self, older_than: datetime, keep: int, budget: int) -> Pruned:
        """Delete the rows used before ``older_than``, then the least recently used
        beyond ``keep`` rows; at most ``budget`` rows in all, in batches."""
        ...


def _chunks(items: Sequence[_T], size: int = CHUNK) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class DbCascadeStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, page: int = 5_000) -> None:
        self.sessions = sessions
        self.page = page

    async def load(
        self, since: datetime, limit: int
    ) -> AsyncGenerator[Sequence[tuple[str, str]], None]:
        statement = (
            select(CascadeEntry.mention_id, CascadeEntry.watches)
            .where(CascadeEntry.used_at >= since)
            .order_by(CascadeEntry.used_at.desc(), CascadeEntry.mention_id.desc())
            .limit(limit)
        )
        async with self.sessions() as session:
            result = await session.stream(statement.execution_options(yield_per=self.page))
            async for part in result.partitions(self.page):
                yield [(mention_id, watches) for mention_id, watches in part]

    async def save(
        self, entries: Sequence[tuple[str, str, datetime]], touched: Sequence[str], now: datetime
    ) -> None:
        """Upsert ``entries`` and refresh ``touched``, one transaction per chunk: after an
        outage hundreds of thousands may wait, and one transaction would hold SQLite's
        write lock (which the alerter and the detector share) for seconds. A failure part
        way leaves the chunks before it written; the caller writes everything again
        (upserts: idempotent)."""
        for rows in _chunks(entries):
            async with unit_of_work(self.sessions) as session:
                dialect = session.get_bind().dialect.name
                insert: Any = pg_insert if dialect == "postgresql" else sqlite_insert
                statement = insert(CascadeEntry)
                statement = statement.on_conflict_do_update(
                    index_elements=["mention_id"],
                    set_={
                        "watches": statement.excluded.watches,
                        "used_at": statement.excluded.used_at,
                    },
                )
                await session.execute(  # one statement, many parameter sets
                    statement, [{"mention_id": i, "watches": w, "used_at": at} for i, w, at in rows]
                )
        for ids in _chunks(touched):
            async with unit_of_work(self.sessions) as session:
                await session.execute(
                    update(CascadeEntry)
                    .where(CascadeEntry.mention_id.in_(ids), CascadeEntry.used_at < now)
                    .values(used_at=now)
                    .execution_options(synchronize_session=False)
                )

    async def prune(self, older_than: datetime, keep: int, budget: int) -> Pruned:
        old = select(CascadeEntry.mention_id).where(CascadeEntry.used_at < older_than)
        age = await self._delete_oldest(old, budget)
        capacity = 0
        budget -= age
        if budget > 0:
            async with self.sessions() as session:
                rows = await session.scalar(select(func.count()).select_from(CascadeEntry)) or 0
            excess = min(rows - keep, budget)
            if excess > 0:
                capacity = await self._delete_oldest(select(CascadeEntry.mention_id), excess)
        return Pruned(age, capacity)

    async def _delete_oldest(self, which: Any, limit: int) -> int:
        """Delete the least recently used rows of ``which`` (a select of ids), up to
        ``limit``, ``CHUNK`` per transaction."""
        deleted = 0
        while deleted < limit:
            size = min(CHUNK, limit - deleted)
            batch = which.order_by(CascadeEntry.used_at, CascadeEntry.mention_id).limit(size)
            async with unit_of_work(self.sessions) as session:
                result = await session.execute(
                    delete(CascadeEntry)
                    .where(CascadeEntry.mention_id.in_(batch))
                    .execution_options(synchronize_session=False)
                )
            count = int(getattr(result, "rowcount", 0) or 0)
            deleted += count
            if count < size:
                break
        return deleted
