"""An incident that ends (resolved, merged) before its SLA deadline and before what the
deadline waits for (an ack at tier 3, a response at tiers 1 and 2): its report has an SLA
line, "not needed", neither met nor missed (it had none at all)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerts import incidents, sla
from alerts.workflow import report, service
from core.clock import ManualClock
from core.db import unit_of_work
from core.metrics import Metrics
from tests.integration.test_incident_workflow import WHO, Sessions, apply, config, signal

# the default plan: tier 1 a private reply in 2 h, tier 2 a statement in 1 h, tier 3 the
# emergency group convened (an ack) in 10 min
PLAN = {1: ("responded", 120, "a response"), 2: ("responded", 60, "a response")}
PLAN[3] = ("acknowledged", 10, "an ack")


async def _sla_lines(sessions: Sessions, incident_id: int, clock: ManualClock) -> list[dict]:
    async with sessions() as session:
        data = await report.build(session, incident_id, clock.now())
    return [d for d in data["deadlines"] if d["kind"] == "sla"]


@pytest.mark.parametrize("tier", [1, 2, 3])
async def test_resolved_before_the_deadline_unanswered_is_not_needed(
    sessions: Sessions, clock: ManualClock, metrics: Metrics, tier: int
) -> None:
    waits_for, minutes, waited = PLAN[tier]
    cfg = config()
    opened = clock.now()
    incident_id = await apply(sessions, signal(clock, "s1", tier=tier), cfg, clock)
    clock.advance(6 * 60)
    async with unit_of_work(sessions) as session:
        await incidents.resolve(session, incident_id, WHO, clock, metrics=metrics)
    clock.advance(24 * 3600)  # long past the deadline: still no breach, nothing overdue
    async with unit_of_work(sessions) as session:
        assert await sla.check(session, cfg, clock.now(), metrics) == []

    [line] = await _sla_lines(sessions, incident_id, clock)
    due = opened + timedelta(minutes=minutes)
    assert line["what"] == f"tier {tier} SLA ({waits_for})"
    assert (line["outcome"], line["due_at"], line["done_at"]) == (
        "not needed",
        due.isoformat(),
        None,
    )
    assert line["note"] == (
        f"resolved 6 min after the alert, before the {minutes} min deadline, without {waited}"
    )
    async with sessions() as session:
        data = await report.build(session, incident_id, clock.now())
    assert data["deadlines_summary"] == {"met": 0, "missed": 0, "overdue": 0}
    text = report.markdown(data)
    assert "0 met, 0 missed, 0 overdue, 1 not needed." in text
    assert "**not needed**: resolved 6 min after the alert" in text


async def test_merged_before_the_deadline_unacknowledged_is_not_needed(
    sessions: Sessions, clock: ManualClock, metrics: Metrics
) -> None:
    cfg = config()
    opened = clock.now()
    incident_id = await apply(sessions, signal(clock, "s1", tier=3), cfg, clock)
    survivor = await apply(sessions, signal(clock, "t1", story="story-2", tier=3), cfg, clock)
    clock.advance(4 * 60)
    async with unit_of_work(sessions) as session:
        await service.merge(session, incident_id, survivor, WHO, clock, metrics=metrics)

    [line] = await _sla_lines(sessions, incident_id, clock)
    assert (line["outcome"], line["due_at"]) == (
        "not needed",
        (opened + timedelta(minutes=10)).isoformat(),
    )
    assert line["note"] == (
        f"merged into incident {survivor} 4 min after the alert, before the 10 min "
        "deadline, without an ack"
    )
    # the survivor's own clock runs on: its line is its own, not the merged one's
    [own] = await _sla_lines(sessions, survivor, clock)
    assert own["outcome"] == "pending"


async def test_the_other_outcomes_are_unchanged(
    sessions: Sessions, clock: ManualClock, metrics: Metrics
) -> None:
    """Acked in time then resolved: met; resolved late unacked: missed; a reopen after an
    in-time resolve starts a clock of its own (the old line is not carried over)."""
    cfg = config()
    acked = await apply(sessions, signal(clock, "a", story="a", tier=3), cfg, clock)
    late = await apply(sessions, signal(clock, "b", story="b", tier=3), cfg, clock)
    reopened = await apply(sessions, signal(clock, "c", story="c", tier=2), cfg, clock)
    clock.advance(2 * 60)
    async with unit_of_work(sessions) as session:
        await incidents.acknowledge(session, acked, WHO, clock)
        await incidents.resolve(session, acked, WHO, clock)
        await incidents.resolve(session, reopened, WHO, clock)
    clock.advance(60)
    await apply(sessions, signal(clock, "c3", story="c", tier=3), cfg, clock)  # reopens it
    clock.advance(20 * 60)
    async with unit_of_work(sessions) as session:
        await incidents.resolve(session, late, WHO, clock, metrics=metrics)
    assert [d["outcome"] for d in await _sla_lines(sessions, acked, clock)] == ["met"]
    assert [d["outcome"] for d in await _sla_lines(sessions, late, clock)] == ["missed"]
    assert [d["outcome"] for d in await _sla_lines(sessions, reopened, clock)] == ["overdue"]
