"""One incident's escalation step that fails does not hold up the others' (it is logged,
counted and retried with a backoff), nor does one release that fails hold up the other
releases; a silence created after an incident was alerted mutes its escalation until it
ends, and the escalation starts again then (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts import incidents as svc
from alerts import service as service_module
from alerts import silences
from alerts.config import AlertsConfig, Matchers
from alerts.models import CANCELLED, Delivery, Incident, IncidentEvent
from alerts.service import AlertService
from core.bus.memory import MemoryBus
from core.clock import ManualClock
from core.db import unit_of_work
from core.metrics import Metrics
from tests.support import tier_signal

Sessions = async_sessionmaker[AsyncSession]
HOOK = {"type": "webhook", "secret": "signing-secret-0123456789"}
ROTA = {"start": "2026-01-01T09:00:00+00:00", "people": ["olga"]}


def config(sla_minutes: int | None = None) -> AlertsConfig:
    """Tier 2: the routed team's channel, its on-call person (olga) after 10 min, the team
    again after 10 more, twice. Watch acme goes to pr, every other watch to cs."""
    return AlertsConfig.model_validate(
        {
            "channels": {n: {**HOOK, "url": f"https://hooks.example/{n}"} for n in HOOKS},
            "people": {"olga": {"channels": ["olga"]}},
            "teams": {
                "pr": {"channels": ["pr"], "rota": ROTA},
                "cs": {"channels": ["cs"], "rota": ROTA},
            },
            "routes": {
                "teams": ["cs"],
                "routes": [{"match": {"watch": ["acme"]}, "teams": ["pr"]}],
            },
            "sla": {2: {"target": sla_minutes * 60, "met_by": "acknowledged"}}
            if sla_minutes is not None
            else {},
            "playbooks": {},
            "delivery": {"jitter": 0},
        }
    )


HOOKS = ("pr", "cs", "olga")


class World:
    def __init__(self, sessions: Sessions, clock: ManualClock, http: httpx.AsyncClient) -> None:
        self.sessions, self.clock = sessions, clock
        self.start = clock.now()
        self.metrics = Metrics()
        self.calls: list[tuple[datetime, str]] = []
        self.http = http
        self.service = self.new_service(config())

    def new_service(self, cfg: AlertsConfig) -> AlertService:
        return AlertService(
            MemoryBus(metrics=self.metrics), self.sessions, cfg, self.http, self.clock, self.metrics
        )

    async def open(self, watch: str, story: str) -> int:
        signal = tier_signal(self.clock.now(), signal_id=story, story_id=story, tier=2, watch=watch)
        await self.service.handle_signals([signal])
        await self.service.sent()
        async with self.sessions() as session:
            found = await session.scalar(select(Incident.id).where(Incident.story_id == story))
        assert found is not None
        return int(found)

    async def at(self, minutes: float) -> service_module.TickReport:
        self.clock.set(self.start + timedelta(minutes=minutes))
        return await self.service.tick()

    async def levels(self) -> dict[int, list[int]]:
        async with self.sessions() as session:
            rows = await session.execute(
                select(IncidentEvent.incident_id, IncidentEvent.detail)
                .where(IncidentEvent.kind == "escalated")
                .order_by(IncidentEvent.id)
            )
            out: dict[int, list[int]] = {}
            for incident_id, detail in rows:
                out.setdefault(int(incident_id), []).append(int(detail["level"]))
            return out

    async def incident(self, incident_id: int) -> Incident:
        async with self.sessions() as session:
            found = await session.get(Incident, incident_id)
            assert found is not None
            return found

    async def set_policy(self, incident_id: int, policy: dict[str, Any] | None) -> None:
        async with unit_of_work(self.sessions) as session:
            await session.execute(
                update(Incident).where(Incident.id == incident_id).values(escalation_policy=policy)
            )

    def item_errors(self, step: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "crisiswatch_alert_item_errors_total", {"step": step}
        )
        return value or 0.0

    def sent_since(self, since: datetime) -> list[str]:
        return sorted(path for at, path in self.calls if at >= since)

    async def sent_for(self, incident_id: int, since: datetime) -> list[tuple[str, str]]:
        """(channel, reason) of the incident's deliveries sent at or after ``since``."""
        async with self.sessions() as session:
            rows = await session.execute(
                select(Delivery.channel, Delivery.reason).where(
                    Delivery.incident_id == incident_id, Delivery.sent_at >= since
                )
            )
            return sorted((str(c), str(r)) for c, r in rows)


async def make_world(sessions: Sessions, clock: ManualClock) -> AsyncIterator[World]:
    holder: list[World] = []

    def handler(request: httpx.Request) -> httpx.Response:
        holder[0].calls.append((holder[0].clock.now(), request.url.path.strip("/")))
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        world = World(sessions, clock, http)
        holder.append(world)
        try:
            yield world
        finally:
            world.service.jobs.close()


@pytest.fixture
async def world(any_sessions: Sessions, clock: ManualClock) -> AsyncIterator[World]:
    async for w in make_world(any_sessions, clock):
        yield w


async def test_a_step_that_fails_for_one_incident_does_not_stall_the_others(world: World) -> None:
    broken = await world.open("acme", "a")  # its step is first in line
    others = [await world.open("beta", "b"), await world.open("gamma", "c")]
    good_policy = (await world.incident(broken)).escalation_policy
    # a corrupt row: its escalation snapshot lost its steps (KeyError when the step runs)
    await world.set_policy(broken, {"name": "tier-2"})

    report = await world.at(10)
    assert report.failed == (), "no tick step failed: the bad incident is its own problem"
    assert await world.levels() == {other: [1] for other in others}
    assert world.item_errors("escalate") == 1
    # retried later, with a backoff: not first in line at every tick, not lost
    row = await world.incident(broken)
    assert row.next_escalation_at == world.clock.now() + timedelta(seconds=30)
    jobs = {job.incident_id: job.run_at for job in await world.service.jobs.all()}
    assert jobs[broken] == row.next_escalation_at

    await world.at(10.25)  # before the retry: not tried
    assert world.item_errors("escalate") == 1
    await world.at(10.5)  # the retry fails again: the next waits twice as long
    assert world.item_errors("escalate") == 2
    row = await world.incident(broken)
    assert row.next_escalation_at == world.clock.now() + timedelta(seconds=60)

    await world.set_policy(broken, good_policy)  # repaired: the next retry runs the step
    since = world.clock.now()
    await world.at(11.5)
    assert (await world.levels())[broken] == [1]
    assert world.sent_since(since) == ["olga"]
    await world.at(20)  # the others went on meanwhile, on their own timeline
    levels = await world.levels()
    assert [levels[other] for other in others] == [[1, 2], [1, 2]]
    assert world.item_errors("escalate") == 2


async def test_a_failed_sla_step_does_not_stop_the_other_breaches(
    any_sessions: Sessions, clock: ManualClock
) -> None:
    async for world in make_world(any_sessions, clock):
        world.service.jobs.close()
        world.service = world.new_service(config(sla_minutes=5))
        broken = await world.open("acme", "a")
        other = await world.open("beta", "b")
        good_policy = (await world.incident(broken)).escalation_policy
        await world.set_policy(broken, {"name": "tier-2"})
        report = await world.at(5)  # both deadlines missed: each breach runs a step now
        assert report.failed == ()
        assert await world.levels() == {other: [1]}
        assert world.item_errors("escalate") == 1
        async with world.sessions() as session:
            breached = set(
                await session.scalars(
                    select(IncidentEvent.incident_id).where(IncidentEvent.kind == "sla_breached")
                )
            )
        assert breached == {broken, other}
        # its own step still comes at its time
        await world.set_policy(broken, good_policy)
        await world.at(10)
        assert (await world.levels())[broken] == [1]


async def test_a_release_that_fails_does_not_stop_the_others(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    muted: dict[int, int] = {}
    for watch in ("acme", "beta"):
        async with unit_of_work(world.sessions) as session:
            silence = silences.create(
                session,
                matchers=Matchers(watch=[watch]),
                ends_at=world.clock.now() + timedelta(minutes=5),
                author="maria",
                reason="known story",
                now=world.clock.now(),
            )
            await session.flush()
            silence_id = silence.id
        muted[silence_id] = await world.open(watch, f"story-{watch}")
    first = min(muted)
    real = svc.release_silence  # defined there; the service calls it by its own name
    failing = [True]

    async def release(session: AsyncSession, **kwargs: Any) -> svc.Release | None:
        if kwargs["silence_id"] == first and failing[0]:
            raise RuntimeError("a bad row")
        return await real(session, **kwargs)

    monkeypatch.setattr(service_module, "release_silence", release)
    since = world.clock.now()
    report = await world.at(6)
    assert report.failed == ()
    assert world.sent_since(since) == ["cs"], "the second silence was released"
    assert world.item_errors("release_silences") == 1
    await world.at(6.25)  # backoff: not tried at every tick
    assert world.item_errors("release_silences") == 1
    failing[0] = False
    since = world.clock.now()
    await world.at(6.6)
    assert world.sent_since(since) == ["pr"], "released once it works"
    assert world.item_errors("release_silences") == 1


async def test_a_silence_created_after_the_alert_mutes_the_escalation_until_it_ends(
    world: World,
) -> None:
    incident = await world.open("acme", "a")
    other = await world.open("beta", "b")  # not silenced: escalates as usual
    assert world.sent_since(world.start) == ["cs", "pr"]
    async with unit_of_work(world.sessions) as session:
        silence = silences.create(
            session,
            matchers=Matchers(watch=["acme"]),
            ends_at=world.start + timedelta(minutes=30),
            author="maria",
            reason="statement already published",
            now=world.clock.now() + timedelta(minutes=2),
            starts_at=world.clock.now() + timedelta(minutes=2),
        )
        await session.flush()
        silence_id = silence.id
    since = world.start + timedelta(minutes=1)
    for minute in (10, 20, 25):
        await world.at(minute)
    assert world.sent_since(since) == ["cs", "olga"], "only the other incident escalated"
    levels = await world.levels()
    assert incident not in levels and levels[other] == [1, 2]
    row = await world.incident(incident)
    assert row.next_escalation_at is None and row.status == "open"
    async with world.sessions() as session:
        (event,) = await session.scalars(
            select(IncidentEvent).where(
                IncidentEvent.incident_id == incident, IncidentEvent.kind == "silenced"
            )
        )
    assert event.detail["silence"] == silence_id and event.detail["reason"]
    assert world.metrics.registry.get_sample_value(
        "crisiswatch_alerts_suppressed_total", {"reason": "silenced"}
    )
    assert all(job.incident_id != incident for job in await world.service.jobs.all())

    # the silence ends: still unacknowledged, so it is alerted again and escalates again
    await world.at(30)
    assert await world.sent_for(incident, world.clock.now()) == [("pr", "realert-1")]
    await world.at(40)
    assert await world.sent_for(incident, world.clock.now()) == [("olga", "escalation-1@2")]
    assert (await world.levels())[incident] == [1]
    async with unit_of_work(world.sessions) as session:
        await svc.acknowledge(session, incident, "maria", world.clock)
    await world.at(60)
    assert (await world.levels())[incident] == [1], "the ack stops it, as always"


async def test_a_silence_cancels_the_pages_still_queued_and_an_ack_meanwhile_ends_it(
    world: World,
) -> None:
    incident = await world.open("acme", "a")
    # the first alert is still retrying (the endpoint was down) when the story is silenced
    async with unit_of_work(world.sessions) as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.incident_id == incident)
            .values(status="pending", next_attempt_at=world.start + timedelta(hours=1))
        )
        silences.create(
            session,
            matchers=Matchers(watch=["acme"]),
            ends_at=world.start + timedelta(minutes=30),
            author="maria",
            reason="known",
            now=world.clock.now(),
        )
    await world.at(10)
    async with world.sessions() as session:
        statuses = set(
            await session.scalars(select(Delivery.status).where(Delivery.incident_id == incident))
        )
    assert statuses == {CANCELLED}
    async with unit_of_work(world.sessions) as session:
        await svc.acknowledge(session, incident, "maria", world.clock)
    since = world.clock.now()
    await world.at(31)  # acknowledged while silenced: nothing to alert again
    assert world.sent_since(since) == []
    assert await world.levels() == {}
