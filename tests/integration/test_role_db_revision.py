"""A distributed role (which does not migrate: ``crisiswatch db upgrade`` does, before the
processes start) checks at start that the database is at this release's schema.

Before: on a database nobody migrated the roles said "crisiswatch is up" (the alerter then
logged seven tracebacks every 5 s and dead-lettered its Signals), and on one a newer
release migrated they ran on, though the README promised one line and exit 3 from every
process."""

from __future__ import annotations

import logging
import os
import signal
import threading

import pytest

from api import serve
from api.dbrevision import DatabaseNotMigrated
from api.runtime import Role, Runtime
from api.settings import Settings
from core.db import (
    MigratedByANewerRelease,
    downgrade_database,
    make_engine,
    upgrade_database,
)
from core.settings import DatabaseConfig
from listener.config import ListenerConfig, WatchConfig
from tests.support import free_port


async def _at(url: str, revision: str | None) -> None:
    """The database at ``revision`` (None: untouched; "-1": one step below the newest)."""
    if revision is None:
        return
    engine = make_engine(url)
    try:
        await upgrade_database(engine)
        if revision == "-1":
            await downgrade_database(engine, "-1")
        elif revision != "head":
            async with engine.begin() as conn:
                await conn.exec_driver_sql(f"UPDATE alembic_version SET version_num = '{revision}'")
    finally:
        await engine.dispose()


async def _refused(runtime: Runtime) -> BaseException:
    """The error that stopped ``runtime``'s start (one that started is stopped, then fails)."""
    try:
        await runtime.start()
    except (DatabaseNotMigrated, MigratedByANewerRelease) as exc:
        return exc
    await runtime.stop()
    pytest.fail("the role started on a database not at this release's schema")


def _settings(url: str) -> Settings:
    return Settings(
        database=DatabaseConfig(url=url),
        listener=ListenerConfig(watches=[WatchConfig(id="acme", brand="Acme", terms=["acme"])]),
    )


@pytest.mark.parametrize("role", [Role.API, Role.LISTENER])
@pytest.mark.parametrize(
    ("revision", "said"),
    [
        (None, "not migrated (no revision)"),
        ("-1", "is at revision 00"),
    ],
)
async def test_a_role_on_a_database_not_migrated_says_run_db_upgrade(
    db_url: str, role: Role, revision: str | None, said: str
) -> None:
    await _at(db_url, revision)
    runtime = Runtime(_settings(db_url), roles=frozenset({role}), migrate=False)
    refused = await _refused(runtime)
    assert isinstance(refused, DatabaseNotMigrated)
    message = str(refused)
    assert said in message and "'crisiswatch db upgrade'" in message, message
    assert "this release needs 00" in message
    assert not runtime.ready


async def test_a_role_on_a_database_a_newer_release_migrated_says_so(db_url: str) -> None:
    await _at(db_url, "0099_future")
    runtime = Runtime(_settings(db_url), roles=frozenset({Role.API}), migrate=False)
    refused = await _refused(runtime)
    assert isinstance(refused, MigratedByANewerRelease)
    assert "at revision 0099_future" in str(refused) and "a newer crisiswatch" in str(refused)


async def test_a_role_on_a_migrated_database_starts(db_url: str) -> None:
    await _at(db_url, "head")
    runtime = Runtime(_settings(db_url), roles=frozenset({Role.API}), migrate=False)
    await runtime.start()
    try:
        assert runtime.ready
    finally:
        await runtime.stop()


async def test_a_database_that_does_not_answer_is_left_to_the_role(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The API starts while its database is down (it answers what it can; /readyz says
    why): the check is skipped, in a WARNING, not turned into a failed start."""
    nobody = free_port()
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{nobody}/none"
    runtime = Runtime(_settings(url), roles=frozenset({Role.API}), migrate=False)
    with caplog.at_level(logging.WARNING, logger="api.runtime"):
        await runtime.start()
    try:
        assert runtime.ready
        assert "could not check the database's schema revision" in caplog.text
    finally:
        await runtime.stop()


def test_the_process_says_it_in_one_line_and_exits_3(
    sqlite_url: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    # (a process that did start, as before, is stopped after a while: it would serve on)
    stop = threading.Timer(10.0, os.kill, (os.getpid(), signal.SIGTERM))
    stop.start()
    try:
        with pytest.raises(SystemExit) as failed:  # (the CLI's exit status: uvicorn's)
            serve.serve_roles(
                _settings(sqlite_url),
                roles=("api",),
                demo=False,
                host="127.0.0.1",
                port=free_port(),
            )
    finally:
        stop.cancel()
    assert failed.value.code == serve.STARTUP_FAILURE
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 1, caplog.text
    said = critical[0].getMessage()
    assert said.startswith("crisiswatch cannot start: the database") and "db upgrade" in said
    assert not [r for r in caplog.records if r.exc_info], caplog.text
    assert "Traceback" not in capsys.readouterr().err
