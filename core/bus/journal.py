"""The in-process bus's write-ahead journal: a process that dies loses no event.

The memory bus keeps its topics in memory. With a journal, every record is written to a
SQLite file before ``publish`` returns (so before a source saves its cursor past it or a
webhook answers), and each group's position is written after its handler returned. A
record is deleted once every group reading its topic is past it, so the file holds only
what is in flight: a few thousand records at most (the bus's ``capacity`` per topic),
and the bus's last dead letters (``dead_letter_capacity``): a dead-lettered record is past
every group, so its letter is its only copy, kept as Kafka keeps it in ``<topic>.dlq``.
The next start of the bus reads it back and each group resumes where it had committed;
what a killed process was handling is delivered again (at least once, as on Kafka: the
stages are idempotent on the event's id).

SQLite in WAL mode with ``synchronous=NORMAL``: a killed process (``kill -9``, an
out-of-memory kill, a crash) loses nothing; a power loss or an operating-system crash may
lose the last transactions (``FULL`` keeps them, at the price of an ``fsync`` per write).
The file is opened in exclusive locking mode: a second process pointed at the same
journal is refused at start instead of taking the first one's events.

Every call runs on one thread of its own, in order: the event loop never waits on the
disk, and an append is on disk before the records it holds are handed to consumers.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from core.bus.base import DeadLetter

log = logging.getLogger(__name__)

Synchronous = Literal["NORMAL", "FULL"]
T = TypeVar("T")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS bus_records ("
    " topic TEXT NOT NULL, offset INTEGER NOT NULL, key TEXT, value BLOB NOT NULL,"
    " PRIMARY KEY (topic, offset)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS bus_positions ("
    " topic TEXT NOT NULL, grp TEXT NOT NULL, next INTEGER NOT NULL,"
    " PRIMARY KEY (topic, grp)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS bus_dead_letters ("
    " id INTEGER PRIMARY KEY, topic TEXT NOT NULL, grp TEXT NOT NULL, key TEXT,"
    " value BLOB NOT NULL, reason TEXT NOT NULL, partition INTEGER NOT NULL,"
    " offset INTEGER NOT NULL, at REAL)",
)
# ``at``: when it was dead-lettered (Unix seconds; NULL in a file written before it was kept)

_DAMAGED = (
    "; if the file is damaged, move it aside (with its -wal file) to start without the "
    "events it held"
)


class JournalError(RuntimeError):
    """The journal cannot be opened or written (a full disk, a file in use elsewhere)."""


@dataclass
class JournalTopic:
    """A topic as the journal holds it: its records not yet handled by every group, and
    each group's next offset."""

    records: list[tuple[int, str | None, bytes]] = field(default_factory=list)
    committed: dict[str, int] = field(default_factory=dict)

    @property
    def end(self) -> int:
        """The offset the next record gets."""
        last = self.records[-1][0] + 1 if self.records else 0
        return max([last, *self.committed.values()])

    @property
    def base(self) -> int:
        """The offset of the oldest record kept (``end`` when none is)."""
        return self.records[0][0] if self.records else self.end


class BusJournal:
    """One SQLite file, used by one bus of one process at a time."""

    def __init__(self, path: Path, *, synchronous: Synchronous = "NORMAL") -> None:
        self.path = path
        self.synchronous = synchronous
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None

    @property
    def is_open(self) -> bool:
        return self._executor is not None

    async def open(self) -> dict[str, JournalTopic]:
        """Open the file (created when missing; a no-op when open) and read what it
        holds."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="bus-journal")
        return await self._call(self._open)

    async def append(
        self, topic: str, first_offset: int, rows: list[tuple[str | None, bytes]]
    ) -> None:
        """Write ``rows`` as offsets ``first_offset``, ``first_offset + 1``, ... (one
        transaction; on disk when this returns)."""
        await self._call(self._append, topic, first_offset, rows)

    async def commit(self, topic: str, group: str, next_offset: int, keep_from: int) -> None:
        """Record ``group``'s position in ``topic``; forget the records below
        ``keep_from`` (every group is past them)."""
        await self._call(self._commit, topic, group, next_offset, keep_from)

    async def trim(self, topic: str, keep_from: int) -> None:
        """Forget the records of ``topic`` below ``keep_from`` (a topic no group reads
        keeps only its last ones)."""
        await self._call(self._trim, topic, keep_from)

    async def dead_letter(self, letter: DeadLetter, keep: int) -> None:
        """Write ``letter``, keeping the last ``keep`` letters (on disk when this
        returns)."""
        await self._call(self._dead_letter, letter, keep)

    async def dead_letters(self) -> list[DeadLetter]:
        """The letters kept, oldest first."""
        return await self._call(self._dead_letters)

    async def forget_group(self, topic: str, group: str) -> None:
        """Drop a group no subscription of this process reads any more."""
        await self._call(self._forget_group, topic, group)

    async def close(self) -> None:
        """Close the file (its lock is released); ``open`` may be called again."""
        if self._executor is None:
            return
        try:
            await self._call(self._close)
        finally:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        if self._executor is None:
            raise JournalError(f"the bus journal {self.path} is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise JournalError(f"bus journal {self.path}: {exc}") from exc

    # --- on the journal's thread ----------------------------------------------------------

    def _open(self) -> dict[str, JournalTopic]:
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise JournalError(
                    f"cannot create the folder of the bus journal {self.path}: {exc.strerror}"
                ) from exc
            db = sqlite3.connect(self.path, isolation_level=None)
            try:
                db.execute("PRAGMA locking_mode=EXCLUSIVE")
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(f"PRAGMA synchronous={self.synchronous}")
                db.execute("BEGIN IMMEDIATE")  # takes the exclusive lock now, or fails
                for statement in _SCHEMA:
                    db.execute(statement)
                columns = {row[1] for row in db.execute("PRAGMA table_info(bus_dead_letters)")}
                if "at" not in columns:  # a journal written before the time was kept
                    db.execute("ALTER TABLE bus_dead_letters ADD COLUMN at REAL")
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                db.close()
                if "locked" in str(exc):
                    raise JournalError(
                        f"the bus journal {self.path} is in use by another process (one "
                        "embedded crisiswatch per database file; give this one its own "
                        "database or bus.journal)"
                    ) from exc
                raise JournalError(
                    f"the bus journal {self.path} cannot be opened ({exc}){_DAMAGED}"
                ) from exc
            self._db = db
        topics: dict[str, JournalTopic] = {}
        try:
            for topic, offset, key, value in self._db.execute(
                "SELECT topic, offset, key, value FROM bus_records ORDER BY topic, offset"
            ):
                topics.setdefault(topic, JournalTopic()).records.append((offset, key, value))
            for topic, group, next_offset in self._db.execute(
                "SELECT topic, grp, next FROM bus_positions"
            ):
                topics.setdefault(topic, JournalTopic()).committed[group] = next_offset
        except sqlite3.DatabaseError as exc:  # a damaged page
            raise JournalError(
                f"the bus journal {self.path} cannot be read ({exc}){_DAMAGED}"
            ) from exc
        return topics

    def _append(self, topic: str, first: int, rows: list[tuple[str | None, bytes]]) -> None:
        db = self._connection()
        with db:  # one transaction
            db.execute("BEGIN")
            # rows at these offsets or beyond can only be left by a write whose publisher
            # was cancelled before it reached the log: they never happened
            db.execute("DELETE FROM bus_records WHERE topic = ? AND offset >= ?", (topic, first))
            db.executemany(
                "INSERT OR REPLACE INTO bus_records (topic, offset, key, value)"
                " VALUES (?, ?, ?, ?)",
                [(topic, first + i, key, value) for i, (key, value) in enumerate(rows)],
            )

    def _commit(self, topic: str, group: str, next_offset: int, keep_from: int) -> None:
        db = self._connection()
        with db:
            db.execute("BEGIN")
            db.execute(
                "INSERT INTO bus_positions (topic, grp, next) VALUES (?, ?, ?)"
                " ON CONFLICT (topic, grp) DO UPDATE SET next = excluded.next",
                (topic, group, next_offset),
            )
            db.execute("DELETE FROM bus_records WHERE topic = ? AND offset < ?", (topic, keep_from))

    def _trim(self, topic: str, keep_from: int) -> None:
        db = self._connection()
        with db:
            db.execute("BEGIN")
            db.execute("DELETE FROM bus_records WHERE topic = ? AND offset < ?", (topic, keep_from))

    def _dead_letter(self, letter: DeadLetter, keep: int) -> None:
        db = self._connection()
        with db:
            db.execute("BEGIN")
            cursor = db.execute(
                "INSERT INTO bus_dead_letters"
                " (topic, grp, key, value, reason, partition, offset, at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    letter.topic,
                    letter.group,
                    letter.key,
                    letter.value,
                    letter.reason,
                    letter.partition,
                    letter.offset,
                    time.time(),
                ),
            )
            last = cursor.lastrowid or 0
            db.execute("DELETE FROM bus_dead_letters WHERE id <= ?", (last - keep,))

    def _dead_letters(self) -> list[DeadLetter]:
        return [
            DeadLetter(topic, group, key, value, reason, partition, offset)
            for topic, group, key, value, reason, partition, offset in self._connection().execute(
                "SELECT topic, grp, key, value, reason, partition, offset"
                " FROM bus_dead_letters ORDER BY id"
            )
        ]

    def _forget_group(self, topic: str, group: str) -> None:
        db = self._connection()
        with db:
            db.execute("BEGIN")
            db.execute("DELETE FROM bus_positions WHERE topic = ? AND grp = ?", (topic, group))

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.OperationalError("closed")
        return self._db
