"""One incident that raises in an SLA check, a task reminder or a release does not hold up
the others' (each is rolled back alone, logged, counted in
``crisiswatch_alert_item_errors_total{step}`` and retried after a backoff), and the
metrics of the others still count once the round commits (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts import incidents as incidents_module
from alerts import silences
from alerts import sla as sla_module
from alerts.config import AlertsConfig, Matchers
from alerts.models import Delivery, Incident, IncidentEvent, Silence
from alerts.service import AlertService
from alerts.workflow import tasks as tasks_module
from alerts.workflow.models import IncidentTask
from core.bus.memory import MemoryBus
from core.clock import ManualClock
from core.db import unit_of_work
from core.metrics import Metrics
from tests.support import tier_signal

Sessions = async_sessionmaker[AsyncSession]
HOOK = {"type": "webhook", "secret": "signing-secret-0123456789"}
HOLDING = {
    "key": "holding",
    "title": "Draft a holding statement",
    "team": "cs",
    "due": 600,
    "remind_before": [300],
}


def config(*, sla_minutes: int | None = None, playbook: bool = False) -> AlertsConfig:
    """Tier 2: watch acme goes to pr, every other watch to cs; optionally an SLA and a
    playbook task due 10 min after the alert (reminded 5 min before and at the due time)."""
    return AlertsConfig.model_validate(
        {
            "channels": {n: {**HOOK, "url": f"https://hooks.example/{n}"} for n in ("pr", "cs")},
            "teams": {"pr": {"channels": ["pr"]}, "cs": {"channels": ["cs"]}},
            "routes": {
                "teams": ["cs"],
                "routes": [{"match": {"watch": ["acme"]}, "teams": ["pr"]}],
            },
            "sla": {2: {"target": sla_minutes * 60, "met_by": "acknowledged"}}
            if sla_minutes is not None
            else {},
            "playbooks": {2: [HOLDING]} if playbook else {},
            "delivery": {"jitter": 0},
        }
    )


class World:
    def __init__(
        self, sessions: Sessions, clock: ManualClock, http: httpx.AsyncClient, cfg: AlertsConfig
    ) -> None:
        self.sessions, self.clock = sessions, clock
        self.start = clock.now()
        self.metrics = Metrics()
        self.calls: list[tuple[datetime, str]] = []
        self.service = AlertService(
            MemoryBus(metrics=self.metrics), sessions, cfg, http, clock, self.metrics
        )

    async def open(self, watch: str, story: str, tier: int = 2) -> int:
        now = self.clock.now()
        signal = tier_signal(now, signal_id=story, story_id=story, tier=tier, watch=watch)
        await self.service.handle_signals([signal])
        await self.service.sent()
        async with self.sessions() as session:
            found = await session.scalar(select(Incident.id).where(Incident.story_id == story))
        assert found is not None
        return int(found)

    async def at(self, minutes: float) -> tuple[str, ...]:
        """Tick at ``minutes`` after the start; the tick steps that failed."""
        self.clock.set(self.start + timedelta(minutes=minutes))
        return (await self.service.tick()).failed

    async def events(self, kind: str) -> list[int]:
        """The incidents of the timeline events of ``kind``, in order."""
        async with self.sessions() as session:
            return list(
                await session.scalars(
                    select(IncidentEvent.incident_id)
                    .where(IncidentEvent.kind == kind)
                    .order_by(IncidentEvent.id)
                )
            )

    async def incident(self, incident_id: int) -> Incident:
        async with self.sessions() as session:
            found = await session.get(Incident, incident_id)
            assert found is not None
            return found

    async def task(self, incident_id: int) -> IncidentTask:
        async with self.sessions() as session:
            found = await session.scalar(
                select(IncidentTask).where(IncidentTask.incident_id == incident_id)
            )
            assert found is not None
            return found

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def item_errors(self, step: str) -> float:
        return self.sample("crisiswatch_alert_item_errors_total", step=step)

    def sent_since(self, since: datetime) -> list[str]:
        return sorted(path for at, path in self.calls if at >= since)


async def make_world(
    sessions: Sessions, clock: ManualClock, cfg: AlertsConfig
) -> AsyncIterator[World]:
    holder: list[World] = []

    def handler(request: httpx.Request) -> httpx.Response:
        holder[0].calls.append((holder[0].clock.now(), request.url.path.strip("/")))
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        world = World(sessions, clock, http, cfg)
        holder.append(world)
        try:
            yield world
        finally:
            world.service.jobs.close()


@pytest.fixture
async def sla_world(any_sessions: Sessions, clock: ManualClock) -> AsyncIterator[World]:
    async for world in make_world(any_sessions, clock, config(sla_minutes=5)):
        yield world


@pytest.fixture
async def task_world(any_sessions: Sessions, clock: ManualClock) -> AsyncIterator[World]:
    async for world in make_world(any_sessions, clock, config(playbook=True)):
        yield world


@pytest.fixture
async def world(any_sessions: Sessions, clock: ManualClock) -> AsyncIterator[World]:
    async for world in make_world(any_sessions, clock, config()):
        yield world


async def test_an_sla_check_that_fails_for_one_incident_does_not_stall_the_others(
    sla_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = sla_world
    good = await world.open("beta", "b")  # its deadline comes first: checked first
    world.clock.set(world.start + timedelta(seconds=1))
    bad = await world.open("acme", "a")
    real = sla_module.add_event
    broken = [True]

    def add_event(session: AsyncSession, incident_id: int, kind: str, *a: Any, **k: Any) -> Any:
        if incident_id == bad and broken[0]:
            raise RuntimeError("a bad row")  # after its compare-and-set: rolled back too
        return real(session, incident_id, kind, *a, **k)

    monkeypatch.setattr(sla_module, "add_event", add_event)

    assert await world.at(3) == (), "no tick step failed: the bad incident is its own problem"
    assert await world.events("sla_warning") == [good]
    assert world.item_errors("check_slas") == 1
    assert (await world.incident(bad)).sla_warned == 0, "its half-done check was rolled back"
    assert world.sample("crisiswatch_sla_warnings_total", tier="2", drill="false") == 1

    await world.at(3.25)  # before its retry (30 s): not tried, not first in line
    assert world.item_errors("check_slas") == 1
    since = world.clock.now()
    assert await world.at(5.1) == ()  # both deadlines missed: the good one escalates
    assert await world.events("sla_breached") == [good]
    assert await world.events("escalated") == [good]
    assert world.sent_since(since) == ["cs"]
    assert world.item_errors("check_slas") == 2, "retried after its backoff, failed again"

    broken[0] = False  # repaired: its next retry (60 s later) records its breach
    await world.at(5.75)
    assert world.item_errors("check_slas") == 2
    await world.at(6.2)
    assert await world.events("sla_breached") == [good, bad]
    assert (await world.events("escalated"))[-1] == bad
    assert world.sample("crisiswatch_sla_breaches_total", tier="2", drill="false") == 2
    assert world.item_errors("check_slas") == 2


async def test_a_task_reminder_that_fails_does_not_stall_the_others(task_world: World) -> None:
    world = task_world
    good = await world.open("beta", "b")
    bad = await world.open("acme", "a")  # its task comes second in line
    first = world.start + timedelta(minutes=5)
    assert (await world.task(bad)).next_reminder_at == first
    async with unit_of_work(world.sessions) as session:  # a corrupt row
        await session.execute(
            update(IncidentTask).where(IncidentTask.incident_id == bad).values(reminders=["x"])
        )

    since = first
    assert await world.at(5) == (), "no tick step failed: the bad task is its own problem"
    assert await world.events("task_reminder") == [good]
    assert world.sent_since(since) == ["cs"]
    assert world.item_errors("remind_tasks") == 1
    assert world.sample("crisiswatch_task_reminders_total", tier="2", kind="before") == 1
    task = await world.task(bad)  # pushed back: not first in line at every tick, not lost
    assert task.reminders_sent == 0
    assert task.next_reminder_at == world.clock.now() + timedelta(seconds=30)

    await world.at(5.25)
    assert world.item_errors("remind_tasks") == 1
    await world.at(5.5)  # its retry fails again: the next one waits twice as long
    assert world.item_errors("remind_tasks") == 2
    assert (await world.task(bad)).next_reminder_at == world.clock.now() + timedelta(seconds=60)

    async with unit_of_work(world.sessions) as session:  # repaired
        await session.execute(
            update(IncidentTask)
            .where(IncidentTask.incident_id == bad)
            .values(reminders=[300.0, 0.0])
        )
    await world.at(6.5)
    assert await world.events("task_reminder") == [good, bad]
    task = await world.task(bad)
    assert task.reminders_sent == 1
    assert task.next_reminder_at == world.start + timedelta(minutes=10)
    assert world.item_errors("remind_tasks") == 2


async def test_one_incident_that_fails_to_be_released_does_not_hold_up_the_others(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with unit_of_work(world.sessions) as session:
        silence = silences.create(
            session,
            matchers=Matchers(watch=["acme", "beta"]),
            ends_at=world.start + timedelta(minutes=5),
            author="maria",
            reason="known story",
            now=world.clock.now(),
        )
        await session.flush()
        silence_id = silence.id
    good = await world.open("beta", "b")
    bad = await world.open("acme", "a")  # released after the good one
    assert world.sent_since(world.start) == []
    real = incidents_module._alert_again
    broken = [True]

    async def alert_again(session: AsyncSession, incident: Incident, *a: Any, **k: Any) -> bool:
        sent = await real(session, incident, *a, **k)
        if incident.id == bad and broken[0]:
            raise RuntimeError("a bad row")  # after its writes: they are rolled back
        return sent

    monkeypatch.setattr(incidents_module, "_alert_again", alert_again)

    since = world.clock.now()
    assert await world.at(6) == ()
    assert world.sent_since(since) == ["cs"], "the good incident was alerted"
    assert await world.events("unsilenced") == [good]
    assert world.item_errors("release_silences") == 1
    assert world.sample("crisiswatch_alerts_unsilenced_total", tier="2") == 1
    async with world.sessions() as session:
        queued = await session.scalar(select(Delivery.id).where(Delivery.incident_id == bad))
        released_at = await session.scalar(
            select(Silence.released_at).where(Silence.id == silence_id)
        )
    assert queued is None, "nothing of its failed release was kept"
    assert released_at is None, "the silence stays to release until the bad incident is"

    await world.at(6.25)  # backoff: not tried at every tick
    assert world.item_errors("release_silences") == 1
    broken[0] = False
    since = world.clock.now()
    await world.at(6.6)
    assert world.sent_since(since) == ["pr"], "released once it works, the other not twice"
    assert await world.events("unsilenced") == [good, bad]
    assert world.item_errors("release_silences") == 1
    async with world.sessions() as session:
        released_at = await session.scalar(
            select(Silence.released_at).where(Silence.id == silence_id)
        )
    assert released_at == world.clock.now()
    assert world.sample("crisiswatch_alerts_unsilenced_total", tier="2") == 2


async def test_the_reminders_of_one_incident_that_fail_to_be_planned_do_not_stall_the_others(
    task_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tasks created while their incident was muted are planned once it is acknowledged
    (``tasks.plan_acknowledged``, before the reminders): one incident that fails there is
    its own problem too."""
    world = task_world
    async with unit_of_work(world.sessions) as session:
        silences.create(
            session,
            matchers=Matchers(watch=["acme", "beta"]),
            ends_at=world.start + timedelta(hours=1),
            author="maria",
            reason="known story",
            now=world.clock.now(),
        )
    good = await world.open("beta", "b")
    bad = await world.open("acme", "a")
    for incident_id in (good, bad):
        async with unit_of_work(world.sessions) as session:
            await incidents_module.acknowledge(session, incident_id, "maria", world.clock)
    real = tasks_module.plan_muted

    async def plan_muted(session: AsyncSession, incident: Incident, *a: Any) -> Any:
        planned = await real(session, incident, *a)
        if incident.id == bad:
            raise RuntimeError("a bad row")  # after its writes: they are rolled back
        return planned

    monkeypatch.setattr(tasks_module, "plan_muted", plan_muted)
    assert await world.at(1) == (), "no tick step failed: the bad incident is its own problem"
    assert (await world.task(good)).next_reminder_at == world.start + timedelta(minutes=5)
    assert (await world.task(bad)).next_reminder_at is None
    assert world.item_errors("remind_tasks") == 1
    await world.at(1.25)  # backoff: not tried at every tick
    assert world.item_errors("remind_tasks") == 1

    monkeypatch.setattr(tasks_module, "plan_muted", real)
    await world.at(1.6)
    assert (await world.task(bad)).next_reminder_at == world.start + timedelta(minutes=5)
    assert world.item_errors("remind_tasks") == 1
    await world.at(5)
    assert sorted(await world.events("task_reminder")) == sorted([good, bad])


async def test_one_incident_that_fails_to_be_uninhibited_does_not_hold_up_the_others(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    top = await world.open("acme", "top", tier=3)
    good = await world.open("acme", "b")  # both inhibited by the tier-3 incident
    bad = await world.open("acme", "a")
    assert await world.events("inhibited") == [good, bad]
    real = incidents_module._alert_again
    broken = [True]

    async def alert_again(session: AsyncSession, incident: Incident, *a: Any, **k: Any) -> bool:
        sent = await real(session, incident, *a, **k)
        if incident.id == bad and broken[0]:
            raise RuntimeError("a bad row")
        return sent

    monkeypatch.setattr(incidents_module, "_alert_again", alert_again)
    async with unit_of_work(world.sessions) as session:
        await incidents_module.resolve(session, top, "maria", world.clock)

    assert await world.at(1) == ()
    assert await world.events("uninhibited") == [good]
    assert world.item_errors("release_inhibitions") == 1
    assert (await world.incident(top)).inhibition_released_at is None, "released again later"
    await world.at(1.25)
    assert world.item_errors("release_inhibitions") == 1
    broken[0] = False
    await world.at(1.6)
    assert await world.events("uninhibited") == [good, bad]
    assert (await world.incident(top)).inhibition_released_at == world.clock.now()
    assert world.item_errors("release_inhibitions") == 1
