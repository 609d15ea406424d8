"""Shared fixtures: clocks, metrics, migrated databases (SQLite always, PostgreSQL in CI).

PostgreSQL: ``CRISISWATCH_TEST_POSTGRES`` (default ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``)
names a server database used only to create and drop a fresh database per test.
"""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from core.clock import ManualClock
from core.db import make_engine, make_sessionmaker, upgrade_database
from core.metrics import Metrics
from tests.fakes import FakeClassifier

if TYPE_CHECKING:
    from tests.process_support import Processes

pytest_plugins = ["tests.fixtures.kafka"]

DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


@pytest.fixture(autouse=True)
def _collector_thresholds() -> Iterator[None]:
    """Commands run in process (``main(["bench", ...])``) set the garbage collector's
    threshold for the whole process (``api.collector``): each test gets back the one it
    started with, so that no test depends on another's."""
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def fake_classifier() -> FakeClassifier:
    return FakeClassifier()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
async def sessions(sqlite_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A SQLite database built by running the migrations (never create_all)."""
    engine = make_engine(sqlite_url)
    await upgrade_database(engine)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    admin_url = os.environ.get("CRISISWATCH_TEST_POSTGRES", DEFAULT_PG)
    name = f"cw_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        await admin.dispose()
        pytest.fail(f"PostgreSQL at {admin_url} is required for this test: {exc}")
    base, _, _ = admin_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture
async def pg_sessions(pg_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(pg_url)
    await upgrade_database(engine)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    """Role processes of one test (tests.process_support); their log tails are printed
    (pytest shows them when the test failed), then every process is stopped."""
    from tests.process_support import Processes  # only for the tests that start processes

    group = Processes(tmp_path)
    try:
        yield group
    finally:
        print(group.tails())
        group.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """An empty database: SQLite, and PostgreSQL where the ``postgres`` marker runs (a test
    that takes it runs on both)."""
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    assert isinstance(url, str)
    return url


@pytest.fixture
async def any_sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """``db_url`` (SQLite, and PostgreSQL under the ``postgres`` marker) migrated."""
    engine = make_engine(db_url)
    await upgrade_database(engine)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()
