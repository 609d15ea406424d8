"""Review of the memory bus's journal: a journal that cannot be written (a full disk) never
turns a stage's events into dead letters that only memory holds, dead letters survive a
restart, a torn last write is dropped, a damaged file is one clear line at start."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.bus.base import PermanentError
from core.bus.journal import BusJournal, JournalError
from core.bus.memory import MemoryBus
from tests.integration.test_bus_contract import (
    FAST_RETRY,
    TIMEOUT,
    Collector,
    eventually,
    mention,
    scored,
)
from tests.process_support import REPO_ROOT


def metric(bus: MemoryBus, name: str, labels: dict[str, str]) -> float:
    return bus.metrics.registry.get_sample_value(name, labels) or 0.0


class DiskFull:
    """Every write to ``journal`` fails as on a full disk while ``full`` is set."""

    def __init__(self, journal: BusJournal) -> None:
        self.full = False
        connection: Callable[[], sqlite3.Connection] = journal._connection

        def writable() -> sqlite3.Connection:
            if self.full:
                raise sqlite3.OperationalError("database or disk is full")
            return connection()

        journal._connection = writable  # type: ignore[method-assign]


async def test_a_stage_whose_publish_a_full_journal_refuses_dead_letters_nothing(
    tmp_path: Path,
) -> None:
    """The scorer publishes its results in its handler: while the journal cannot take them,
    the batch must stay uncommitted (as on Kafka, whose dead-letter write fails too when
    the broker is down), not be dead-lettered into memory and deleted from the journal."""
    journal = BusJournal(tmp_path / "bus.journal")
    bus = MemoryBus(capacity=100, journal=journal)
    disk = DiskFull(journal)
    attempts: list[int] = []

    async def scorer(events: list[Any]) -> None:
        attempts.append(len(events))
        disk.full = True  # the disk fills up as this batch is scored
        await bus.publish_many("scored", [("w", scored(int(e.id[5:]))) for e in events])

    detector = Collector()
    bus.subscribe("mentions", "scorer", scorer, max_batch=10, retry=FAST_RETRY)
    bus.subscribe("scored", "detector", detector)
    await bus.start()
    try:
        await bus.publish_many("mentions", [("k", mention(i)) for i in range(3)])
        # the old code dead-lettered the three mentions after 3 + 3 * 3 attempts
        await eventually(
            lambda: bool(bus.dead_letters) or len(attempts) > 12, "more than 12 attempts"
        )
        assert bus.dead_letters == []
        assert metric(bus, "crisiswatch_bus_journal_errors_total", {"op": "dead_letter"}) >= 1

        async def freed(events: list[Any]) -> None:
            await bus.publish_many("scored", [("w", scored(int(e.id[5:]))) for e in events])

        disk.full = False
        object.__setattr__(bus._subscriptions[0], "handler", freed)
        await asyncio.wait_for(bus.join(), TIMEOUT)
        assert [e.mention.id for e in detector.events] == [f"test:{i}" for i in range(3)]
        assert bus.dead_letters == []
    finally:
        disk.full = False
        await bus.stop()
        await bus.close()


async def test_dead_letters_survive_a_restart(tmp_path: Path) -> None:
    """A dead-lettered event is past every group, so deleted from the journal: its dead
    letter is its only copy, and a restart must not lose it (Kafka keeps it in .dlq)."""
    path = tmp_path / "bus.journal"

    async def poison(events: list[Any]) -> None:
        if events[0].id == "test:1":
            raise PermanentError("cannot be scored")

    bus = MemoryBus(capacity=100, journal=BusJournal(path), dead_letter_capacity=2)
    bus.subscribe("mentions", "g", poison)
    await bus.start()
    try:
        await bus.publish_many("mentions", [("k", mention(i)) for i in range(3)])
        await asyncio.wait_for(bus.join(), TIMEOUT)
        assert [d.offset for d in bus.dead_letters] == [1]
    finally:
        await bus.stop()
        await bus.close()

    again = MemoryBus(capacity=100, journal=BusJournal(path), dead_letter_capacity=2)
    again.subscribe("mentions", "g", poison)
    await again.start()
    try:
        assert [(d.topic, d.group, d.offset, d.key) for d in again.dead_letters] == [
            ("mentions", "g", 1, "k")
        ]
        letter = again.dead_letters[0]
        assert letter.reason == "permanent: cannot be scored"
        assert letter.value == mention(1).model_dump_json().encode()
        # the journal keeps the last dead_letter_capacity, like the memory
        await again.publish_many("mentions", [("k", mention(1)) for _ in range(3)])
        await asyncio.wait_for(again.join(), TIMEOUT)
        assert [d.offset for d in again.dead_letters] == [4, 5]
    finally:
        await again.stop()
        await again.close()
    with sqlite3.connect(path) as db:
        kept = db.execute("SELECT offset FROM bus_dead_letters ORDER BY id").fetchall()
    assert kept == [(4,), (5,)]


async def test_a_failed_trim_of_an_unread_topic_does_not_fail_a_publish_that_went_through(
    tmp_path: Path,
) -> None:
    """Its records are in the journal and the log: told it failed, the caller would
    publish them again."""
    journal = BusJournal(tmp_path / "bus.journal")
    bus = MemoryBus(capacity=2, journal=journal)
    bus.subscribe("mentions", "g", Collector())
    await bus.start()
    try:

        def broken(topic: str, keep_from: int) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        journal._trim = broken  # type: ignore[method-assign]
        for i in range(3):  # nobody reads "scored": the third one trims the first
            await bus.publish("scored", scored(i), key="w")
        assert metric(bus, "crisiswatch_bus_journal_errors_total", {"op": "trim"}) == 1
        assert metric(bus, "crisiswatch_bus_published_total", {"topic": "scored"}) == 3
    finally:
        await bus.stop()
        await bus.close()


async def test_a_damaged_journal_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "bus.journal"
    journal = BusJournal(path)
    await journal.open()
    await journal.append("mentions", 0, [("k", b"x" * 3000) for _ in range(50)])
    await journal.close()
    data = bytearray(path.read_bytes())
    data[8192 : 8192 + 4096] = b"\x55" * 4096  # a page of the records' table overwritten
    path.write_bytes(bytes(data))
    damaged = BusJournal(path)
    try:
        with pytest.raises(JournalError, match="move it aside"):
            await damaged.open()
    finally:
        await damaged.close()


async def test_a_torn_last_write_is_dropped_and_the_rest_taken_back(tmp_path: Path) -> None:
    """A write torn by a power loss (its publish never returned): SQLite's WAL checksums
    drop it; what was written before is read back, and the offsets go on."""
    path = tmp_path / "bus.journal"
    child = textwrap.dedent(
        f"""
        import asyncio, os, pathlib
        from core.bus.journal import BusJournal

        async def main():
            journal = BusJournal(pathlib.Path({str(path)!r}))
            await journal.open()
            for i in range(5):
                await journal.append("mentions", i * 10, [("k", b"x" * 1500)] * 10)
            os._exit(0)  # no close: the WAL is left as a kill leaves it

        asyncio.run(main())
        """
    )
    await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", child], cwd=REPO_ROOT, timeout=60, check=True
    )
    wal = path.with_name(path.name + "-wal")
    with wal.open("r+b") as f:
        f.truncate(wal.stat().st_size - 700)  # the last frame of the last write, torn
    journal = BusJournal(path)
    try:
        topics = await journal.open()
        assert [r[0] for r in topics["mentions"].records] == list(range(40))
        assert topics["mentions"].end == 40
    finally:
        await journal.close()
