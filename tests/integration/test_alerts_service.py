"""AlertService on the memory bus: signals in, alerts out; tick; scheduler start/stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts.config import AlertsConfig
from alerts.models import Delivery, Incident
from alerts.service import AlertService, TickReport
from core.bus.memory import MemoryBus
from core.clock import ManualClock
from core.events import TOPIC_SIGNALS, Signal
from core.metrics import Metrics
from tests.support import tier_signal

Sessions = async_sessionmaker[AsyncSession]


def signal(clock: ManualClock, sid: str = "sig-1", tier: int = 3) -> Signal:
    return tier_signal(clock.now(), signal_id=sid, story_id="story-1", tier=tier)


def config(**overrides: Any) -> AlertsConfig:
    hook = {"type": "webhook", "secret": "signing-secret-0123456789"}
    data: dict[str, Any] = {
        "channels": {
            "pr": {**hook, "url": "https://hooks.example/pr"},
            "legal": {**hook, "url": "https://hooks.example/legal"},
            "oncall": {**hook, "url": "https://hooks.example/oncall"},
            "log": {"type": "console"},
        },
        "people": {"olga": {"channels": ["oncall"]}},
        "teams": {
            "customer_service": {"channels": ["log"]},
            "pr": {
                "channels": ["pr"],
                "rota": {"start": "2026-01-01T09:00:00+00:00", "people": ["olga"]},
            },
            "legal": {"channels": ["legal"]},
        },
        "routes": {1: ["customer_service"], 2: ["pr"], 3: ["pr", "legal"]},
        "escalation_policies": {
            "standard": {"steps": [{"after": "PT10M", "notify": "on_call"}], "repeat": 4}
        },
        "escalation": {1: "standard", 2: "standard", 3: "standard"},
        "sla": {},
        "playbooks": {},  # task reminders: tests/integration/test_incident_workflow.py
    }
    data.update(overrides)
    return AlertsConfig.model_validate(data)


class Recorder:
    def __init__(self) -> None:
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path.strip("/"))
        return httpx.Response(200)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def http(recorder: Recorder) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as client:
        yield client


@pytest.fixture
async def bus(metrics: Metrics) -> AsyncIterator[MemoryBus]:
    bus = MemoryBus(metrics=metrics)
    yield bus
    await bus.stop()


async def count(sessions: Sessions, model: type[Any]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_signal_on_the_bus_is_alerted_once_even_when_redelivered(
    bus: MemoryBus,
    sessions: Sessions,
    http: httpx.AsyncClient,
    recorder: Recorder,
    clock: ManualClock,
    metrics: Metrics,
) -> None:
    service = AlertService(bus, sessions, config(), http, clock, metrics)
    service.register()
    await bus.start()
    await bus.publish(TOPIC_SIGNALS, signal(clock), key="story-1")
    await bus.join()
    await service.sent()
    # deliver_on_signal: the alerts went out without waiting for a tick
    assert sorted(recorder.paths) == ["legal", "pr"]
    await bus.publish(TOPIC_SIGNALS, signal(clock), key="story-1")  # redelivery
    await bus.join()
    await service.sent()
    assert sorted(recorder.paths) == ["legal", "pr"]
    assert await count(sessions, Incident) == 1 and await count(sessions, Delivery) == 2
    assert bus.dead_letters == []


async def test_without_deliver_on_signal_the_tick_sends(
    bus: MemoryBus,
    sessions: Sessions,
    http: httpx.AsyncClient,
    recorder: Recorder,
    clock: ManualClock,
    metrics: Metrics,
) -> None:
    service = AlertService(bus, sessions, config(deliver_on_signal=False), http, clock, metrics)
    service.register()
    await bus.start()
    await bus.publish(TOPIC_SIGNALS, signal(clock), key="story-1")
    await bus.join()
    assert recorder.paths == []
    assert await service.tick() == TickReport(attempted=2, escalated=0)
    assert sorted(recorder.paths) == ["legal", "pr"]


async def test_tick_escalates_and_delivers_the_escalation_in_the_same_round(
    bus: MemoryBus,
    sessions: Sessions,
    http: httpx.AsyncClient,
    recorder: Recorder,
    clock: ManualClock,
    metrics: Metrics,
) -> None:
    service = AlertService(bus, sessions, config(), http, clock, metrics)
    await service.handle_signals([signal(clock)])
    await service.sent()
    assert await service.tick() == TickReport(attempted=0, escalated=0)
    clock.advance(timedelta(minutes=10).total_seconds())
    assert await service.tick() == TickReport(attempted=2, escalated=1)
    # pr's on-call person on her channel; legal has nobody on call: its own channel again
    assert sorted(recorder.paths) == ["legal", "legal", "oncall", "pr"]
    sample = metrics.registry.get_sample_value
    assert sample("crisiswatch_incidents_open", {"tier": "3", "drill": "false"}) == 1
    assert sample("crisiswatch_incidents_open", {"tier": "1", "drill": "false"}) == 0
    assert sample("crisiswatch_outbox_pending") == 0


async def test_a_delivery_failure_after_a_signal_does_not_fail_the_signal(
    bus: MemoryBus,
    sessions: Sessions,
    clock: ManualClock,
    metrics: Metrics,
) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(down)) as client:
        service = AlertService(bus, sessions, config(), client, clock, metrics)
        service.register()
        await bus.start()
        await bus.publish(TOPIC_SIGNALS, signal(clock), key="story-1")
        await bus.join()
        await service.sent()
    assert bus.dead_letters == []
    async with sessions() as session:
        rows = list(await session.scalars(select(Delivery)))
    assert {(d.status, d.attempts) for d in rows} == {("pending", 1)}


async def test_the_default_config_alerts_to_the_console(
    bus: MemoryBus,
    sessions: Sessions,
    http: httpx.AsyncClient,
    clock: ManualClock,
    metrics: Metrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("WARNING", logger="alerts.console")
    service = AlertService(bus, sessions, AlertsConfig(), http, clock, metrics)
    await service.handle_signals([signal(clock)])
    await service.sent()
    alerts = [r for r in caplog.records if r.name == "alerts.console"]
    assert sorted(r.args[0] for r in alerts) == [  # type: ignore[index]
        "executives-console",
        "legal-console",
        "pr-console",
    ]
    assert "TIER 3 ALERT" in alerts[0].getMessage()


async def test_the_scheduler_runs_the_tick(
    bus: MemoryBus,
    sessions: Sessions,
    http: httpx.AsyncClient,
    clock: ManualClock,
    metrics: Metrics,
) -> None:
    service = AlertService(
        bus, sessions, config(tick_interval=timedelta(milliseconds=10)), http, clock, metrics
    )
    ticked = asyncio.Event()

    async def tick() -> TickReport:
        ticked.set()
        return TickReport(0, 0)

    service.tick = tick  # type: ignore[method-assign]
    await service.start()
    try:
        await asyncio.wait_for(ticked.wait(), timeout=10)
    finally:
        await service.stop()


async def test_stop_lets_the_running_tick_finish(
    bus: MemoryBus,
    sessions: Sessions,
    http: httpx.AsyncClient,
    clock: ManualClock,
    metrics: Metrics,
) -> None:
    service = AlertService(bus, sessions, config(), http, clock, metrics)
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[bool] = []

    async def slow_tick() -> TickReport:
        started.set()
        await release.wait()
        finished.append(True)
        return TickReport(0, 0)

    service.tick = slow_tick  # type: ignore[method-assign]
    await service.start()
    job = asyncio.create_task(service._scheduled_tick())  # as the scheduler would run it
    await started.wait()
    stopping = asyncio.create_task(service.stop())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not stopping.done()
    job.cancel()  # APScheduler cancels its running jobs on shutdown; the tick still finishes
    release.set()
    await stopping
    await asyncio.gather(job, return_exceptions=True)
    assert finished == [True]
    await service._scheduled_tick()  # after stop: no new tick
    assert finished == [True]


async def test_a_signal_that_cannot_be_stored_is_dead_lettered(
    bus: MemoryBus,
    sessions: Sessions,
    http: httpx.AsyncClient,
    recorder: Recorder,
    clock: ManualClock,
    metrics: Metrics,
) -> None:
    service = AlertService(bus, sessions, config(), http, clock, metrics)
    service.register()
    await bus.start()
    bad = signal(clock, sid="bad").model_copy(update={"story_id": "s" * 300})
    await bus.publish(TOPIC_SIGNALS, bad, key="x")
    await bus.publish(TOPIC_SIGNALS, signal(clock, sid="good"), key="story-1")
    await bus.join()
    assert [d.reason for d in bus.dead_letters] == [
        "permanent: signal 'bad': story_id must be 1-255 characters, got 300"
    ]
    assert await count(sessions, Incident) == 1
    # the good signal's delivery task must not outlive the test (it held a connection
    # while the fixtures disposed the engine: tests/integration/test_db_dispose.py)
    await service.stop()
