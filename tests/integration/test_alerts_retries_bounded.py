"""The alerter's per-item backoff (``escalation.Retries``) forgets the items nothing
retries any more: an incident that ended while its step or its SLA check was failing is
not remembered for the life of the process (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts import escalation, sla
from alerts import incidents as svc
from alerts.models import Incident
from core.clock import ManualClock
from core.db import unit_of_work
from core.metrics import Metrics
from tests.integration.test_alerts_escalation_isolation import World, config, make_world

Sessions = async_sessionmaker[AsyncSession]


async def resolve(world: World, incident_id: int) -> None:
    async with unit_of_work(world.sessions) as session:
        await svc.resolve(session, incident_id, "maria", world.clock)


async def test_an_incident_resolved_while_its_step_fails_is_forgotten(
    any_sessions: Sessions, clock: ManualClock
) -> None:
    """(Its job runs once more, finds the incident resolved: a success.)"""
    async for world in make_world(any_sessions, clock):
        broken = await world.open("acme", "a")
        await world.set_policy(broken, {"name": "tier-2"})  # its step raises (KeyError)
        await world.at(10)
        assert world.item_errors("escalate") == 1
        assert world.service.retries.failures((escalation.ITEM, broken)) == 1
        await resolve(world, broken)
        for minute in range(11, 45):
            await world.at(minute)
        assert world.service.retries.failures((escalation.ITEM, broken)) == 0


async def test_an_incident_resolved_while_its_sla_check_fails_is_forgotten(
    any_sessions: Sessions, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_one = sla._check_one

    async def failing(
        session: AsyncSession,
        incident: Incident,
        cfg: object,
        now: datetime,
        metrics: Metrics,
    ) -> sla.Breach | None:
        if incident.story_id == "a":
            raise RuntimeError("a corrupt row")
        return await check_one(session, incident, cfg, now, metrics)  # type: ignore[arg-type]

    monkeypatch.setattr(sla, "_check_one", failing)
    async for world in make_world(any_sessions, clock):
        world.service.jobs.close()
        world.service = world.new_service(config(sla_minutes=5))
        broken = await world.open("acme", "a")
        await world.at(1)
        assert world.item_errors("check_slas") == 1
        assert world.service.retries.failures((sla.ITEM, broken)) == 1
        await resolve(world, broken)  # no longer checked: nothing retries it
        for minute in range(2, 40):
            await world.at(minute)
        assert world.service.retries.failures((sla.ITEM, broken)) == 0
        assert world.service.retries.remembered == 0
