"""The incident about crisiswatch itself (a channel that failed for good) is an incident
like any other in the metrics: counted in ``crisiswatch_incidents_opened_total`` when it
opens, and in ``crisiswatch_alerts_suppressed_total`` when a silence mutes it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from alerts import incidents, silences
from alerts.config import Matchers
from alerts.models import Delivery, Incident
from core.clock import ManualClock
from core.db import unit_of_work
from tests.integration.test_alerts_policies import Recording, Sessions, make_world


async def test_a_self_alert_incident_is_counted_as_opened(
    sessions: Sessions, clock: ManualClock
) -> None:
    async for world in make_world(sessions, clock):
        world.service.notifiers["pr"] = Recording("pr", world.log, fail=True)
        await world.signal("a", tier=2, story="s1")  # pr refuses it for good: self-alert
        own = await world.incident("channel:pr")
        assert own.watch_id == "crisiswatch" and own.tier == 2
        opened = world.metric("crisiswatch_incidents_opened_total", tier="2", drill="false")
        assert opened == 2, "the Acme incident and the one about the dead channel"


async def test_a_silenced_self_alert_is_counted_as_suppressed(
    sessions: Sessions, clock: ManualClock
) -> None:
    async for world in make_world(sessions, clock):
        await silence_own_incidents_and_break_pr(
            world, clock, "known outage of the PR room's robot"
        )
        await world.signal("a", tier=2, story="s1")
        assert (await world.events("silenced"))[0].detail["reason"].startswith("known outage")
        assert world.metric("crisiswatch_alerts_suppressed_total", reason="silenced") == 1


async def test_a_self_alert_that_fails_counts_nothing(
    sessions: Sessions, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its writes are undone (the failed delivery stays recorded): what it counted is
    undone with them, not left behind as an incident or a suppression that never was."""
    create = incidents.tasks.create

    async def broken(session: Any, incident: Incident, *args: Any, **kw: Any) -> Any:
        if incident.watch_id == "crisiswatch":
            raise RuntimeError("a corrupt playbook row")
        return await create(session, incident, *args, **kw)

    monkeypatch.setattr(incidents.tasks, "create", broken)
    async for world in make_world(sessions, clock):
        await silence_own_incidents_and_break_pr(world, clock, "known outage")
        await world.signal("a", tier=2, story="s1")
        async with world.sessions() as session:
            (row,) = await session.scalars(select(Delivery).where(Delivery.channel == "pr"))
            own = await session.scalar(select(Incident).where(Incident.watch_id == "crisiswatch"))
        assert row.status == "failed" and own is None
        assert world.metric("crisiswatch_alerts_suppressed_total", reason="silenced") == 0


async def silence_own_incidents_and_break_pr(world: Any, clock: ManualClock, reason: str) -> None:
    """Silence crisiswatch's own incidents for an hour; the ``pr`` channel fails for good."""
    now = clock.now()
    async with unit_of_work(world.sessions) as session:
        silences.create(
            session,
            matchers=Matchers(watch=["crisiswatch"]),
            ends_at=now + timedelta(hours=1),
            author="ops",
            reason=reason,
            now=now,
        )
    world.service.notifiers["pr"] = Recording("pr", world.log, fail=True)
