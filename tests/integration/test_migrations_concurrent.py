"""Processes that migrate one database at the same moment (a deployment's processes and its
``crisiswatch db upgrade`` started together, a migration Job retried while its first pod
still runs): one migrates, the others wait for it (and say so) and find the database at
the newest revision; none fails. Upgrades and downgrades take the same lock."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import (
    MIGRATIONS_DIR,
    downgrade_database,
    make_engine,
    sqlite_file,
    upgrade_database,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
WAITING = "another process is migrating this database"
HEAD = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


async def _version(url: str) -> str | None:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            found = await conn.scalar(text("SELECT version_num FROM alembic_version"))
            return None if found is None else str(found)
    finally:
        await engine.dispose()


def _race(url: str, folder: Path, processes: int) -> list[tuple[int, str]]:
    """``processes`` processes that upgrade ``url`` at once (``tests.migration_race``: each
    holds its migration until the others are migrating too, or wait): each one's exit
    status and log."""
    folder.mkdir()
    argv = [sys.executable, "-m", "tests.migration_race", url, str(folder), str(processes)]
    procs = [
        subprocess.Popen(
            argv, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for _ in range(processes)
    ]
    results = []
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
        results.append((proc.returncode, err))
    return results


def _one_at_a_time(results: list[tuple[int, str]], folder: Path) -> None:
    for code, log in results:
        assert code == 0, log
    companies = [int(p.read_text()) for p in folder.glob("company-*")]
    assert companies == [1] * len(results), "two migrations ran at once"
    waited = [log for _, log in results if WAITING in log]
    assert len(waited) == len(results) - 1, [log for _, log in results]  # operators see why
    assert all(" goes on" in log for log in waited)


async def test_processes_migrating_a_new_database_at_once_run_one_after_the_other(
    db_url: str, tmp_path: Path
) -> None:
    """Before: on PostgreSQL all three read "no revision" and ran the same DDL; two failed
    (``duplicate key value violates unique constraint "pg_type_typname_nsp_index"``)."""
    results = _race(db_url, tmp_path / "race", 3)
    _one_at_a_time(results, tmp_path / "race")
    assert await _version(db_url) == HEAD


async def test_processes_migrating_an_older_database_at_once_run_one_after_the_other(
    db_url: str, tmp_path: Path
) -> None:
    engine = make_engine(db_url)
    try:
        await upgrade_database(engine, "0012")
    finally:
        await engine.dispose()
    results = _race(db_url, tmp_path / "race", 2)
    _one_at_a_time(results, tmp_path / "race")
    assert await _version(db_url) == HEAD


@asynccontextmanager
async def _migration_held(url: str, engine: AsyncEngine) -> AsyncIterator[None]:
    """Hold what a migration holds, as another process migrating would: PostgreSQL's
    migration lock (``MIGRATION_LOCK_KEY``), SQLite's write lock."""
    path = sqlite_file(url)
    if path is not None:
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            yield
            other.execute("ROLLBACK")
        return
    from core.db import MIGRATION_LOCK_KEY  # (imported here: the module runs on older code)

    async with engine.connect() as other:
        await other.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        yield
        await other.rollback()


class _Said(logging.Handler):
    """Sets ``event`` when ``core.db`` logs a line holding ``words``."""

    def __init__(self, words: str) -> None:
        super().__init__()
        self.words = words
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.words in record.getMessage():
            self.event.set()


@asynccontextmanager
async def _said(words: str) -> AsyncIterator[asyncio.Event]:
    handler = _Said(words)
    logger = logging.getLogger("core.db")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.event
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def _waits_for_the_holder(
    url: str, engine: AsyncEngine, migrate: Callable[[], Coroutine[Any, Any, None]], what: str
) -> None:
    async with (
        _said(f"this {what} waits for it to finish") as waiting,
        _said(f"; the {what} goes on") as going_on,
    ):
        async with _migration_held(url, engine):
            task = asyncio.create_task(migrate())
            await asyncio.wait_for(waiting.wait(), 10)
            assert not task.done() and not going_on.is_set(), "it did not wait"
        await asyncio.wait_for(task, 10)
        assert going_on.is_set()


async def test_a_downgrade_and_an_upgrade_wait_for_the_migration_in_progress(
    db_url: str,
) -> None:
    engine = make_engine(db_url)
    try:
        await upgrade_database(engine)
        await _waits_for_the_holder(
            db_url, engine, lambda: downgrade_database(engine, "0012"), "downgrade"
        )
        assert await _version(db_url) == "0012"
        await _waits_for_the_holder(db_url, engine, lambda: upgrade_database(engine), "upgrade")
        assert await _version(db_url) == HEAD
    finally:
        await engine.dispose()


async def test_a_migration_waiting_for_another_can_be_cancelled(db_url: str) -> None:
    """A SIGTERM during the start (``Runtime.interrupt_start``) cancels a migration that
    waits: it stops, and leaves the database as it was."""
    engine = make_engine(db_url)
    try:
        await upgrade_database(engine, "0012")
        async with _said(WAITING) as waiting, _migration_held(db_url, engine):
            task = asyncio.create_task(upgrade_database(engine))
            await asyncio.wait_for(waiting.wait(), 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)
        assert await _version(db_url) == "0012"
        await upgrade_database(engine)  # and the connection it used is fine, or gone
        assert await _version(db_url) == HEAD
    finally:
        await engine.dispose()
