"""The memory bus's journal: what a killed process had published and not handled is
delivered after the restart, what it had handled is not, and the file holds only what
is in flight. (The contract suite also runs over it: ``memory-journal`` in
``test_bus_contract.py``; a real ``kill -9`` of the embedded process is in
``test_embedded_crash.py``.)"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from core.bus.journal import BusJournal, JournalError
from core.bus.memory import MemoryBus
from tests.integration.test_bus_contract import TIMEOUT, Collector, mention
from tests.process_support import REPO_ROOT


def rows(path: Path, table: str = "bus_records") -> int:
    with closing(sqlite3.connect(path)) as db:  # closed now, not when collected
        count: int = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        return count


def metric(bus: MemoryBus, name: str, labels: dict[str, str]) -> float:
    return bus.metrics.registry.get_sample_value(name, labels) or 0.0


class Blocking(Collector):
    """Handles ``pass_first`` events, then blocks inside the next batch for ever."""

    def __init__(self, pass_first: int) -> None:
        super().__init__()
        self.pass_first = pass_first
        self.stuck = asyncio.Event()

    async def __call__(self, events: list[Any]) -> None:
        if len(self.events) >= self.pass_first:
            self.stuck.set()
            await asyncio.Event().wait()
        await super().__call__(events)


async def crash(bus: MemoryBus) -> None:
    """What a killed process leaves: nothing committed after this point, no stop()."""
    for task in bus._tasks:
        task.cancel()
    await asyncio.gather(*bus._tasks, return_exceptions=True)
    assert bus.journal is not None
    await bus.journal.close()


async def test_a_killed_bus_delivers_what_it_had_not_handled_after_the_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bus.journal"
    bus = MemoryBus(capacity=100, journal=BusJournal(path))
    first = Blocking(pass_first=4)
    bus.subscribe("mentions", "scorer", first, max_batch=2)
    other = Collector()
    bus.subscribe("mentions", "audit", other, max_batch=100)
    await bus.start()
    await bus.publish_many("mentions", [(f"k{i}", mention(i)) for i in range(10)])
    await asyncio.wait_for(first.stuck.wait(), TIMEOUT)
    await other.wait_for(10)
    await crash(bus)
    assert first.ids == [f"test:{i}" for i in range(4)]

    again = Collector()
    audit = Collector()
    restarted = MemoryBus(capacity=100, journal=BusJournal(path))
    restarted.subscribe("mentions", "scorer", again)
    restarted.subscribe("mentions", "audit", audit)
    await restarted.start()
    try:
        await asyncio.wait_for(restarted.join(), TIMEOUT)
        # the batch in flight and the rest; nothing handled before is delivered again
        assert again.ids == [f"test:{i}" for i in range(4, 10)]
        assert audit.ids == []  # that group had handled all ten
        assert again.events[0] == mention(4)  # decoded from the journal's bytes
        assert (
            metric(restarted, "crisiswatch_bus_journal_recovered_total", {"topic": "mentions"}) == 6
        )
        await restarted.publish("mentions", mention(10), key="k")
        await asyncio.wait_for(restarted.join(), TIMEOUT)
        assert again.ids[-1] == audit.ids[-1] == "test:10"  # offsets go on after the restart
    finally:
        await restarted.stop()
        await restarted.close()
    assert rows(path) == 0  # every group is past every record: nothing kept


async def test_the_journal_holds_only_what_is_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "bus.journal"
    bus = MemoryBus(capacity=50, journal=BusJournal(path))
    got = Collector()
    bus.subscribe("mentions", "g", got, max_batch=7)
    await bus.start()
    try:
        for i in range(0, 500, 20):
            await bus.publish_many("mentions", [("k", mention(n)) for n in range(i, i + 20)])
        await asyncio.wait_for(bus.join(), TIMEOUT)
        assert len(got.ids) == 500
    finally:
        await bus.stop()
        await bus.close()  # the file is locked while a bus has it open
    assert rows(path) == 0
    assert rows(path, "bus_positions") == 1


async def test_a_topic_no_group_reads_keeps_only_its_last_events_in_the_journal(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bus.journal"
    bus = MemoryBus(capacity=5, journal=BusJournal(path))
    bus.subscribe("scored", "g", Collector())
    await bus.start()
    try:
        for i in range(30):
            await bus.publish("mentions", mention(i), key="k")
    finally:
        await bus.stop()
        await bus.close()
    assert rows(path) == 5


async def test_a_group_not_read_any_more_is_forgotten_and_holds_nothing_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="core.bus.memory")
    path = tmp_path / "bus.journal"
    bus = MemoryBus(capacity=3, journal=BusJournal(path))
    gone = Blocking(pass_first=1)
    bus.subscribe("mentions", "gone", gone, max_batch=1)
    bus.subscribe("mentions", "stays", Collector())
    await bus.start()
    await bus.publish_many("mentions", [("k", mention(0)), ("k", mention(1))])
    await asyncio.wait_for(gone.stuck.wait(), TIMEOUT)
    await crash(bus)

    restarted = MemoryBus(capacity=3, journal=BusJournal(path))
    stays = Collector()
    restarted.subscribe("mentions", "stays", stays)
    await restarted.start()
    try:
        for i in range(1, 20):  # "gone" would hold publishers back after 3
            await asyncio.wait_for(restarted.publish("mentions", mention(i), key="k"), TIMEOUT)
        await asyncio.wait_for(restarted.join(), TIMEOUT)
        assert stays.ids[-1] == "test:19"
        assert any(
            "'gone'" in r.getMessage() and "forgotten" in r.getMessage() for r in caplog.records
        )
    finally:
        await restarted.stop()
        await restarted.close()
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT grp FROM bus_positions").fetchall() == [("stays",)]


async def test_a_journal_in_use_by_another_process_is_refused_at_start(tmp_path: Path) -> None:
    path = tmp_path / "bus.journal"
    owner = MemoryBus(journal=BusJournal(path))
    owner.subscribe("mentions", "g", Collector())
    await owner.start()
    second = MemoryBus(journal=BusJournal(path))
    second.subscribe("mentions", "g", Collector())
    try:
        with pytest.raises(JournalError, match="in use by another process"):
            await second.start()
    finally:
        await second.close()
        await owner.stop()
        await owner.close()
    third = MemoryBus(journal=BusJournal(path))  # released: the next process may open it
    await third.start()
    await third.stop()
    await third.close()


async def test_a_publish_the_journal_cannot_take_fails_and_is_counted(tmp_path: Path) -> None:
    bus = MemoryBus(journal=BusJournal(tmp_path / "bus.journal"))
    got = Collector()
    bus.subscribe("mentions", "g", got)
    await bus.start()
    try:
        assert bus.journal is not None
        await bus.journal.close()  # as good as a full disk: nothing can be written
        with pytest.raises(JournalError, match="not open"):
            await bus.publish("mentions", mention(0), key="k")
        assert metric(bus, "crisiswatch_bus_journal_errors_total", {"op": "append"}) == 1
        await asyncio.sleep(0.05)
        assert got.ids == []  # not handed to anyone: the caller keeps it and retries
    finally:
        await bus.stop()
        await bus.close()


async def test_a_real_kill_9_loses_nothing(tmp_path: Path) -> None:
    """A child process publishes 300 mentions and is killed with SIGKILL while its only
    group has handled a few: the restarted bus delivers every one not handled."""
    path = tmp_path / "bus.journal"
    handled = tmp_path / "handled.txt"
    child = textwrap.dedent(
        f"""
        import asyncio, os, pathlib, signal
        from core.bus.journal import BusJournal
        from core.bus.memory import MemoryBus
        from tests.integration.test_bus_contract import mention

        async def main():
            bus = MemoryBus(capacity=1000, journal=BusJournal(pathlib.Path({str(path)!r})))
            out = open({str(handled)!r}, "a")

            async def handle(events):
                for e in events:
                    out.write(e.id + "\\n")
                out.flush()
                if sum(1 for _ in open({str(handled)!r})) >= 20:
                    os.kill(os.getpid(), signal.SIGKILL)
                await asyncio.sleep(0.01)

            bus.subscribe("mentions", "g", handle, max_batch=5)
            await bus.start()
            await bus.publish_many("mentions", [("k", mention(i)) for i in range(300)])
            await asyncio.sleep(30)

        asyncio.run(main())
        """
    )
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", child], cwd=REPO_ROOT, timeout=60
    )
    assert result.returncode == -9
    before = handled.read_text().split()
    assert 20 <= len(before) < 300

    got = Collector()
    bus = MemoryBus(capacity=1000, journal=BusJournal(path))
    bus.subscribe("mentions", "g", got)
    await bus.start()
    try:
        await asyncio.wait_for(bus.join(), TIMEOUT)
    finally:
        await bus.stop()
        await bus.close()
    everything = set(before) | set(got.ids)
    assert everything == {f"test:{i}" for i in range(300)}
    # at least once: only the batch in flight at the kill is delivered twice
    assert len(set(before) & set(got.ids)) <= 5


async def test_a_publish_cancelled_during_its_journal_write_leaves_journal_and_log_agreeing(
    tmp_path: Path,
) -> None:
    """A source stopped (cancelled) while its batch is being written: the write ends in its
    thread; the records go to the log too, so nothing is left in the journal that no one
    handles (it would come back after a clean restart, as duplicates)."""
    path = tmp_path / "bus.journal"
    bus = MemoryBus(capacity=100, journal=BusJournal(path))
    got = Collector()
    bus.subscribe("mentions", "g", got, max_batch=100)
    await bus.start()
    assert bus.journal is not None
    write = bus.journal._append

    def slow(*args: Any) -> None:
        time.sleep(0.2)
        write(*args)

    bus.journal._append = slow  # type: ignore[method-assign]
    publish = asyncio.create_task(
        bus.publish_many("mentions", [("k", mention(100 + i)) for i in range(5)])
    )
    await asyncio.sleep(0.05)
    publish.cancel()
    with pytest.raises(asyncio.CancelledError):
        await publish
    bus.journal._append = write  # type: ignore[method-assign]
    await bus.publish("mentions", mention(1), key="k")
    await asyncio.wait_for(bus.join(), TIMEOUT)
    await bus.stop()
    await bus.close()
    # the cancelled batch was written, so it was delivered (at least once), then the next
    assert got.ids == [f"test:{100 + i}" for i in range(5)] + ["test:1"]
    assert rows(path) == 0  # a clean stop leaves nothing to deliver again

    again = Collector()
    restarted = MemoryBus(capacity=100, journal=BusJournal(path))
    restarted.subscribe("mentions", "g", again)
    await restarted.start()
    try:
        await asyncio.wait_for(restarted.join(), TIMEOUT)
        assert again.ids == []
    finally:
        await restarted.stop()
        await restarted.close()


async def test_a_second_embedded_process_on_the_same_files_is_refused_before_it_migrates(
    tmp_path: Path,
) -> None:
    from api.runtime import Runtime
    from api.settings import Settings
    from core.settings import DatabaseConfig
    from listener.config import ListenerConfig, WatchConfig
    from tests.fakes import FakeClassifier

    settings = Settings(
        database=DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'cw.db'}"),
        listener=ListenerConfig(watches=[WatchConfig(id="acme", brand="Acme", terms=["acme"])]),
    )
    first = Runtime(settings, classifier=FakeClassifier(), migrate=True)
    await first.start()
    try:
        assert (tmp_path / "cw.db.bus-journal").exists()
        second = Runtime(settings, classifier=FakeClassifier(), migrate=True)
        with pytest.raises(JournalError, match="in use by another process"):
            await second.start()
        assert second.engine is None  # refused before it touched the database
    finally:
        await first.stop()
    third = Runtime(settings, classifier=FakeClassifier(), migrate=True)  # the lock is free
    await third.start()
    await third.stop()


async def test_a_publish_before_the_journal_was_read_back_is_refused(tmp_path: Path) -> None:
    """Its offsets would collide with the records the journal still holds (a publish
    racing the first start would overwrite one of them)."""
    path = tmp_path / "bus.journal"
    bus = MemoryBus(journal=BusJournal(path))
    bus.subscribe("mentions", "g", Blocking(pass_first=0))
    await bus.start()
    await bus.publish("mentions", mention(1), key="k")
    await crash(bus)

    got = Collector()
    restarted = MemoryBus(journal=BusJournal(path))
    restarted.subscribe("mentions", "g", got)
    with pytest.raises(JournalError, match="before the bus started"):
        await restarted.publish("mentions", mention(2), key="k")
    racing = asyncio.gather(
        restarted.start(),
        restarted.publish("mentions", mention(3), key="k"),
        return_exceptions=True,
    )
    started, published = await racing
    assert started is None and isinstance(published, JournalError)
    try:
        await restarted.publish("mentions", mention(4), key="k")  # after start: fine
        await asyncio.wait_for(restarted.join(), TIMEOUT)
        assert got.ids == ["test:1", "test:4"]  # the record kept was not overwritten
    finally:
        await restarted.stop()
        await restarted.close()
