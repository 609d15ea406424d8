"""Playbooks are cumulative: the response plan's tiers are escalation levels, so an
incident of tier T has the tasks of every tier's playbook up to T, whatever way it came
there. Before, it had its current tier's only: one opened straight at tier 3 (a story
that explodes fast, the most serious case) or raised 1 -> 3 had no statement, no
investigation (and straight at 3 no private reply), one that climbed 1 -> 2 -> 3 had all
five. A lower tier's task is due by its own tier's time from the alert and records its
tier. SQLite and PostgreSQL (``any_sessions``)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts import silences
from alerts.config import AlertsConfig, Matchers, PlaybookTask
from alerts.models import Incident, IncidentEvent
from alerts.workflow import tasks as task_service
from core.clock import ManualClock
from core.db import unit_of_work
from tests.integration.test_incident_workflow import apply, config, signal, tasks_of

Sessions = async_sessionmaker[AsyncSession]

ALL_FIVE = {
    "private_reply",
    "publish_statement",
    "internal_investigation",
    "convene_emergency_group",
    "legal_review_statements",
}
TIER_OF = {
    "private_reply": 1,
    "publish_statement": 2,
    "internal_investigation": 2,
    "convene_emergency_group": 3,
    "legal_review_statements": 3,
}
DUE_IN = {  # each by its own tier's SLA target (the default plan)
    "private_reply": timedelta(hours=2),
    "publish_statement": timedelta(hours=1),
    "internal_investigation": timedelta(hours=1),
    "convene_emergency_group": timedelta(minutes=10),
    "legal_review_statements": timedelta(minutes=10),
}
FIRST_REMINDER = {  # 15 min before the due time (5 min for tier 3's)
    "private_reply": timedelta(minutes=105),
    "publish_statement": timedelta(minutes=45),
    "internal_investigation": timedelta(minutes=45),
    "convene_emergency_group": timedelta(minutes=5),
    "legal_review_statements": timedelta(minutes=5),
}


async def created_events(sessions: Sessions, incident_id: int) -> dict[str, dict[str, object]]:
    async with sessions() as session:
        events = await session.scalars(
            select(IncidentEvent).where(
                IncidentEvent.incident_id == incident_id, IncidentEvent.kind == "task_created"
            )
        )
        return {str(e.detail["key"]): dict(e.detail) for e in events}


async def test_opened_at_tier_3_has_every_tiers_tasks_each_due_by_its_own_tier(
    any_sessions: Sessions, clock: ManualClock
) -> None:
    opened = clock.now()
    incident_id = await apply(
        any_sessions, signal(clock, "s1", tier=3, mentions=300), config(), clock
    )
    tasks = await tasks_of(any_sessions, incident_id)
    assert set(tasks) == ALL_FIVE
    assert {k: t.tier for k, t in tasks.items()} == TIER_OF
    # the statement 1 h after the alert, not tier 3's 10-minute ack target
    assert {k: t.due_at - opened for k, t in tasks.items()} == DUE_IN
    reminders = {k: t.next_reminder_at for k, t in tasks.items()}
    assert {k: at - opened for k, at in reminders.items() if at} == FIRST_REMINDER
    assert {k: t.status for k, t in tasks.items()} == dict.fromkeys(ALL_FIVE, "open")
    assert tasks["publish_statement"].completed_by_response == "statement"
    assert tasks["private_reply"].completed_by_response == "reply"
    # the timeline says which tier's playbook each comes from, at which tier it was created
    events = await created_events(any_sessions, incident_id)
    assert {k: e["tier"] for k, e in events.items()} == TIER_OF
    assert {e["incident_tier"] for e in events.values()} == {3}
    assert {k: e["due_at"] for k, e in events.items()} == {
        k: (opened + d).isoformat() for k, d in DUE_IN.items()
    }


async def test_raised_1_to_3_gets_tier_2s_tasks_due_from_the_raise(
    any_sessions: Sessions, clock: ManualClock
) -> None:
    cfg = config()
    opened = clock.now()
    incident_id = await apply(any_sessions, signal(clock, "s1", tier=1), cfg, clock)
    assert set(await tasks_of(any_sessions, incident_id)) == {"private_reply"}
    clock.advance(20 * 60)
    raised = clock.now()
    await apply(any_sessions, signal(clock, "s2", tier=3, mentions=300), cfg, clock)
    tasks = await tasks_of(any_sessions, incident_id)
    assert set(tasks) == ALL_FIVE
    assert {k: t.tier for k, t in tasks.items()} == TIER_OF
    assert tasks["private_reply"].due_at == opened + timedelta(hours=2)  # kept, created once
    for key in ("publish_statement", "internal_investigation"):
        assert tasks[key].due_at == raised + timedelta(hours=1)
    for key in ("convene_emergency_group", "legal_review_statements"):
        assert tasks[key].due_at == raised + timedelta(minutes=10)
    events = await created_events(any_sessions, incident_id)
    assert events["publish_statement"]["tier"] == 2
    assert events["publish_statement"]["incident_tier"] == 3
    assert events["private_reply"]["incident_tier"] == 1


async def test_climbing_and_opening_at_tier_3_end_with_the_same_tasks(
    any_sessions: Sessions, clock: ManualClock
) -> None:
    cfg = config()
    climbed = await apply(any_sessions, signal(clock, "a1", story="a", tier=1), cfg, clock)
    clock.advance(60)
    await apply(any_sessions, signal(clock, "a2", story="a", tier=2), cfg, clock)
    clock.advance(60)
    await apply(any_sessions, signal(clock, "a3", story="a", tier=3, mentions=300), cfg, clock)
    straight = await apply(
        any_sessions,
        signal(clock, "b3", story="b", tier=3, mentions=300, watch="other"),
        cfg,
        clock,
    )
    one = await tasks_of(any_sessions, climbed)
    other = await tasks_of(any_sessions, straight)
    assert set(one) == set(other) == ALL_FIVE
    assert {k: t.tier for k, t in one.items()} == {k: t.tier for k, t in other.items()}
    # a signal at the same tier again creates nothing twice
    await apply(any_sessions, signal(clock, "b4", story="b", tier=3, watch="other"), cfg, clock)
    assert len(await created_events(any_sessions, straight)) == 5


def shared_key_config(tier3_due: str) -> AlertsConfig:
    """Tier 1, 2 and 3 all list the holding statement (2 h, 20 min, ``tier3_due``)."""
    statement = {"key": "holding_statement", "title": "Holding statement", "team": "pr"}
    playbooks = {
        1: [{**statement, "due": "PT2H"}],
        2: [{**statement, "due": "PT20M", "title": "Holding statement (tier 2)"}],
        3: [{**statement, "due": tier3_due, "title": "Holding statement (tier 3)"}],
    }
    return config().model_copy(
        update={
            "playbooks": {
                t: [PlaybookTask.model_validate(x) for x in items] for t, items in playbooks.items()
            }
        }
    )


async def test_a_key_listed_at_several_tiers_is_created_once_by_the_strictest_rules(
    any_sessions: Sessions, clock: ManualClock
) -> None:
    opened = clock.now()
    sooner = shared_key_config("PT5M")  # tier 3 wants it sooner: tier 3's rules
    incident_id = await apply(
        any_sessions, signal(clock, "s1", tier=3, mentions=300), sooner, clock
    )
    (task,) = (await tasks_of(any_sessions, incident_id)).values()
    assert (task.tier, task.title, task.due_at) == (
        3,
        "Holding statement (tier 3)",
        opened + timedelta(minutes=5),
    )
    # tier 3 lists it with a looser time than tier 2: never loosened, tier 2's rules
    looser = shared_key_config("PT1H")
    incident_id = await apply(
        any_sessions, signal(clock, "s2", story="x", tier=3, watch="other"), looser, clock
    )
    (task,) = (await tasks_of(any_sessions, incident_id)).values()
    assert (task.tier, task.due_at) == (2, opened + timedelta(minutes=20))
    assert len(await created_events(any_sessions, incident_id)) == 1


async def test_a_raise_past_a_tier_tightens_by_the_skipped_tiers_rules(
    any_sessions: Sessions, clock: ManualClock
) -> None:
    """Raised 1 -> 3 where tier 2 is the strictest: the task takes tier 2's time, as it
    would have climbing 1 -> 2 -> 3 (before, only tier 3's was compared)."""
    cfg = shared_key_config("PT1H")
    incident_id = await apply(any_sessions, signal(clock, "s1", tier=1), cfg, clock)
    clock.advance(60)
    raised = clock.now()
    await apply(any_sessions, signal(clock, "s2", tier=3, mentions=300), cfg, clock)
    (task,) = (await tasks_of(any_sessions, incident_id)).values()
    assert (task.tier, task.due_at) == (2, raised + timedelta(minutes=20))


async def test_muted_at_tier_3_every_task_waits_then_is_planned_by_its_own_tier(
    any_sessions: Sessions, clock: ManualClock
) -> None:
    """Created silenced (``remind=False``), nothing is reminded; once alerted
    (``plan_muted``) each is due by its own tier's time from then, once."""
    cfg = config()
    now = clock.now()
    async with unit_of_work(any_sessions) as session:
        silences.create(
            session,
            matchers=Matchers(watch=["acme"], tier=[3]),
            ends_at=now + timedelta(hours=1),
            author="maria",
            reason="known outage",
            now=now,
        )
    incident_id = await apply(any_sessions, signal(clock, "s1", tier=3, mentions=300), cfg, clock)
    tasks = await tasks_of(any_sessions, incident_id)
    assert set(tasks) == ALL_FIVE
    assert all(t.reminders == [] and t.next_reminder_at is None for t in tasks.values())
    clock.advance(3600)
    released = clock.now()
    async with unit_of_work(any_sessions) as session:
        incident = await session.get(Incident, incident_id)
        assert incident is not None
        planned = await task_service.plan_muted(session, incident, cfg, released, released)
        assert len(planned) == 5
        assert await task_service.plan_muted(session, incident, cfg, released, released) == []
    tasks = await tasks_of(any_sessions, incident_id)
    assert {k: t.tier for k, t in tasks.items()} == TIER_OF
    assert {k: t.due_at - released for k, t in tasks.items()} == DUE_IN
    reminders = {k: t.next_reminder_at for k, t in tasks.items()}
    assert {k: at - released for k, at in reminders.items() if at} == FIRST_REMINDER


async def test_a_tier_3_drill_has_every_tiers_tasks_too(
    any_sessions: Sessions, clock: ManualClock
) -> None:
    drill = signal(clock, "d1", tier=3, mentions=300, drill=True)
    incident_id = await apply(any_sessions, drill, config(), clock)
    tasks = await tasks_of(any_sessions, incident_id)
    assert {k: t.tier for k, t in tasks.items()} == TIER_OF


def test_on_call_for_a_tier_includes_the_teams_of_lower_tiers_tasks() -> None:
    """``GET /oncall?tier=3`` (the console's "who is on call for this incident") names the
    teams of every task a tier-3 incident has: the tier-1 reply's customer service too."""
    from api.scope import teams_of_watches

    config = AlertsConfig()
    for tier in (1, 2, 3):
        owners = {task.team for t in range(1, tier + 1) for task in config.playbooks.get(t, [])}
        assert owners <= teams_of_watches(config, ["acme"], [tier]), tier
