"""Where the detector keeps each watch's state between batches (migration ``0007``):

* ``detector_state``: one row per (watch id, drill): the watch-level part of its
  snapshot (``snapshot.py``: pickle + zlib, ``STATE_FORMAT``) and when it was written;
* ``detector_story_state``: one row per story the watch holds: that story's part.

These tables are the snapshots' trust boundary: only detectors write them, and nothing
else is ever unpickled. ``save`` writes the changes of one batch's watches in one
transaction (the changed stories' rows upserted, the forgotten ones deleted, the watch
rows upserted), so a batch's watches move forward together or not at all; ``load``
reads a watch row with all its story rows.

Fencing (migration ``0009``): ``detector_state.epoch`` says which process owns a watch.
``load`` claims the watches it is asked for (their epoch goes up by one, in the same
transaction that reads them; a watch never saved gets a placeholder row, ``format`` 0,
at epoch 1) and the store remembers the epoch it holds. ``save`` first locks the rows
of its watches and reads their epochs (one statement per ``CHUNK`` watches, never one
per story): a watch claimed since by another process is not written (``Fenced``), the
others are, in the same transaction. So a process that lost its watches while it was
stuck (a database outage longer than the poll interval, a long pause) can never write
its older state over its successor's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    Boolean,
    Integer,
    LargeBinary,
    String,
    and_,
    delete,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UtcDateTime, unit_of_work
from sentiment.detector.snapshot import WatchChanges

WatchKey = tuple[str, bool]

UNSAVED = 0  # the format of a placeholder row: a watch claimed, never saved

CHUNK = 1_000  # rows (or ids) per statement: far below SQLite's and PostgreSQL's limits

_T = TypeVar("_T")


class DetectorStateRow(Base):
    __tablename__ = "detector_state"

    watch_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    drill: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    format: Mapped[int] = mapped_column(Integer, nullable=False)
    state: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    # bumped by every claim (load): a save writes only if it still holds this epoch
    epoch: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")


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


@dataclass(frozen=True)
class Fenced:
    """A watch a save did not write: another process claimed it since this one did."""

    key: WatchKey
    held: int  # the epoch this process held
    stored: int | None  # the epoch in the table (None: its row is gone)


def _chunks(items: Sequence[_T]) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


class StateStore:
    """The ``detector_state`` and ``detector_story_state`` tables, for one process (it
    remembers the epoch it holds for each watch it loaded)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self._epochs: dict[WatchKey, int] = {}  # the watches this store claimed

    def epoch(self, key: WatchKey) -> int | None:
        """The epoch this store holds for the watch (None: not claimed)."""
        return self._epochs.get(key)

    async def load(self, keys: Sequence[WatchKey]) -> dict[WatchKey, StoredState]:
        """Claim ``keys`` and read their stored states (one transaction; watches never
        saved are absent)."""
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
        async with unit_of_work(self.sessions) as session:
            claimed = await _claim(session, sorted(wanted))
            watch_rows = (await session.execute(watches)).all()
            story_rows = (await session.execute(stories)).all()
        self._epochs.update(claimed)  # (only once the claim committed)
        parts: dict[WatchKey, dict[str, bytes]] = defaultdict(dict)
        for watch_id, drill, story_id, state in story_rows:
            parts[(watch_id, drill)][story_id] = bytes(state)
        found: dict[WatchKey, StoredState] = {}
        for watch_id, drill, fmt, state in watch_rows:
            key = (watch_id, drill)
            if key in wanted and fmt != UNSAVED:
                found[key] = StoredState(fmt, bytes(state), parts.get(key, {}))
        return found

    def release(self, key: WatchKey) -> None:
        """Forget the epoch held for the watch (the next ``load`` claims it again)."""
        self._epochs.pop(key, None)

    async def save(self, changes: Mapping[WatchKey, WatchChanges], fmt: int) -> list[Fenced]:
        """Write the watches' changes, all in one transaction, except those of the
        watches another process claimed since this one did: those are returned (and
        released), nothing of theirs is written. A watch never claimed by this store
        is claimed by the save."""
        if not changes:
            return []
        now = datetime.now(UTC)
        async with unit_of_work(self.sessions) as session:
            dialect = session.get_bind().dialect.name
            unclaimed = sorted(key for key in changes if key not in self._epochs)
            claimed = await _claim(session, unclaimed) if unclaimed else {}
            held = {**self._epochs, **claimed}
            stored = await _lock(session, dialect, sorted(changes))
            fenced = [
                Fenced(key, held[key], stored.get(key))
                for key in sorted(changes)
                if stored.get(key) != held[key]
            ]
            lost = {f.key for f in fenced}
            items = sorted((key, delta) for key, delta in changes.items() if key not in lost)
            story_values = [
                {"watch_id": w, "drill": d, "story_id": story_id, "state": blob}
                for (w, d), delta in items
                for story_id, blob in sorted(delta.stories.items())
            ]
            watch_values = [
                {
                    "watch_id": w,
                    "drill": d,
                    "format": fmt,
                    "state": delta.watch,
                    "updated_at": now,
                    "epoch": held[(w, d)],
                }
                for (w, d), delta in items
            ]
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
                    await session.execute(_upsert(dialect, table), list(rows))
        self._epochs.update(claimed)
        for f in fenced:
            self._epochs.pop(f.key, None)
        return fenced


async def _claim(session: AsyncSession, keys: Sequence[WatchKey]) -> dict[WatchKey, int]:
    """Bump the epochs of ``keys`` (a placeholder row at epoch 1 for a watch without
    one); their new epochs. The rows stay locked until the transaction ends."""
    dialect = session.get_bind().dialect.name
    insert: Any = pg_insert if dialect == "postgresql" else sqlite_insert
    epochs: dict[WatchKey, int] = {}
    now = datetime.now(UTC)
    for chunk in _chunks(keys):
        statement = insert(DetectorStateRow).values(
            [
                {
                    "watch_id": w,
                    "drill": d,
                    "format": UNSAVED,
                    "state": b"",
                    "updated_at": now,
                    "epoch": 1,
                }
                for w, d in chunk
            ]
        )
        statement = statement.on_conflict_do_update(
            index_elements=["watch_id", "drill"],
            set_={"epoch": DetectorStateRow.epoch + 1},
        ).returning(DetectorStateRow.watch_id, DetectorStateRow.drill, DetectorStateRow.epoch)
        for watch_id, drill, epoch in (await session.execute(statement)).all():
            epochs[(watch_id, drill)] = epoch
    return epochs


async def _lock(
    session: AsyncSession, dialect: str, keys: Sequence[WatchKey]
) -> dict[WatchKey, int]:
    """Lock the watch rows of ``keys`` for this transaction; their stored epochs.
    PostgreSQL: ``SELECT ... FOR UPDATE`` in key order (two savers never deadlock on
    them); SQLite: an ``UPDATE`` that changes nothing takes the write lock first (a
    ``SELECT`` would not start the transaction)."""
    found: dict[WatchKey, int] = {}
    for chunk in _chunks(keys):
        of = tuple_(DetectorStateRow.watch_id, DetectorStateRow.drill).in_(list(chunk))
        columns = (DetectorStateRow.watch_id, DetectorStateRow.drill, DetectorStateRow.epoch)
        if dialect == "postgresql":
            statement: Any = (
                select(*columns)
                .where(of)
                .order_by(DetectorStateRow.watch_id, DetectorStateRow.drill)
                .with_for_update()
            )
        else:
            statement = (
                update(DetectorStateRow)
                .where(of)
                .values(epoch=DetectorStateRow.epoch)
                .returning(*columns)
                .execution_options(synchronize_session=False)
            )
        for watch_id, drill, epoch in (await session.execute(statement)).all():
            found[(watch_id, drill)] = epoch
    return found


def _upsert(dialect: str, table: type[Base]) -> Any:
    """``INSERT ... ON CONFLICT (primary key) DO UPDATE`` of every other column (the
    PostgreSQL and SQLite dialects build the same statement), run with a list of rows
    (executemany): one statement shape whatever the number of rows, so SQLAlchemy
    compiles it once (a multi-row VALUES was compiled again for each new row count, a
    third of a save's time)."""
    insert: Any = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(table)
    keys = [column.name for column in table.__table__.primary_key]
    return statement.on_conflict_do_update(
        index_elements=keys,
        set_={
            column.name: statement.excluded[column.name]
            for column in table.__table__.columns
            if column.name not in keys
        },
    )
