"""``Runtime.interrupt_start``: a start-up cancelled mid-way (SIGTERM, Ctrl-C) stops what it
had started and raises ``StartInterrupted``; a model loading in a thread, which no cancel
stops, is waited for (at most ``bus.stop_timeout``) and closed. And the stop's budget: the
embedded bus's drain and stop share ``bus.stop_timeout`` (the drain was 30 s on its own)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import api.runtime as runtime_module
from api.runtime import ALL_ROLES, Role, Runtime, StartInterrupted, stop_budget
from api.settings import Settings
from core.bus.journal import BusJournal
from core.bus.memory import MemoryBus
from core.settings import BusConfig, DatabaseConfig
from sentiment.config import ClassifierConfig, ScorerConfig
from tests.fakes import FakeClassifier

GUARD = 30.0  # generous: every wait below ends in well under a second


class ClosableClassifier(FakeClassifier):
    def __init__(self) -> None:
        super().__init__()
        self.closed = threading.Event()

    def close(self) -> None:
        self.closed.set()


class BlockedLoad:
    """A ``load_classifier`` that blocks in its thread until ``release``."""

    def __init__(self) -> None:
        self.began = threading.Event()
        self.release = threading.Event()
        self.loaded = ClosableClassifier()

    def __call__(
        self, config: ScorerConfig, on_restart: Callable[[], None] | None = None
    ) -> object:
        self.began.set()
        assert self.release.wait(GUARD)
        return self.loaded


async def until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(GUARD):
        while not check():
            await asyncio.sleep(0.01)


def sqlite_settings(tmp_path: Path, **bus: object) -> Settings:
    return Settings(
        database=DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'cw.db'}"),
        bus=BusConfig.model_validate(bus),
    )


async def test_an_interrupted_migration_stops_what_was_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migration waiting on a lock (or a database connect that hangs): the start-up
    could not be interrupted at all."""
    migrating = asyncio.Event()

    async def hangs(engine: object) -> None:
        migrating.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(runtime_module, "upgrade_database", hangs)
    runtime = Runtime(sqlite_settings(tmp_path), classifier=FakeClassifier(), migrate=True)
    starting = asyncio.create_task(runtime.start())
    await asyncio.wait_for(migrating.wait(), GUARD)
    assert runtime.engine is not None
    pool = runtime.engine.sync_engine.pool  # dispose() replaces it
    assert runtime.interrupt_start()
    with pytest.raises(StartInterrupted):
        await asyncio.wait_for(starting, GUARD)
    assert runtime.start_interrupted and not runtime.ready
    assert runtime.engine.sync_engine.pool is not pool  # disposed
    journal = BusJournal(tmp_path / "cw.db.bus-journal")  # its lock was released
    await journal.open()
    await journal.close()
    assert not runtime.interrupt_start()  # interrupted already


async def test_an_interrupt_before_the_start_up_starts_nothing(tmp_path: Path) -> None:
    runtime = Runtime(sqlite_settings(tmp_path), classifier=FakeClassifier(), migrate=True)
    assert runtime.interrupt_start()
    with pytest.raises(StartInterrupted):
        await runtime.start()
    assert runtime.engine is None and runtime.bus is None


async def test_there_is_nothing_to_interrupt_once_up() -> None:
    runtime = Runtime(Settings(bus=BusConfig(journal="off")), roles=frozenset({Role.DETECTOR}))
    await runtime.start()
    try:
        assert not runtime.interrupt_start()
        assert not runtime.start_interrupted
    finally:
        await runtime.stop()


async def test_a_cancel_from_outside_is_still_a_cancel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrating = asyncio.Event()

    async def hangs(engine: object) -> None:
        migrating.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(runtime_module, "upgrade_database", hangs)
    runtime = Runtime(sqlite_settings(tmp_path), classifier=FakeClassifier(), migrate=True)
    starting = asyncio.create_task(runtime.start())
    await asyncio.wait_for(migrating.wait(), GUARD)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert not runtime.start_interrupted


def scorer_runtime(stop_timeout: float) -> Runtime:
    settings = Settings(
        bus=BusConfig(journal="off", stop_timeout=stop_timeout),
        scorer=ScorerConfig(classifier=ClassifierConfig(process=True)),
    )
    return Runtime(settings, roles=frozenset({Role.SCORER}))


async def test_a_model_loading_in_its_thread_is_waited_for_and_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The classifier's load (its child process) went on in its thread after the cancel:
    its result, and the child, were left behind."""
    load = BlockedLoad()
    monkeypatch.setattr(runtime_module, "load_classifier", load)
    runtime = scorer_runtime(stop_timeout=GUARD)
    starting = asyncio.create_task(runtime.start())
    await until(load.began.is_set)
    assert runtime.interrupt_start()
    await asyncio.sleep(0)  # (the cleanup may begin its wait: either way, the same end)
    assert not starting.done()
    load.release.set()
    with pytest.raises(StartInterrupted):
        await asyncio.wait_for(starting, GUARD)
    assert load.loaded.closed.is_set()  # closed before start() returned
    assert runtime.classifier is None


async def test_a_model_load_past_the_stop_timeout_is_left_to_close_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    load = BlockedLoad()
    monkeypatch.setattr(runtime_module, "load_classifier", load)
    runtime = scorer_runtime(stop_timeout=0.05)
    starting = asyncio.create_task(runtime.start())
    await until(load.began.is_set)
    assert runtime.interrupt_start()
    try:
        with pytest.raises(StartInterrupted):
            await asyncio.wait_for(starting, GUARD)
        assert not load.loaded.closed.is_set()  # it is still loading
    finally:
        load.release.set()
    assert await asyncio.to_thread(load.loaded.closed.wait, GUARD)  # closed by its thread


def test_the_stop_budget_fits_the_documented_grace_period() -> None:
    budget = stop_budget(BusConfig().stop_timeout)
    assert budget.http == 15
    assert budget.drain + budget.bus == pytest.approx(budget.stop_timeout)
    assert budget.worst_case <= 45  # terminationGracePeriodSeconds, stop_grace_period
    assert stop_budget(0.3).http == 1  # uvicorn's graceful shutdown: whole seconds


async def test_the_embedded_drain_and_bus_stop_share_the_stop_timeout(tmp_path: Path) -> None:
    """The drain of the in-process bus had 30 s of its own, then the bus's stop 15 s more:
    with the 15 s of HTTP shutdown before them, a SIGTERM took up to 60 s, past the 45 s
    grace period."""
    runtime = Runtime(
        sqlite_settings(tmp_path, stop_timeout=0.3), classifier=FakeClassifier(), migrate=True
    )
    assert runtime.roles == ALL_ROLES
    await runtime.start()
    assert isinstance(runtime.bus, MemoryBus)

    async def never_drained() -> None:  # (stages that keep failing: the queue stays)
        await asyncio.Event().wait()

    runtime.bus.join = never_drained  # type: ignore[method-assign]
    await asyncio.wait_for(runtime.stop(), 10.0)  # was: 30 s of drain alone
    assert runtime.bus.stop_timeout == pytest.approx(0.1)  # what the drain left, or its share
