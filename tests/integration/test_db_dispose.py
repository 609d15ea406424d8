"""``core.db.make_engine``: a connection checked in after ``engine.dispose()`` is closed.

``dispose`` closes only the idle connections and replaces the pool; one checked out at
that moment (a task still in its unit of work: a delivery round, a request unwinding
after a cancel) used to go back, when its task finished, into the replaced pool, where
nothing closes it: its driver connection and thread lived until the garbage collector
found them (an aiosqlite ``ResourceWarning`` in whatever test ran then).
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from pathlib import Path

from sqlalchemy import text

from core.db import make_engine, make_sessionmaker, unit_of_work


def _leak_warnings(driver_repr: str) -> list[str]:
    """Collect garbage; the ResourceWarnings about the connection ``driver_repr``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    return [
        str(w.message)
        for w in caught
        if issubclass(w.category, ResourceWarning) and driver_repr in str(w.message)
    ]


async def test_a_connection_closed_after_dispose_is_not_left_open(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'dispose.db'}")
    conn = await engine.connect()
    await conn.execute(text("SELECT 1"))
    driver = (await conn.get_raw_connection()).driver_connection
    driver_repr = repr(driver)
    await engine.dispose()  # checked out: dispose leaves it to its holder
    await conn.close()  # checked in to the pool that dispose replaced
    assert getattr(driver, "_connection", None) is None  # closed (aiosqlite's own state)
    del conn, driver
    assert _leak_warnings(driver_repr) == []


async def test_a_unit_of_work_that_outlives_dispose_leaves_no_connection(
    tmp_path: Path,
) -> None:
    """The interleaving of the flaky failure: a task (here as the alerter's delivery
    task was, left running by a test) is in its unit of work when the engine is disposed,
    and finishes after."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'dispose.db'}")
    sessions = make_sessionmaker(engine)
    holding, release = asyncio.Event(), asyncio.Event()
    driver_repr: list[str] = []

    async def work() -> None:
        async with unit_of_work(sessions) as session:
            await session.execute(text("SELECT 1"))
            raw = await (await session.connection()).get_raw_connection()
            driver_repr.append(repr(raw.driver_connection))
            holding.set()
            await release.wait()

    task = asyncio.create_task(work())
    await holding.wait()
    await engine.dispose()
    release.set()
    await task  # commits, closes its session: the connection is checked in now
    del task
    assert _leak_warnings(driver_repr[0]) == []
