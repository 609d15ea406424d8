"""What ``crisiswatch`` logs at INFO is what an operator reads: each ``crisiswatch run``
stop printed SQLAlchemy's pool lines ("Pool disposed. Pool size: 5 ... Current Overflow: -5",
"Pool recreating", under ``core.db.DisposablePool``, outside the ``sqlalchemy`` logger that
SQLAlchemy keeps at WARNING), and each first start seven "setup plugin" lines of alembic."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from api.cli import _setup_logging
from core.db import make_engine, upgrade_database


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.levelname} {record.getMessage()}")


@pytest.fixture
def lines() -> Iterator[Lines]:
    """The root logger at INFO, as ``crisiswatch run`` sets it, with a handler of our own;
    the levels of the loggers the setup touches are put back after."""
    root = logging.getLogger()
    touched = ["alembic", "alembic.runtime", "alembic.runtime.plugins", "core", "core.db"]
    touched.append("core.db.DisposablePool")
    levels = {name: logging.getLogger(name).level for name in touched}
    for name in touched:
        logging.getLogger(name).setLevel(logging.NOTSET)
    root_level, handler = root.level, Lines()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(root_level)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


async def test_a_database_opened_migrated_and_closed_logs_only_the_migrations(
    lines: Lines, tmp_path: Path
) -> None:
    _setup_logging("INFO")
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/cw.db")
    await upgrade_database(engine)
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    await engine.dispose()
    assert not [line for line in lines.lines if "Pool" in line], lines.lines
    assert not [line for line in lines.lines if "setup plugin" in line], lines.lines
    # what the migrations do is still said
    assert any("Running upgrade" in line for line in lines.lines), lines.lines
