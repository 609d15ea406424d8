"""Incident workflow review: defects found in playbook tasks, templates and reports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from alerts.workflow import service as workflow
from core.clock import ManualClock
from core.db import unit_of_work
from tests.integration.test_alerts_policies import Sessions, World, make_silence, make_world


@pytest.fixture
async def world(sessions: Sessions, clock: ManualClock) -> AsyncIterator[World]:
    async for w in make_world(sessions, clock):
        yield w


async def test_tasks_acked_while_muted_are_reminded_when_the_tick_comes_after_the_due_time(
    world: World,
) -> None:
    """Acknowledged while silenced, and the alerter's next tick comes only after the due
    time (it was down): the tasks are due from the ack, and their missed reminder points
    are coalesced into one overdue reminder, as after any alerter outage; they were
    planned with no reminder left, never reminded, and re-read at every tick."""
    await make_silence(world, tier=2, hours=24)
    await world.signal("low", tier=2, story="s-low")  # silenced when raised
    low = await world.incident("s-low")
    async with unit_of_work(world.sessions) as session:
        await workflow.mitigate(session, low.id, "pr-lead", world.clock)
    acked = world.clock.now()
    world.clock.advance(2 * 3600)  # the alerter was down past the tasks' due time
    world.log.clear()
    await world.service.tick()
    await world.service.sent()
    got = [m.reason for _, m in world.log if m.incident_id == low.id]
    overdue = [r for r in got if r.startswith("TASK OVERDUE")]
    # one per task (statement, investigation; tier 1's private reply, due at 2 h: now)
    assert len(overdue) == 3, got
    async with world.sessions() as session:
        tasks = await workflow.tasks_of(session, low.id)
    assert {t.key: t.due_at - acked for t in tasks} == {
        "publish_statement": timedelta(hours=1),
        "internal_investigation": timedelta(hours=1),
        "private_reply": timedelta(hours=2),
    }
    assert all(t.reminders_sent == 1 and t.next_reminder_at is None for t in tasks)
    world.log.clear()
    world.clock.advance(3600)
    await world.service.tick()
    await world.service.sent()
    assert [m for _, m in world.log if m.incident_id == low.id] == [], "reminded once"
