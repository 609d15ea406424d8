"""One of several processes that migrate one database at the same moment, as the processes
of a deployment that all start together do (``tests/integration/test_migrations_concurrent.py``).

``python -m tests.migration_race URL FOLDER N [upgrade|downgrade] [REVISION]`` migrates the
database at ``URL`` through ``core.db`` (what ``crisiswatch db upgrade`` runs), holding its
migration at the start, inside the migration's transaction and before Alembic reads the
database's revision, until each of the N processes is there too, finished, or has said
that it waits for another: where nothing serialises the migrations, all N then run at once
every time; where something does, the first goes on as soon as the others wait for it.

In ``FOLDER``: ``in-<pid>`` (held or migrating), ``waiting-<pid>`` (said it waits),
``done-<pid>`` (its Alembic command returned) and ``company-<pid>``: how many were
migrating (itself included) when it went on. Its log (INFO) goes to stderr; the exit
status is 0 when the migration succeeded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from alembic import command

from core import db

HOLD_S = 20.0
"""The longest a migration is held (then it goes on alone): every process is ready within
a second or two."""
WAITING = "waits for it to finish"
"""What ``core.db`` logs when a migration waits for another."""


def _count(folder: Path, kind: str) -> int:
    return sum(1 for _ in folder.glob(f"{kind}-*"))


def _hold(folder: Path, n: int) -> int:
    """Wait until every other process is migrating, finished or waiting; how many are
    migrating then."""
    deadline = time.monotonic() + HOLD_S
    while time.monotonic() < deadline:
        if _count(folder, "in") + _count(folder, "done") + _count(folder, "waiting") >= n:
            break
        time.sleep(0.01)
    return _count(folder, "in")


class _SaysItWaits(logging.Handler):
    def __init__(self, marker: Path) -> None:
        super().__init__()
        self.marker = marker

    def emit(self, record: logging.LogRecord) -> None:
        if WAITING in record.getMessage():
            self.marker.touch()


def main(argv: list[str]) -> int:
    url, folder, n = argv[0], Path(argv[1]), int(argv[2])
    direction = argv[3] if len(argv) > 3 else "upgrade"
    revision = argv[4] if len(argv) > 4 else "head"
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    me = os.getpid()
    logging.getLogger("core.db").addHandler(_SaysItWaits(folder / f"waiting-{me}"))
    alembic_command = getattr(command, direction)

    def held(cfg: Any, revision: str, **kw: Any) -> None:
        (folder / f"waiting-{me}").unlink(missing_ok=True)
        (folder / f"in-{me}").touch()
        company = _hold(folder, n)
        (folder / f"company-{me}").write_text(str(company))
        try:
            alembic_command(cfg, revision, **kw)
        finally:
            (folder / f"in-{me}").unlink()
            (folder / f"done-{me}").touch()

    setattr(command, direction, held)
    run = db.upgrade_database if direction == "upgrade" else db.downgrade_database
    engine = db.make_engine(url)

    async def migrate_once() -> None:
        try:
            await run(engine, revision)
        finally:
            await engine.dispose()

    asyncio.run(migrate_once())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
