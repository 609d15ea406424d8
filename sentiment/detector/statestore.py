"""Where the detector keeps each watch's state between batches (migration ``0007``):

* ``detector_state``: one row per (watch id, drill): the watch-level part of its
  snapshot (``snapshot.py``: pickle + zlib, ``STATE_FORMAT``) and when it was written;
* ``detector_story_state``: one row per story the watch holds: that story's part.

These tables are the snapshots' trust boundary: only detectors write them, and nothing
else is ever unpickled. ``save`` writes the changes of one batch's watches in one
transaction (the changed stories' rows upserted, the forgotten ones deleted, the watch
rows upserted), so a batch's watches move forward together or not at all; ``load``
reads a watch row with all its story rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Boolean, Integer, LargeBinary, String, and_, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UtcDateTime, unit_of_work
from sentiment.detector.snapshot import WatchChanges

WatchKey = tuple[str, bool]

CHUNK = 1_000  # rows (or ids) per statement: far below SQLite's and PostgreSQL's limits

_T = TypeVar("_T")


class DetectorStateRow(Base):
    __tablename__ = "detector_state"

    watch_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    drill: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    format: Mapped[int] = mapped_column(Integer, nullable=False)
    state: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)


class DetectorStoryRow(Base):
    __tablename__ = "detector_story_state"

    watch_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    drill: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    story_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    state: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


@dataclass(frozen=True)
class StoredState:
    format: int
    state: bytes  # the watch-level part
    stories: dict[str, bytes] = field(default_factory=dict)  # story id -> its part


def _chunks(items: Sequence[_T]) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


class StateStore:
    """The ``detector_state`` and ``detector_story_state`` tables."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def load(self, keys: Sequence[WatchKey]) -> dict[WatchKey, StoredState]:
        """The stored states of ``keys`` (two queries; watches never saved are absent)."""
        wanted = set(keys)
        if not wanted:
            return {}
        watch_ids = sorted({watch for watch, _ in wanted})
        watches = select(
            DetectorStateRow.watch_id,
            DetectorStateRow.drill,
            DetectorStateRow.format,
            DetectorStateRow.state,
        ).where(DetectorStateRow.watch_id.in_(watch_ids))
        stories = select(
            DetectorStoryRow.watch_id,
            DetectorStoryRow.drill,
            DetectorStoryRow.story_id,
            DetectorStoryRow.state,
        ).where(DetectorStoryRow.watch_id.in_(watch_ids))
        async with self.sessions() as session:
            watch_rows = (await session.execute(watches)).all()
            story_rows = (await session.execute(stories)).all()
        parts: dict[WatchKey, dict[str, bytes]] = defaultdict(dict)
        for watch_id, drill, story_id, state in story_rows:
            parts[(watch_id, drill)][story_id] = bytes(state)
        found: dict[WatchKey, StoredState] = {}
        for watch_id, drill, fmt, state in watch_rows:
            key = (watch_id, drill)
            if key in wanted:
                found[key] = StoredState(fmt, bytes(state), parts.get(key, {}))
        return found

    async def save(self, changes: Mapping[WatchKey, WatchChanges], fmt: int) -> None:
        """Write the watches' changes, all in one transaction."""
        if not changes:
            return
        now = datetime.now(UTC)
        items = sorted(changes.items())
        story_values = [
            {"watch_id": w, "drill": d, "story_id": story_id, "state": blob}
            for (w, d), delta in items
            for story_id, blob in sorted(delta.stories.items())
        ]
        watch_values = [
            {"watch_id": w, "drill": d, "format": fmt, "state": delta.watch, "updated_at": now}
            for (w, d), delta in items
        ]
        async with unit_of_work(self.sessions) as session:
            dialect = session.get_bind().dialect.name
            for (w, d), delta in items:
                of_watch = and_(DetectorStoryRow.watch_id == w, DetectorStoryRow.drill == d)
                if delta.whole:
                    await session.execute(delete(DetectorStoryRow).where(of_watch))
                    continue
                for ids in _chunks(sorted(delta.removed)):
                    await session.execute(
                        delete(DetectorStoryRow).where(of_watch, DetectorStoryRow.story_id.in_(ids))
                    )
            for table, values in (
                (DetectorStoryRow, story_values),
                (DetectorStateRow, watch_values),
            ):
                for rows in _chunks(values):
                    await session.execute(_upsert(dialect, table, rows))


def _upsert(dialect: str, table: type[Base], rows: Sequence[dict[str, Any]]) -> Any:
    """``INSERT ... ON CONFLICT (primary key) DO UPDATE`` of every other column (the
    PostgreSQL and SQLite dialects build the same statement)."""
    insert: Any = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(table).values(list(rows))
    keys = [column.name for column in table.__table__.primary_key]
    return statement.on_conflict_do_update(
        index_elements=keys,
        set_={
            column.name: statement.excluded[column.name]
            for column in table.__table__.columns
            if column.name not in keys
        },
    )
