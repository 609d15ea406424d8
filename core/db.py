"""Async database plumbing: the declarative base, engine, sessions and migrations.

Each stage declares its tables on ``Base`` beside its own code; the schema changes only
through the Alembic migrations in ``core/migrations`` (``upgrade_database``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import DateTime, MetaData, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Dialect, Engine, make_url
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

log = logging.getLogger(__name__)

MIGRATION_LOCK_NAME = "crisiswatch.migrations"
MIGRATION_LOCK_KEY = int.from_bytes(
    hashlib.sha256(MIGRATION_LOCK_NAME.encode()).digest()[:8], "big", signed=True
)
"""The PostgreSQL advisory lock (``pg_advisory_xact_lock``) every migration, upgrade or
downgrade, holds for its transaction: the first 8 bytes of the SHA-256 of
``MIGRATION_LOCK_NAME``, a signed 64-bit number (-1997768697878284153). Advisory locks
belong to one database: other databases on the server are not held up."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that only takes aware datetimes and always returns UTC.

    SQLite keeps no offset, so values are stored as naive UTC and read back as aware UTC;
    PostgreSQL stores ``timestamptz``. Migrations declare it as ``sa.DateTime(timezone=True)``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UtcDateTime needs a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_SQLITE_BUSY_TIMEOUT_MS = 5000
"""How long a SQLite statement waits for another connection's lock before it fails."""


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


_TAKE_WRITE_LOCK = "DELETE FROM alembic_version WHERE 0"
"""Changes nothing; as a write it opens the transaction and takes SQLite's write lock."""


def _sqlite_for_update(
    conn: Any, clauseelement: Any, _multiparams: Any, _params: Any, _options: Any
) -> None:
    """Give ``SELECT ... FOR UPDATE`` its meaning on SQLite, which has no row locks and
    drops the clause: the transaction takes the database's write lock first, so the rows
    it reads stay as read until it commits.

    Without it the driver starts the transaction only at the first write: a read-check-
    write (edit a template version while it is a draft; acknowledge an open incident) ran
    its check outside any transaction, and a concurrent submit-and-approve or a second
    acknowledge committed in between; the late write then landed on the approved version,
    or acknowledged twice. Now the second waits for the first (``busy_timeout``) and then
    reads what it committed. ``skip_locked`` readers wait the same way here: one writer
    at a time is what SQLite has."""
    if getattr(clauseelement, "_for_update_arg", None) is not None:
        conn.exec_driver_sql(_TAKE_WRITE_LOCK)


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database URL; None for another database, an in-memory one, or
    a URI filename (``file:...``, ``mode=memory``)."""
    parsed = make_url(url)
    database = parsed.database
    if not parsed.drivername.startswith("sqlite") or not database or database == ":memory:":
        return None
    if database.startswith("file:") or parsed.query.get("mode") == "memory":
        return None
    return Path(database)


class DisposablePool(AsyncAdaptedQueuePool):
    """The engine's pool, which closes a connection checked in after ``dispose()``.

    ``AsyncEngine.dispose()`` closes the idle connections and replaces the pool; one
    checked out then (a task still in its unit of work: a delivery round, a request
    unwinding after a cancel) went back into the replaced pool when its holder finished,
    and nothing ever closed it: its driver connection (and aiosqlite's thread) lived on
    until the garbage collector dropped it unclosed (aiosqlite's ``ResourceWarning``).
    Here the holder's check-in closes it; the replacement pool (``recreate``) is a
    ``DisposablePool`` too."""

    _disposed = False

    def dispose(self) -> None:
        self._disposed = True  # first: what is checked in meanwhile is closed, not kept
        super().dispose()

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        if self._disposed:
            record.close()  # (the pool logs a failure to close, and goes on)
            return
        super()._do_return_conn(record)


def make_engine(url: str, *, echo: bool = False, pool_size: int = 5) -> AsyncEngine:
    """Create the engine; SQLite gets WAL, foreign keys and a meaning for ``FOR UPDATE``
    (``_sqlite_for_update``), its parent folder is created. A pooled engine closes a
    connection checked in after ``dispose()`` (``DisposablePool``)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        parsed = make_url(url)
        dialect = cast("type[DefaultDialect]", parsed.get_dialect())
        pooled = dialect.get_pool_class(parsed) is AsyncAdaptedQueuePool
        # an in-memory database keeps its one connection (StaticPool)
        engine = create_async_engine(
            url, echo=echo, **({"poolclass": DisposablePool} if pooled else {})
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "before_execute", _sqlite_for_update)
        return engine
    return create_async_engine(
        url, echo=echo, pool_size=pool_size, pool_pre_ping=True, poolclass=DisposablePool
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def unit_of_work(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One transaction: commit when the block succeeds, roll back when it raises."""
    async with sessions() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


_AFTER_COMMIT = "crisiswatch.after_commit"
_LISTENING = "crisiswatch.after_commit.listening"


def on_commit(session: AsyncSession, action: Callable[[], None]) -> None:
    """Run ``action`` once the session's transaction commits; never if it rolls back.

    For effects outside the database (metrics) that must not count a transaction that
    failed or will be retried. A savepoint (``savepoint``) is not the transaction: its
    release runs nothing, and its rollback drops only the actions added inside it.
    """
    if not session.info.get(_LISTENING):
        session.info[_LISTENING] = True
        event.listen(session.sync_session, "after_commit", _run_after_commit)
        event.listen(session.sync_session, "after_rollback", _drop_after_rollback)
    session.info.setdefault(_AFTER_COMMIT, []).append(action)


def _run_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint was released: the transaction goes on
    actions: list[Callable[[], None]] = session.info.pop(_AFTER_COMMIT, [])
    for done in actions:
        done()


def _drop_after_rollback(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint was rolled back (``savepoint`` drops what it added)
    session.info.pop(_AFTER_COMMIT, None)


@asynccontextmanager
async def savepoint(session: AsyncSession) -> AsyncIterator[None]:
    """One item of a transaction: the block's writes are undone when it raises (the error
    goes on up) and the transaction goes on with the other items; the ``on_commit``
    actions added inside a block that raised are dropped, the others kept.

    On SQLite the transaction is begun first (by a write that changes nothing): the driver
    begins one only before a write, and a savepoint taken outside one is a transaction of
    its own, committed when it is released."""
    connection = await session.connection()
    if connection.dialect.name == "sqlite":
        await connection.exec_driver_sql(_TAKE_WRITE_LOCK)
    before = len(session.info.get(_AFTER_COMMIT, []))
    try:
        async with session.begin_nested():
            yield
    except BaseException:
        del session.info.get(_AFTER_COMMIT, [])[before:]
        raise


# SQLSTATE classes of a server that is gone or not taking work: 08 connection exception,
# 57P01-57P05 (admin/crash shutdown, cannot connect now, idle session timeout), 53 out of
# resources (too many connections), 40001/40P01 (serialisation failure, deadlock: retry)
_UNAVAILABLE_SQLSTATES = ("08", "57P", "53", "40001", "40P01")


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached or cannot take work now (an
    outage, a restart, a dropped connection, a pool timeout, a locked SQLite file): an
    error to retry until the database is back. Errors about the statement or the data
    (integrity, programming, data errors) are not."""
    if isinstance(exc, OSError | sa_exc.TimeoutError):  # OSError: refused, reset, timeout
        return True
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        return isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
    return False


def connection_refused(exc: BaseException) -> bool:
    """Whether ``exc`` is the database refusing this connection for good: a database that
    does not exist (SQLSTATE 3D000) or credentials it does not take (class 28). Not an
    outage to wait out: the config names the wrong database or user."""
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return isinstance(sqlstate, str) and (sqlstate == "3D000" or sqlstate.startswith("28"))


def _alembic_config(url: str) -> object:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _migrate_sync(connection: Connection, url: str, direction: str, revision: str) -> None:
    from alembic import command

    cfg = _alembic_config(url)
    cfg.attributes["connection"] = connection  # type: ignore[attr-defined]
    getattr(command, direction)(cfg, revision)


class MigratedByANewerRelease(RuntimeError):
    """The database is at a revision this release does not have: a newer release migrated
    it (the message says what to do)."""


def newer_release_problem(error: str, asked: str | None) -> str | None:
    """What to do, when Alembic cannot find the revision the database is at (``error`` is
    its message; ``asked``: the revision asked for, which may be the unknown one): a newer
    release migrated it. None for another error."""
    found = re.fullmatch(r"Can't locate revision identified by '([^']+)'", error.strip())
    if found is None or found.group(1) == asked:
        return None
    return newer_release_text(found.group(1))


def newer_release_text(revision: str) -> str:
    """What to do about a database at ``revision``, which this release does not have."""
    from alembic.script import ScriptDirectory

    newest = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    return (
        f"the database is at revision {revision}, which this release does not have "
        f"(its newest is {newest}): a newer crisiswatch migrated it. Run that release, or "
        f"first roll back with its 'crisiswatch db downgrade --revision {newest}' (back the "
        "database up first)"
    )


async def _migrate(engine: AsyncEngine, direction: str, revision: str) -> None:
    """Run Alembic in one transaction: every pending revision or none; one process at a
    time (``_wait_for_other_migrations``, ``_begin_sqlite_migration``).
    ``MigratedByANewerRelease`` when the database is at a revision this release lacks."""
    from alembic.util import CommandError

    url = engine.url.render_as_string(hide_password=False)
    try:
        async with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                await _migrate_sqlite(conn, url, direction, revision)
            else:  # PostgreSQL: transactional DDL, in the transaction the lock began
                await _wait_for_other_migrations(conn, direction)
                await conn.run_sync(_migrate_sync, url, direction, revision)
                await conn.commit()
    except CommandError as exc:
        problem = newer_release_problem(str(exc), None if revision == "head" else revision)
        if problem is None:
            raise
        raise MigratedByANewerRelease(problem) from None


async def _wait_for_other_migrations(conn: AsyncConnection, direction: str) -> None:
    """Begin the migration's transaction by taking the migration lock
    (``MIGRATION_LOCK_KEY``), held until it commits or rolls back.

    Without it the processes of a deployment started together (or a migration Job retried
    while its first pod still ran) each read the old revision and ran the same DDL: all
    but one failed (a unique violation on ``pg_type``: "relation already exists") and
    crashed at start. Now the others wait here, then read the revision the first one
    committed and have nothing left to do. A wait is logged, and its end."""
    key = {"key": MIGRATION_LOCK_KEY}
    if await conn.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), key):
        return
    log.warning(
        "another process is migrating this database (PostgreSQL advisory lock %d): this "
        "%s waits for it to finish",
        MIGRATION_LOCK_KEY,
        direction,
    )
    started = time.monotonic()
    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), key)
    log.info(
        "waited %.1f s for another process's migration; the %s goes on",
        time.monotonic() - started,
        direction,
    )


async def _migrate_sqlite(conn: AsyncConnection, url: str, direction: str, revision: str) -> None:
    """SQLite, by hand, since its driver opens a transaction only before a data change (a
    failed migration left the schema changes before it applied, and the next attempt
    failed on them): the driver in autocommit, and one explicit ``BEGIN`` ... ``COMMIT``.

    Foreign keys are off meanwhile: SQLite alters a table by rebuilding it (copy, drop,
    rename), and with them on, dropping ``incidents`` deleted every row that refers to it
    (timelines, evidence, deliveries: ``ON DELETE CASCADE``). The pragma is ignored inside
    a transaction, so it is set before ``BEGIN`` and restored after; ``env.py`` refuses to
    run with keys on, and fails the migration if it left references broken."""
    try:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        await _begin_sqlite_migration(conn, direction)
        try:
            await conn.run_sync(_migrate_sync, url, direction, revision)
        except BaseException:
            await conn.exec_driver_sql("ROLLBACK")
            raise
        await conn.exec_driver_sql("COMMIT")
    finally:
        await _sqlite_settings_back(conn)


_SQLITE_BUSY = 5  # SQLITE_BUSY: another connection holds the lock
_SQLITE_WAIT_STEP_MS = 500
"""How long one attempt of a migration to take SQLite's write lock waits: it tries again
until it has it (a cancel, a SIGTERM during the start, is seen between two), and says it
waits once the first attempt failed (an ordinary write holds the lock for milliseconds)."""


async def _begin_sqlite_migration(conn: AsyncConnection, direction: str) -> None:
    """``BEGIN IMMEDIATE``: the database's write lock, held until the migration commits.

    Another process's migration (or a long write) holding it is waited for as long as it
    takes: with the ``busy_timeout`` of other statements, a second migration failed
    ("database is locked") when the first took more than 5 s. A wait is logged, and its
    end."""
    started = time.monotonic()
    waiting = False
    await conn.exec_driver_sql(f"PRAGMA busy_timeout={_SQLITE_WAIT_STEP_MS}")
    while True:
        try:
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
            break
        except sa_exc.OperationalError as exc:
            code = getattr(exc.orig, "sqlite_errorcode", None)
            if not isinstance(code, int) or code & 0xFF != _SQLITE_BUSY:
                raise
        if not waiting:
            waiting = True
            log.warning(
                "another process is migrating this database, or writing to it (SQLite's "
                "write lock is taken): this %s waits for it to finish",
                direction,
            )
    await conn.exec_driver_sql(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")  # the rest
    if waiting:
        log.info(
            "waited %.1f s for the database's write lock; the %s goes on",
            time.monotonic() - started,
            direction,
        )


async def _sqlite_settings_back(conn: AsyncConnection) -> None:
    """Foreign keys on and the ordinary ``busy_timeout`` again, or the connection is
    dropped, never pooled without its checks (also when cancelled or failing here). One
    already invalidated (a statement cancelled: a SIGTERM during the start) is left as it
    is: it is dropped, and the cancel goes on up (not an error about the connection)."""
    if conn.invalidated:
        return
    back = False
    try:
        await conn.exec_driver_sql(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
        await conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        back = await conn.scalar(text("PRAGMA foreign_keys")) == 1
    finally:
        if not back:
            await conn.invalidate()


async def upgrade_database(engine: AsyncEngine, revision: str = "head") -> None:
    """Run the Alembic migrations up to ``revision`` on ``engine``'s database."""
    await _migrate(engine, "upgrade", revision)


async def downgrade_database(engine: AsyncEngine, revision: str) -> None:
    """Undo the Alembic migrations above ``revision``; the data they do not drop stays."""
    await _migrate(engine, "downgrade", revision)


def upgrade_database_blocking(url: str, revision: str = "head") -> None:
    asyncio.run(_migrate_url(url, "upgrade", revision))


def downgrade_database_blocking(url: str, revision: str) -> None:
    asyncio.run(_migrate_url(url, "downgrade", revision))


async def _migrate_url(url: str, direction: str, revision: str) -> None:
    engine = make_engine(url)
    try:
        await _migrate(engine, direction, revision)
    finally:
        await engine.dispose()


__all__ = [
    "MIGRATION_LOCK_KEY",
    "Base",
    "Engine",
    "MigratedByANewerRelease",
    "UtcDateTime",
    "database_unavailable",
    "downgrade_database",
    "downgrade_database_blocking",
    "make_engine",
    "make_sessionmaker",
    "newer_release_problem",
    "newer_release_text",
    "unit_of_work",
    "upgrade_database",
    "upgrade_database_blocking",
]
