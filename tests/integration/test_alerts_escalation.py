"""Escalation timelines of every tier on a ManualClock, through the AlertService and its
persistent APScheduler job store: each step at its time, an ack at any step stops it, a
late timer does nothing, and a restart in the middle resumes without losing or repeating
a step (SQLite, and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts import incidents as svc
from alerts.config import AlertsConfig
from alerts.escalation import escalate_one
from alerts.models import Delivery, IncidentEvent
from alerts.service import AlertService
from core.bus.memory import MemoryBus
from core.clock import ManualClock
from core.db import unit_of_work
from core.events import Signal
from core.metrics import Metrics
from tests.support import tier_signal

Sessions = async_sessionmaker[AsyncSession]
HOOKS = ("cs", "pr", "legal", "exec", "olga", "lena", "ken", "ceo")
MIN = 60.0

# tier -> [(minutes after the alert, channels that get a message then)]
TIMELINES: dict[int, list[tuple[float, list[str]]]] = {
    # customer service; its on-call person after 30 min; the PR lead after 60
    1: [(0, ["cs"]), (30, ["olga"]), (60, ["lena"])],
    # PR; on call after 10; the PR lead and legal counsel after 20
    2: [(0, ["pr"]), (10, ["olga"]), (20, ["ken", "lena"])],
    # PR, legal, executives; on call after 5; the CEO and legal's on-call after 10; twice
    3: [
        (0, ["exec", "legal", "pr"]),
        (5, ["exec", "ken", "olga"]),
        (10, ["ceo", "ken"]),
        (15, ["exec", "ken", "olga"]),
        (20, ["ceo", "ken"]),
    ],
}


def config(remind_minutes: int = 0) -> AlertsConfig:
    hook = {"type": "webhook", "secret": "signing-secret-0123456789"}
    rota = {"start": "2026-01-01T09:00:00+08:00", "people": ["olga"]}

    def policy(after: int, last: dict[str, Any], repeat: int = 1) -> dict[str, Any]:
        return {
            "steps": [
                {"after": after * 60, "notify": "on_call"},
                {"after": after * 60, "notify": last},
            ],
            "repeat": repeat,
        }

    return AlertsConfig.model_validate(
        {
            "channels": {name: {**hook, "url": f"https://hooks.example/{name}"} for name in HOOKS},
            "people": {p: {"channels": [p]} for p in ("olga", "lena", "ken", "ceo")},
            "teams": {
                "customer_service": {"channels": ["cs"], "rota": rota},
                "pr": {"channels": ["pr"], "rota": rota},
                "legal": {"channels": ["legal"], "rota": {**rota, "people": ["ken"]}},
                "executives": {"channels": ["exec"]},
            },
            "routes": {
                "repeat_interval": f"PT{remind_minutes}M",
                "routes": [
                    {"match": {"tier": [1]}, "teams": ["customer_service"]},
                    {"match": {"tier": [2]}, "teams": ["pr"]},
                    {"match": {"tier": [3]}, "teams": ["pr", "legal", "executives"]},
                ],
            },
            "escalation_policies": {
                "tier-1": policy(30, {"people": ["lena"]}),
                "tier-2": policy(10, {"people": ["lena", "ken"]}),
                "tier-3": policy(5, {"people": ["ceo"], "on_call_of": ["legal"]}, repeat=2),
            },
            "escalation": {1: "tier-1", 2: "tier-2", 3: "tier-3"},
            "sla": {},
            "playbooks": {},  # only escalation messages here (tasks: test_incident_workflow)
            "delivery": {"jitter": 0},
        }
    )


def signal(clock: ManualClock, tier: int) -> Signal:
    return tier_signal(clock.now(), signal_id=f"sig-{tier}", story_id=f"story-{tier}", tier=tier)


class World:
    def __init__(
        self, sessions: Sessions, clock: ManualClock, http: httpx.AsyncClient, remind: int = 0
    ) -> None:
        self.sessions, self.clock, self.http = sessions, clock, http
        self.config = config(remind)
        self.metrics = Metrics()
        self.calls: list[tuple[float, str]] = []
        self.start = clock.now()
        self.service = self.new_service()

    def new_service(self) -> AlertService:
        return AlertService(
            MemoryBus(metrics=self.metrics),
            self.sessions,
            self.config,
            self.http,
            self.clock,
            self.metrics,
        )

    def minute(self) -> float:
        return (self.clock.now() - self.start).total_seconds() / MIN

    async def open(self, tier: int) -> int:
        await self.service.handle_signals([signal(self.clock, tier)])
        await self.service.sent()
        async with self.sessions() as session:
            return int(await session.scalar(select(svc.Incident.id)) or 0)

    async def at(self, minute: float) -> None:
        self.clock.set(self.start + timedelta(minutes=minute))
        await self.service.tick()

    def sent_at(self, minute: float) -> list[str]:
        return sorted(ch for m, ch in self.calls if m == minute)

    async def escalations(self) -> list[IncidentEvent]:
        async with self.sessions() as session:
            return list(
                await session.scalars(
                    select(IncidentEvent).where(IncidentEvent.kind == "escalated")
                )
            )

    async def ack(self, incident_id: int) -> None:
        async with unit_of_work(self.sessions) as session:
            await svc.acknowledge(session, incident_id, "maria", self.clock)


async def make_world(
    sessions: Sessions, clock: ManualClock, remind: int = 0
) -> AsyncIterator[World]:
    holder: list[World] = []

    def handler(request: httpx.Request) -> httpx.Response:
        holder[0].calls.append((holder[0].minute(), request.url.path.strip("/")))
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        world = World(sessions, clock, http, remind)
        holder.append(world)
        try:
            yield world
        finally:
            world.service.jobs.close()


@pytest.fixture
async def world(sessions: Sessions, clock: ManualClock) -> AsyncIterator[World]:
    async for w in make_world(sessions, clock):
        yield w


@pytest.mark.parametrize("tier", [1, 2, 3])
async def test_the_full_timeline_of_each_tier(world: World, tier: int) -> None:
    await world.open(tier)
    timeline = TIMELINES[tier]
    for minute, channels in timeline:
        if minute:
            await world.at(minute - 0.5)  # not a moment early
            assert world.sent_at(minute - 0.5) == []
            await world.at(minute)
        assert world.sent_at(minute) == channels, f"tier {tier} at {minute} min"
    await world.at(timeline[-1][0] + 600)  # the policy is done: nothing more, ever
    assert world.sent_at(timeline[-1][0] + 600) == []
    assert [e.detail["level"] for e in await world.escalations()] == list(range(1, len(timeline)))
    assert await world.service.jobs.all() == []


@pytest.mark.parametrize(
    ("tier", "step"), [(t, s) for t, line in TIMELINES.items() for s in range(len(line) - 1)]
)
async def test_an_ack_at_any_step_stops_the_timeline(world: World, tier: int, step: int) -> None:
    incident = await world.open(tier)
    timeline = TIMELINES[tier]
    for minute, _ in timeline[1 : step + 1]:
        await world.at(minute)
    acked_at = timeline[step][0] + 1
    await world.at(acked_at)
    await world.ack(incident)
    await world.at(acked_at + 0.5)  # the ack is mirrored to the channels that got alerts
    mirrored = world.sent_at(acked_at + 0.5)
    assert mirrored == sorted({ch for _, chs in timeline[: step + 1] for ch in chs})
    for minute, _ in timeline[step + 1 :]:
        await world.at(minute + 1)
        assert world.sent_at(minute + 1) == [], f"tier {tier}: escalated after the ack"
    assert len(await world.escalations()) == step
    assert await world.service.jobs.all() == [], "the late timer ran, did nothing, was removed"


async def test_a_late_timer_after_the_ack_does_nothing(world: World) -> None:
    incident = await world.open(3)
    (job,) = await world.service.jobs.all()
    assert job.run_at == world.start + timedelta(minutes=5)
    await world.ack(incident)
    # the stored job still fires at its time...
    world.clock.set(job.run_at + timedelta(seconds=1))
    assert [j.id for j in await world.service.jobs.due(world.clock.now())] == [job.id]
    report = await world.service.tick()
    # ...and does nothing: its token was rotated by the ack
    assert report.escalated == 0 and await world.escalations() == []
    assert await world.service.jobs.all() == []


async def resume_after_restart(world: World) -> None:
    incident = await world.open(3)
    await world.at(5)
    assert world.sent_at(5) == ["exec", "ken", "olga"]
    # the process stops; the next step is in the job store, not in memory
    world.service.jobs.close()
    world.service = world.new_service()
    (job,) = await world.service.jobs.all()
    assert (job.incident_id, job.run_at) == (incident, world.start + timedelta(minutes=10))
    # down for a while: the restart comes after the step was due; it runs once
    await world.at(12)
    assert world.sent_at(12) == ["ceo", "ken"]
    await world.at(12.5)
    assert world.sent_at(12.5) == []
    # a crash between a step's commit and the job's removal: the job runs again, no-op
    (job,) = await world.service.jobs.all()
    world.clock.set(job.run_at)
    assert await escalate_one(
        world.sessions, incident, job.token, world.config, world.clock, world.metrics
    )
    world.service.jobs.close()
    world.service = world.new_service()
    assert [j.id for j in await world.service.jobs.due(world.clock.now())] == [job.id]
    await world.at(world.minute() + 0.1)
    assert world.sent_at(world.minute()) == ["exec", "ken", "olga"], "sent once"
    assert [e.detail["level"] for e in await world.escalations()] == [1, 2, 3]
    async with world.sessions() as session:
        keys = list(await session.scalars(select(Delivery.dedupe_key)))
    assert len(keys) == len(set(keys))


async def test_a_restart_in_the_middle_resumes(world: World) -> None:
    await resume_after_restart(world)


@pytest.mark.postgres
async def test_a_restart_in_the_middle_resumes_on_postgres(
    pg_sessions: Sessions, clock: ManualClock
) -> None:
    async for world in make_world(pg_sessions, clock):
        await resume_after_restart(world)


async def test_after_the_last_step_the_teams_are_reminded_until_the_ack(
    sessions: Sessions, clock: ManualClock
) -> None:
    async for world in make_world(sessions, clock, remind=60):  # repeat_interval: 1 h
        incident = await world.open(2)
        for minute in (10, 20, 80, 140):
            await world.at(minute)
        assert [world.sent_at(m) for m in (10, 20, 80, 140)] == [
            ["olga"],
            ["ken", "lena"],
            ["pr"],  # the routed team, reminded
            ["pr"],
        ]
        last = (await world.escalations())[-1]
        assert last.detail["reminder"] is True and last.detail["level"] == 4
        await world.ack(incident)
        await world.at(141)  # the ack, mirrored to everyone who got an alert
        assert world.sent_at(141) == ["ken", "lena", "olga", "pr"]
        await world.at(300)
        assert world.sent_at(300) == []
