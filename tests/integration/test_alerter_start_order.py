"""The alerter resumes before the bus hands over Signals (review of the Kafka mode,
finding 2).

``Runtime`` started the bus before ``alerter.start()``. After a restart with a backlog of
Signals on the topic, the bus hands them over as soon as it starts: their alerts could go
out before ``resume()`` had counted what was sent before the restart against the
channels' rate limits. Now the alerter starts (and resumes) first; the bus is stopped
before it, as before.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.service import AlertService
from api.runtime import ALL_ROLES, Role, Runtime
from api.settings import Settings
from core.bus.memory import MemoryBus
from core.settings import DatabaseConfig
from tests.fakes import FakeClassifier


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The order in which the alerter resumes and the bus starts and stops."""
    seen: list[str] = []
    resume, start, stop = AlertService.resume, MemoryBus.start, MemoryBus.stop
    alerter_stop = AlertService.stop

    async def resumed(self: AlertService) -> None:
        await resume(self)
        seen.append("alerter resumed")

    async def started(self: MemoryBus) -> None:
        seen.append("bus starts")  # from here, Signals are handed over
        await start(self)

    async def stopped(self: MemoryBus) -> None:
        seen.append("bus stops")
        await stop(self)

    async def alerter_stopped(self: AlertService) -> None:
        seen.append("alerter stops")
        await alerter_stop(self)

    monkeypatch.setattr(AlertService, "resume", resumed)
    monkeypatch.setattr(MemoryBus, "start", started)
    monkeypatch.setattr(MemoryBus, "stop", stopped)
    monkeypatch.setattr(AlertService, "stop", alerter_stopped)
    return seen


@pytest.mark.parametrize("roles", [frozenset({Role.ALERTER}), ALL_ROLES], ids=["alerter", "all"])
async def test_the_alerter_resumes_before_the_bus_starts(
    tmp_path: Path, steps: list[str], roles: frozenset[Role]
) -> None:
    settings = Settings(
        database=DatabaseConfig.model_validate({"url": f"sqlite+aiosqlite:///{tmp_path}/a.db"})
    )
    runtime = Runtime(settings, roles=roles, migrate=True, classifier=FakeClassifier())
    await runtime.start()
    try:
        assert runtime.ready
        assert steps == ["alerter resumed", "bus starts"]  # before: the bus first
    finally:
        await runtime.stop()
    assert steps[2:] == ["bus stops", "alerter stops"]  # the stop order is unchanged
