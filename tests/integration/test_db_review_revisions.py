"""The CLI commands that write to the database without migrating it (``templates seed``,
``dead-letters redrive``'s audit entry) refuse a database at another release's revision
in one line, before writing anything (SQLite, and PostgreSQL under the marker)."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from alerts.templates.models import ResponseTemplate
from api.cli import main
from core.db import downgrade_database, make_engine, upgrade_database
from tests.integration.test_bus_contract import mention
from tests.integration.test_dead_letters_cli import Poison, journal_config, one_line, run_bus

OLDER = "0016"  # audit_log has no ``outcome`` column yet (0017)


async def _at(url: str, revision: str) -> None:
    """Migrate ``url`` to ``revision``; ``"newer"``: to a revision this release lacks."""
    engine = make_engine(url)
    try:
        await upgrade_database(engine, "head" if revision == "newer" else revision)
        if revision == "newer":
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    finally:
        await engine.dispose()


async def _templates(url: str) -> int:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(ResponseTemplate)) or 0)
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("revision", "says"),
    [(OLDER, f"is at revision {OLDER}; this release needs"), ("newer", "revision 0099")],
)
def test_seeding_a_database_at_another_revision_is_refused_in_one_line(
    db_url: str,
    revision: str,
    says: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # before: at 0016 the insert failed (PostgreSQL: a traceback; SQLite: "cannot reach
    # the database"); at a newer revision the templates were written
    asyncio.run(_at(db_url, revision))
    monkeypatch.setenv("CRISISWATCH_DATABASE__URL", db_url)
    assert main(["templates", "seed"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    line = one_line(captured.err)
    assert line.startswith("crisiswatch templates seed: ")
    assert says in line and "cannot reach" not in line
    assert asyncio.run(_templates(db_url)) == 0


def test_seeding_after_the_upgrade_works(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_at(db_url, OLDER))
    monkeypatch.setenv("CRISISWATCH_DATABASE__URL", db_url)
    assert main(["db", "upgrade"]) == 0
    assert main(["templates", "seed"]) == 0
    assert "starter template(s) added" in capsys.readouterr().out
    assert asyncio.run(_templates(db_url)) > 0


async def _downgrade(url: str, revision: str) -> None:
    engine = make_engine(url)
    try:
        await downgrade_database(engine, revision)
    finally:
        await engine.dispose()


def test_a_redrive_on_a_database_at_an_older_revision_publishes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # before: the events were published, then the audit entry failed ("NOT RECORDED")
    config, journal = journal_config(tmp_path)
    asyncio.run(run_bus(journal, Poison({"test:1"}), [mention(1)]))
    asyncio.run(_downgrade(f"sqlite+aiosqlite:///{tmp_path}/cw.db", OLDER))
    with closing(sqlite3.connect(journal)) as db:
        records = db.execute("SELECT count(*) FROM bus_records").fetchone()
    argv = ["dead-letters", "redrive", "--topic", "mentions", "--all", "--config", str(config)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    line = one_line(captured.err)
    assert line.startswith("crisiswatch dead-letters redrive: the audit log cannot record")
    assert f"at revision {OLDER}" in line and line.endswith("nothing was published")
    with closing(sqlite3.connect(journal)) as db:  # still there, still re-drivable
        assert db.execute("SELECT count(*) FROM bus_dead_letters").fetchone() == (1,)
        assert db.execute("SELECT count(*) FROM bus_records").fetchone() == records

    dry = ["dead-letters", "redrive", "--topic", "mentions", "--all", "--dry-run"]
    assert main([*dry, "--config", str(config)]) == 0  # a dry run writes nothing: allowed
