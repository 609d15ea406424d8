"""Where the detector keeps each watch's state between batches: the ``detector_state``
table (migration ``0007``), one row per (watch id, drill).

A row holds one watch's snapshot (``snapshot.py``: pickle + zlib, ``STATE_FORMAT``) and
when it was written. This table is the snapshots' trust boundary: only detectors write
it, and nothing else is ever unpickled. ``save`` upserts the watches of one batch in one
transaction, so a batch's watches move forward together or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Boolean, Integer, LargeBinary, String, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UtcDateTime, unit_of_work

WatchKey = tuple[str, bool]


class DetectorStateRow(Base):
    __tablename__ = "detector_state"

    watch_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    drill: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    format: Mapped[int] = mapped_column(Integer, nullable=False)
    state: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)


@dataclass(frozen=True)
class StoredState:
    format: int
    state: bytes


class StateStore:
    """The ``detector_state`` table."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def load(self, keys: Sequence[WatchKey]) -> dict[WatchKey, StoredState]:
        """The stored snapshots of ``keys`` (one query; watches never saved are absent)."""
        wanted = set(keys)
        if not wanted:
            return {}
        query = select(
            DetectorStateRow.watch_id,
            DetectorStateRow.drill,
            DetectorStateRow.format,
            DetectorStateRow.state,
        ).where(DetectorStateRow.watch_id.in_(sorted({watch for watch, _ in wanted})))
        async with self.sessions() as session:
            rows = (await session.execute(query)).all()
        found: dict[WatchKey, StoredState] = {}
        for watch_id, drill, fmt, state in rows:
            if (watch_id, drill) in wanted:
                found[(watch_id, drill)] = StoredState(fmt, bytes(state))
        return found

    async def save(self, states: Mapping[WatchKey, bytes], fmt: int) -> None:
        """Upsert the snapshots, all in one transaction."""
        if not states:
            return
        now = datetime.now(UTC)
        values = [
            {"watch_id": w, "drill": d, "format": fmt, "state": blob, "updated_at": now}
            for (w, d), blob in sorted(states.items())
        ]
        async with unit_of_work(self.sessions) as session:
            dialect = session.get_bind().dialect.name
            insert = pg_insert if dialect == "postgresql" else sqlite_insert
            statement = insert(DetectorStateRow).values(values)
            statement = statement.on_conflict_do_update(
                index_elements=["watch_id", "drill"],
                set_={
                    "format": statement.excluded.format,
                    "state": statement.excluded.state,
                    "updated_at": statement.excluded.updated_at,
                },
            )
            await session.execute(statement)
