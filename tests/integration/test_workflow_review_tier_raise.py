"""Workflow review: a playbook task the raised tier also has (the same key) is due by the
stricter deadline; a lower tier's own tasks keep theirs."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts.config import AlertsConfig, PlaybookTask
from core.clock import ManualClock
from tests.integration.test_incident_workflow import apply, config, signal, tasks_of

Sessions = async_sessionmaker[AsyncSession]


def shared_key_config() -> AlertsConfig:
    """Tier 2 and tier 3 both ask for the holding statement: within 1 h at tier 2, within
    15 min at tier 3 (a crisis needs it sooner)."""
    statement = {
        "key": "holding_statement",
        "title": "Publish the holding statement",
        "team": "pr",
        "owner_role": "pr_owner",
        "remind_before": ["PT5M"],
    }
    playbooks = {
        2: [{**statement, "due": "PT1H"}],
        3: [
            {**statement, "due": "PT15M"},
            {"key": "convene", "title": "Convene", "team": "executives"},
        ],
    }
    tasks = {
        tier: [PlaybookTask.model_validate(t) for t in items] for tier, items in playbooks.items()
    }
    return config().model_copy(update={"playbooks": tasks})


async def test_a_task_the_raised_tier_also_has_tightens_to_its_deadline(
    sessions: Sessions, clock: ManualClock
) -> None:
    cfg = shared_key_config()
    incident_id = await apply(sessions, signal(clock, "s1", tier=2), cfg, clock)
    clock.advance(10 * 60)
    raised = clock.now()
    await apply(sessions, signal(clock, "s2", tier=3, mentions=300), cfg, clock)
    tasks = await tasks_of(sessions, incident_id)
    statement = tasks["holding_statement"]
    # tier 3's plan: 15 min from the raise (before, it kept tier 2's 1 h from the open)
    assert statement.due_at == raised + timedelta(minutes=15)
    assert statement.tier == 3
    assert statement.next_reminder_at == raised + timedelta(minutes=10)
    assert tasks["convene"].due_at == raised + timedelta(minutes=10)  # tier 3's SLA


async def test_a_raise_never_loosens_a_task_already_due_sooner(
    sessions: Sessions, clock: ManualClock
) -> None:
    cfg = shared_key_config()
    opened = clock.now()
    incident_id = await apply(sessions, signal(clock, "s1", tier=2), cfg, clock)
    clock.advance(55 * 60)  # tier 3's 15 min from now would be later than tier 2's 1 h
    await apply(sessions, signal(clock, "s2", tier=3, mentions=300), cfg, clock)
    statement = (await tasks_of(sessions, incident_id))["holding_statement"]
    assert statement.due_at == opened + timedelta(hours=1)


async def test_the_tightened_task_is_reminded_by_its_new_time_on_postgres(
    pg_sessions: Sessions, clock: ManualClock
) -> None:
    await test_a_task_the_raised_tier_also_has_tightens_to_its_deadline(pg_sessions, clock)
