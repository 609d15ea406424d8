"""Escalation policies: an alert nobody acknowledged goes, step by step, further up.

When escalation starts (an incident opens or is upgraded), ``arm`` copies the tier's
policy and the routed teams onto the incident (``escalation_policy``): later config
changes do not change a running timeline. Steps run in order (``repeat`` times over);
step ``k`` is due ``steps[k].after`` after the previous one. Each scheduled step carries
the incident's ``escalation_token``; ``run_step`` does
``UPDATE ... WHERE escalation_token = <the step's>``: an ack, a resolve or an upgrade
rotates the token, so a late timer (or a second alerter) does nothing.

Steps are APScheduler jobs in a persistent job store (``alerts.jobs``); the database row
stays the truth, so an overdue incident whose job was lost (a crash between the commit
and the scheduling) is found by ``overdue`` and run all the same.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts.config import AlertsConfig, EscalationStep
from alerts.messages import describe, snippets_from_rows
from alerts.models import OPEN, Incident, IncidentEvent, IncidentEvidence
from alerts.outbox import enqueue, escalation_reason, rowcount
from alerts.targets import step_targets
from alerts.timeline import add_event
from core.clock import Clock
from core.db import unit_of_work
from core.metrics import Metrics, drill_label

log = logging.getLogger(__name__)

BATCH = 200


@dataclass(frozen=True)
class Scheduled:
    """A step to put in the job store once the transaction commits."""

    incident_id: int
    token: str
    at: datetime


def scheduled(incident: Incident) -> Scheduled | None:
    if incident.next_escalation_at is None or incident.status != OPEN:
        return None
    return Scheduled(incident.id, incident.escalation_token, incident.next_escalation_at)


def arm(
    incident: Incident,
    config: AlertsConfig,
    teams: list[str],
    start: datetime,
    repeat_interval: timedelta = timedelta(0),
    *,
    run: int = 1,
) -> None:
    """(Re)start escalation with a fresh token and a snapshot of the tier's policy.
    ``repeat_interval`` (the route's; 0 = never): once the steps are done, the routed
    teams are reminded this often until someone acknowledges. ``run`` (``next_run``): the
    how-manyth escalation of the incident at its tier this is; its steps' reasons carry it
    (``escalation_reason``), so a run restarted by a release does not reuse the dedupe
    keys of an earlier run's steps."""
    incident.escalation_token = str(uuid.uuid4())
    incident.escalation_level = 0
    name = config.escalation.get(incident.tier)
    policy = config.policy_for(incident.tier)
    if policy is None:
        incident.escalation_policy = None
        incident.next_escalation_at = None
        return
    incident.escalation_policy = {
        "name": name,
        "tier": incident.tier,
        "teams": list(teams),
        "repeat": policy.repeat,
        "steps": [step.model_dump(mode="json") for step in policy.steps],
        "repeat_interval": repeat_interval.total_seconds(),
        "run": run,
    }
    incident.next_escalation_at = start + policy.steps[0].after


async def next_run(session: AsyncSession, incident: Incident) -> int:
    """The number of the escalation that starts now at the incident's current tier: 1 + the
    runs started at that tier before (its own ``escalation_started`` events; those a merge
    moved from another incident, marked ``from_incident``, are not its own)."""
    details = await session.scalars(
        select(IncidentEvent.detail).where(
            IncidentEvent.incident_id == incident.id, IncidentEvent.kind == "escalation_started"
        )
    )
    return 1 + sum(
        1
        for detail in details
        if "from_incident" not in (detail or {}) and (detail or {}).get("tier") == incident.tier
    )


def disarm(incident: Incident) -> None:
    incident.escalation_token = str(uuid.uuid4())
    incident.next_escalation_at = None


def _steps(snapshot: dict[str, Any]) -> tuple[list[EscalationStep], int, timedelta]:
    steps = [EscalationStep.model_validate(s) for s in snapshot["steps"]]
    remind = timedelta(seconds=float(snapshot.get("repeat_interval") or 0))
    return steps, len(steps) * int(snapshot["repeat"]), remind


async def run_step(
    session: AsyncSession,
    incident_id: int,
    token: str,
    config: AlertsConfig,
    now: datetime,
    *,
    why: str | None = None,
) -> Incident | None:
    """Run the incident's next step if ``token`` is still its token; None when the timer
    is stale (acked, resolved, upgraded, or already run). ``why`` set: run it now even
    if it is not due yet (an SLA breach)."""
    ran = await _run_step(session, incident_id, token, config, now, why=why)
    return None if ran is None else ran[0]


async def _run_step(
    session: AsyncSession,
    incident_id: int,
    token: str,
    config: AlertsConfig,
    now: datetime,
    *,
    why: str | None = None,
) -> tuple[Incident, bool] | None:
    """``run_step``, and whether the step queued anything (False: recorded as
    ``escalation_skipped``: no target, or every delivery of it was queued already)."""
    incident = await session.get(Incident, incident_id)
    if (
        incident is None
        or incident.escalation_token != token
        or incident.status != OPEN
        or incident.escalation_policy is None
    ):
        return None
    snapshot = incident.escalation_policy
    steps, total, remind = _steps(snapshot)
    done = incident.escalation_level
    reminder = done >= total
    if reminder and not remind:
        return None
    level = done + 1
    if level < total:
        next_at: datetime | None = now + steps[level % len(steps)].after
    else:
        next_at = now + remind if remind else None
    conditions = [
        Incident.id == incident_id,
        Incident.escalation_token == token,
        Incident.status == OPEN,
        Incident.escalation_level == done,
    ]
    if why is None:
        conditions.append(Incident.next_escalation_at <= now)
    result = await session.execute(
        update(Incident)
        .where(*conditions)
        .values(
            escalation_level=level,
            escalation_token=str(uuid.uuid4()),
            next_escalation_at=next_at,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        return None
    await session.refresh(incident)
    notify = "route" if reminder else steps[done % len(steps)].notify
    targets, described = step_targets(config, notify, list(snapshot["teams"]), now)
    evidence = await session.scalars(
        select(IncidentEvidence)
        .where(IncidentEvidence.incident_id == incident_id)
        .order_by(IncidentEvidence.id)
        .limit(config.evidence_in_alert)
    )
    waited = describe(now - incident.alerted_at)
    text = (
        f"REMINDER: still not acknowledged after {waited}"
        if reminder
        else f"ESCALATION level {level}: not acknowledged within {waited}"
    )
    queued = await enqueue(
        session,
        incident,
        targets,
        reason=escalation_reason(level, int(snapshot.get("run") or 1)),
        reason_text=why or text,
        evidence=snippets_from_rows(evidence, config.evidence_in_alert),
        config=config,
        now=now,
        trigger_received_at=None,
    )
    skipped: dict[str, Any] = {}
    if targets and not queued:  # a dedupe key taken: nothing new went out
        skipped["skipped"] = "already queued (same dedupe keys)"
    add_event(
        session,
        incident_id,
        "escalated" if queued else "escalation_skipped",
        now,
        detail=skipped
        | {
            "level": level,
            "of": total,
            "policy": snapshot.get("name"),
            "step": None if reminder else done % len(steps),
            "reminder": reminder,
            "notify": described,
            "contacts": {ch: t.teams for ch, t in targets.items()},
            "unacknowledged_for": waited,
            "why": why,
            "next_escalation_at": next_at.isoformat() if next_at else None,
        },
    )
    return incident, bool(queued)


async def overdue(session: AsyncSession, now: datetime) -> list[tuple[int, str]]:
    """(incident id, token) of open incidents whose next step is due."""
    rows = await session.execute(
        select(Incident.id, Incident.escalation_token)
        .where(Incident.status == OPEN, Incident.next_escalation_at <= now)
        .order_by(Incident.next_escalation_at, Incident.id)
        .limit(BATCH)
    )
    return [(int(i), str(t)) for i, t in rows]


Schedule = Callable[[Scheduled], Awaitable[None]]


async def escalate_one(
    sessions: async_sessionmaker[AsyncSession],
    incident_id: int,
    token: str,
    config: AlertsConfig,
    clock: Clock,
    metrics: Metrics,
    *,
    why: str | None = None,
    schedule: Schedule | None = None,
) -> bool:
    """Run one step in its own transaction, then hand the next step to ``schedule``."""
    async with unit_of_work(sessions) as session:
        ran = await _run_step(session, incident_id, token, config, clock.now(), why=why)
        step = scheduled(ran[0]) if ran is not None else None
    if ran is None:
        return False
    incident, sent = ran
    if step is not None and schedule is not None:
        await schedule(step)
    if not sent:
        log.info(
            "incident %d (tier %d): escalation level %d sent nothing (see its timeline)",
            incident.id,
            incident.tier,
            incident.escalation_level,
        )
        return True
    metrics.escalations.labels(str(incident.tier), drill_label(incident.drill)).inc()
    log.warning(
        "incident %d (tier %d) not acknowledged: escalation level %d%s",
        incident.id,
        incident.tier,
        incident.escalation_level,
        f" ({why})" if why else "",
    )
    return True


async def escalate_due(
    sessions: async_sessionmaker[AsyncSession],
    config: AlertsConfig,
    clock: Clock,
    metrics: Metrics,
    *,
    schedule: Schedule | None = None,
) -> int:
    """Run the step of every open incident that is due by its row (what the job store
    did not run: a job lost in a crash, or no job store at all); returns how many ran."""
    async with sessions() as session:
        due = await overdue(session, clock.now())
    ran = 0
    for incident_id, token in due:
        ran += await escalate_one(
            sessions, incident_id, token, config, clock, metrics, schedule=schedule
        )
    return ran
