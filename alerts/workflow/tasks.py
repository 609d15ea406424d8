"""Playbook tasks: created when an incident reaches a tier, due by the tier's SLA, with
reminders to the owning team through the outbox.

Playbooks are cumulative (the response plan's tiers are escalation levels: tier 3 keeps
tier 2's statement within 1 h and adds the emergency group): an incident of tier T has the
tasks of every tier's playbook up to T, whether it was opened at T or climbed there, each
due by its own tier's rules from the alert that created it and recording that tier
(``playbook_up_to``). ``create`` runs in the transaction that alerted the incident (opened
or upgraded); a task key already on the incident is not created twice (a raise tightens
it, ``_tighten``). ``remind_due`` (each alerts tick) sends
the reminders that are due: one message per due point (points missed while the alerter was
down are coalesced into one), compare-and-set on ``reminders_sent`` so that two alerters
never remind twice. Reminders stop when the task is finished or the incident resolved.

A task created while its incident's alert was muted (silenced, inhibited) has no reminders
planned; when the incident is alerted (the silence or the inhibiting incident ended, or an
upgrade) ``plan_muted`` makes it due from then by its rules and plans its reminders, once;
if it is acknowledged while muted, from the ack (``plan_acknowledged``, each tick).
While an incident is inhibited (an open
incident of the inhibition's source tier for its story or watch, ``alerts.inhibition``),
its tasks' reminders wait; once nothing inhibits it they go on, the points missed meanwhile
coalesced into one, as after an alerter outage.

Reminders go to the owning team's chat and mail channels, never to a channel that keys its
alerts per incident page (``KEYED_CHANNEL_TYPES``: PagerDuty). There a reminder could only
be a ``trigger`` with the incident page's ``dedup_key``: folded into the open alert, it
pages nobody and just spends the integration's event budget (the alerts' own); once that
alert is resolved in PagerDuty it would open a new one and page the on-call person for a
task, not a crisis; and a key of its own would page for each reminder and leave alerts
nobody resolves. PagerDuty's own escalation covers the unacknowledged page; digests skip
keyed channels for the same reason (``alerts.outbox``). A team reachable only through
PagerDuty is reminded on its first other fallback channel, else not at all (the timeline's
``task_reminder`` says what was left out).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from alerts.config import AlertsConfig, PlaybookTask
from alerts.escalation import Retries
from alerts.inhibition import inhibitor_of
from alerts.models import ACKNOWLEDGED, FINISHED, MITIGATING, Incident
from alerts.notifiers.reasons import Reason
from alerts.outbox import enqueue, rowcount
from alerts.targets import unkeyed_team_targets
from alerts.timeline import add_event
from alerts.workflow.models import TASK_DONE, TASK_OPEN, TASK_SKIPPED, IncidentTask
from core.db import database_unavailable, on_commit, savepoint
from core.metrics import Metrics

log = logging.getLogger(__name__)

BATCH = 200
ITEM = "remind_tasks"
"""The ``step`` label of ``crisiswatch_alert_item_errors_total`` for a failed reminder."""
PLAN = "plan_tasks"
"""The ``Retries`` key of an incident whose tasks could not be planned (``ITEM`` counts it)."""


class TaskNotFound(LookupError):
    def __init__(self, incident_id: int, task_id: int) -> None:
        super().__init__(f"incident {incident_id} has no task {task_id}")


def _points(task: IncidentTask) -> list[datetime]:
    """When to remind, ascending: each ``reminders`` offset before the due time that
    falls after the task was created."""
    points = {task.due_at - timedelta(seconds=s) for s in task.reminders}
    return sorted(p for p in points if p > task.created_at)


def next_reminder(task: IncidentTask, after: datetime) -> datetime | None:
    return next((p for p in _points(task) if p > after), None)


def _offsets(spec: PlaybookTask) -> list[float]:
    """Seconds before the due time to remind at, the due time itself included."""
    return sorted({b.total_seconds() for b in spec.remind_before} | {0.0}, reverse=True)


def playbook_up_to(config: AlertsConfig, tier: int) -> list[tuple[int, PlaybookTask]]:
    """The tasks an incident of ``tier`` has: those of every tier's playbook up to it (the
    response plan's tiers are escalation levels: tier 3 keeps tier 2's statement and
    investigation and tier 1's private reply), lower tiers first, each key once, with the
    tier whose rules it takes: the highest tier that lists it, unless a lower one makes it
    due sooner (a deadline is never loosened, as on a raise: ``_tighten``)."""
    chosen: dict[str, tuple[int, PlaybookTask]] = {}
    for level in sorted(t for t in config.playbooks if t <= tier):
        for spec in config.playbooks[level]:
            best = chosen.get(spec.key)
            if best is None or config.task_due(level, spec) <= config.task_due(*best):
                chosen[spec.key] = (level, spec)
    return list(chosen.values())


async def create(
    session: AsyncSession,
    incident: Incident,
    config: AlertsConfig,
    start: datetime,
    now: datetime,
    *,
    remind: bool = True,
) -> list[IncidentTask]:
    """The tasks of the playbooks of the incident's tier and every tier below it
    (``playbook_up_to``) that it does not have yet, each due from ``start`` (the alert
    time) by its own tier's rules (``config.task_due``: a tier-2 statement created at tier
    3 is due 1 h after the alert) and recording that tier; a task it has already takes a
    higher tier's rules when they make it due sooner (``_tighten``). ``remind=False``
    (the alert was silenced or inhibited): no reminders either."""
    playbook = playbook_up_to(config, incident.tier)
    if not playbook:
        return []
    existing = {
        task.key: task
        for task in await session.scalars(
            select(IncidentTask).where(IncidentTask.incident_id == incident.id)
        )
    }
    created: list[IncidentTask] = []
    for tier, spec in playbook:
        if spec.key in existing:
            _tighten(session, existing[spec.key], incident, config, start, now)
            continue
        offsets = _offsets(spec)
        task = IncidentTask(
            incident_id=incident.id,
            key=spec.key,
            title=spec.title,
            tier=tier,
            team=spec.team,
            owner_role=spec.owner_role,
            completed_by_response=spec.completed_by_response,
            status=TASK_OPEN,
            created_at=now,
            due_at=start + config.task_due(tier, spec),
            reminders=offsets if remind else [],
            reminders_sent=0,
        )
        task.next_reminder_at = next_reminder(task, now)
        session.add(task)
        created.append(task)
        add_event(
            session,
            incident.id,
            "task_created",
            now,
            detail={
                "key": spec.key,
                "title": spec.title,
                "team": spec.team,
                "owner_role": spec.owner_role,
                "due_at": task.due_at.isoformat(),
                "tier": tier,
                "incident_tier": incident.tier,
            },
        )
    await session.flush()
    return created


def _tighten(
    session: AsyncSession,
    task: IncidentTask,
    incident: Incident,
    config: AlertsConfig,
    start: datetime,
    now: datetime,
) -> None:
    """A raised tier whose playbook (or that of a tier between the task's and it) has a
    task the incident already has (the same key): the open task takes the rules of the
    tier above its own that makes it due soonest, when that is sooner than it is due now
    (a statement due within 1 h at tier 2 and 15 min at tier 3 is due 15 min after the
    raise, or at its tier-2 time if that comes first; on a tie the higher tier's rules);
    a deadline is never loosened by a raise. Its reminders follow the new due time (none
    planned yet, it was created muted: planned when the incident is alerted,
    ``plan_muted``, by the new tier's rules)."""
    if task.status != TASK_OPEN or task.tier >= incident.tier:
        return
    stricter: tuple[datetime, int, PlaybookTask] | None = None
    for level in sorted(t for t in config.playbooks if task.tier < t <= incident.tier):
        for spec in config.playbooks[level]:
            if spec.key != task.key:
                continue
            due_at = start + config.task_due(level, spec)
            if due_at < task.due_at and (stricter is None or due_at <= stricter[0]):
                stricter = (due_at, level, spec)
    if stricter is None:
        return
    due_at, tier, spec = stricter
    previous_due, previous_tier = task.due_at, task.tier
    task.due_at, task.tier = due_at, tier
    task.title, task.team, task.owner_role = spec.title, spec.team, spec.owner_role
    task.completed_by_response = spec.completed_by_response
    if task.reminders:  # planned before: re-planned by the raised tier's reminders
        task.reminders = _offsets(spec)
        task.next_reminder_at = next_reminder(task, now)
    _updated(
        session,
        task,
        now,
        tightened={
            "from_tier": previous_tier,
            "tier": task.tier,
            "was_due_at": previous_due.isoformat(),
        },
    )


def _updated(session: AsyncSession, task: IncidentTask, now: datetime, **why: Any) -> None:
    """The timeline's ``task_updated`` event: the task's new due time and next reminder,
    and why (``tightened``, ``planned``)."""
    add_event(
        session,
        task.incident_id,
        "task_updated",
        now,
        detail={
            "task": task.id,
            "key": task.key,
            "due_at": task.due_at.isoformat(),
            "next_reminder_at": _iso(task.next_reminder_at),
            **why,
        },
    )


async def plan_muted(
    session: AsyncSession, incident: Incident, config: AlertsConfig, start: datetime, now: datetime
) -> list[IncidentTask]:
    """The incident is alerted (from ``start``): its open tasks created while it was muted
    (no reminders planned) become due from ``start`` by their rules (the playbook's ``due``,
    else the tier's SLA target; a task no longer in the playbook keeps the time it had) and
    are reminded by them from now on. Once: a planned task is never planned again."""
    rows = (
        await session.scalars(
            select(IncidentTask)
            .where(
                IncidentTask.incident_id == incident.id,
                IncidentTask.status == TASK_OPEN,
                IncidentTask.next_reminder_at.is_(None),
            )
            .order_by(IncidentTask.id)
        )
    ).all()
    planned = []
    for task in rows:
        if task.reminders:
            continue  # planned before (its reminders are done)
        spec = next((t for t in config.playbooks.get(task.tier, []) if t.key == task.key), None)
        allowed = config.task_due(task.tier, spec) if spec else task.due_at - task.created_at
        task.due_at = start + allowed
        task.reminders = _offsets(spec) if spec else [0.0]
        # from ``start`` when it is past (planned from an ack the tick comes to later): the
        # points missed since are coalesced into one reminder now, as after an outage
        task.next_reminder_at = next_reminder(task, min(start, now))
        planned.append(task)
        _updated(
            session,
            task,
            now,
            planned="the incident was alerted (the task was created while it was muted)",
        )
    return planned


async def plan_acknowledged(
    session: AsyncSession,
    config: AlertsConfig,
    now: datetime,
    *,
    metrics: Metrics | None = None,
    retries: Retries | None = None,
) -> int:
    """``plan_muted`` for the incidents acknowledged (or mitigating) while muted: their tasks
    created then would be planned only when they are alerted again, and a release never
    alerts an acknowledged incident (nor does anything else once a silence or inhibition
    simply goes on after the ack), so they would never be reminded. Planned from the ack
    (the tick runs this before the reminders; the ack itself has no config at hand).
    Returns how many tasks were planned. While the incident stays inhibited its reminders
    wait as any other's (``remind_due``). Each incident on its own (a savepoint): one that
    raises is rolled back alone, logged, counted (``metrics``) and left out until
    ``retries``' backoff has passed."""
    retries = retries or Retries()
    conditions = [
        IncidentTask.status == TASK_OPEN,
        IncidentTask.next_reminder_at.is_(None),
        IncidentTask.reminders_sent == 0,  # (a planned task's reminders were sent)
        Incident.status.in_((ACKNOWLEDGED, MITIGATING)),
    ]
    held = retries.held(PLAN, now)
    if held:
        conditions.append(Incident.id.not_in(held))
    ids = (
        await session.scalars(
            select(IncidentTask.incident_id)
            .join(Incident, Incident.id == IncidentTask.incident_id)
            .where(*conditions)
            .distinct()
            .order_by(IncidentTask.incident_id)
            .limit(BATCH)
        )
    ).all()
    planned = 0
    for incident_id in ids:
        try:
            async with savepoint(session):
                planned += await _plan_acknowledged(session, incident_id, config, now)
        except Exception as exc:
            if database_unavailable(exc):
                raise
            if metrics is not None:
                metrics.alert_item_errors.labels(ITEM).inc()
            retry_at = retries.failed((PLAN, incident_id), now)
            log.exception(
                "incident %d: planning the reminders of its tasks failed (%d time(s) in a "
                "row); retried at %s, the other incidents go on",
                incident_id,
                retries.failures((PLAN, incident_id)),
                retry_at.isoformat(),
            )
            continue
        retries.succeeded((PLAN, incident_id))
    return planned


async def _plan_acknowledged(
    session: AsyncSession, incident_id: int, config: AlertsConfig, now: datetime
) -> int:
    incident = await session.scalar(  # locked: two alerters never plan one twice
        select(Incident)
        .where(Incident.id == incident_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if incident is None or incident.status not in (ACKNOWLEDGED, MITIGATING):
        return 0
    start = incident.acked_at or now
    return len(await plan_muted(session, incident, config, start, now))


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def finish(task: IncidentTask, status: str, actor: str, now: datetime, note: str | None) -> None:
    task.status = status
    task.finished_at = now
    task.finished_by = actor
    task.note = note
    task.next_reminder_at = None


def judged_at(incident: Incident, now: datetime) -> datetime:
    """When the incident's open deadlines (its tasks', its SLA's) are judged: at its
    resolve once it is resolved or closed (a merge resolves it too), so that a task left
    open then stays pending or overdue as of the resolve, however late it is read; at
    ``now`` while it is live (a reopen clears its resolve). The post-incident report and
    ``GET /incidents/{id}/tasks`` both judge by this."""
    return incident.resolved_at or incident.closed_at or now


def outcome(task: IncidentTask, now: datetime) -> str:
    """met / missed (done late) / overdue (open past due) / pending / skipped / cancelled.
    ``now``: the time to judge an open task at (``judged_at``)."""
    if task.status == TASK_DONE:
        assert task.finished_at is not None
        return "met" if task.finished_at <= task.due_at else "missed"
    if task.status == TASK_OPEN:
        return "overdue" if now > task.due_at else "pending"
    return task.status


async def complete_by_response(
    session: AsyncSession, incident_id: int, kind: str, actor: str, now: datetime
) -> list[IncidentTask]:
    """A recorded response (reply, statement) completes the open tasks waiting for it."""
    tasks = (
        await session.scalars(
            select(IncidentTask).where(
                IncidentTask.incident_id == incident_id,
                IncidentTask.status == TASK_OPEN,
                IncidentTask.completed_by_response == kind,
            )
        )
    ).all()
    for task in tasks:
        finish(task, TASK_DONE, actor, now, f"{kind} recorded")
        add_event(
            session,
            incident_id,
            "task_updated",
            now,
            actor=actor,
            detail={"task": task.id, "key": task.key, "status": TASK_DONE, "by": kind},
        )
    return list(tasks)


FINISHING = (TASK_DONE, TASK_SKIPPED)


async def remind_due(
    session: AsyncSession,
    config: AlertsConfig,
    now: datetime,
    metrics: Metrics,
    *,
    retries: Retries | None = None,
) -> int:
    """Queue the task reminders that are due; returns how many were queued. Those of an
    inhibited incident wait (they are not read: the batch is not filled with them). The
    tasks of incidents acknowledged while muted are planned first (``plan_acknowledged``).

    Each task on its own (a savepoint): one whose reminder raises (a corrupt row, a
    message the database refuses) is rolled back alone, logged with its id and its
    incident's, counted (``crisiswatch_alert_item_errors_total{step="remind_tasks"}``) and
    its ``next_reminder_at`` moved ``retries``' backoff later (30 s, doubling up to 10
    min), so that it is neither first in line at every tick nor lost; the others are
    reminded. An unavailable database is raised: it is no one task's."""
    retries = retries or Retries()
    await plan_acknowledged(session, config, now, metrics=metrics, retries=retries)
    conditions = [
        IncidentTask.status == TASK_OPEN,
        IncidentTask.next_reminder_at <= now,
        Incident.status.not_in(FINISHED),
    ]
    rule = config.inhibit
    if rule.enabled:
        other = aliased(Incident)
        inhibited = select(other.id).where(inhibitor_of(rule, other, Incident)).exists()
        conditions.append(or_(Incident.tier >= rule.source_tier, ~inhibited))
    rows = (
        await session.execute(
            select(IncidentTask, Incident)
            .join(Incident, Incident.id == IncidentTask.incident_id)
            .where(*conditions)
            .order_by(IncidentTask.next_reminder_at, IncidentTask.id)
            .limit(BATCH)
        )
    ).all()
    queued = 0
    for task, incident in rows:
        task_id, incident_id, sent = task.id, incident.id, task.reminders_sent
        try:
            async with savepoint(session):
                queued += await _remind(session, task, incident, config, now, metrics)
        except Exception as exc:
            if database_unavailable(exc):
                raise
            metrics.alert_item_errors.labels(ITEM).inc()
            what = f"incident {incident_id}: the reminder of task {task_id}"
            retry_at = retries.item_failed(ITEM, task_id, now, what)
            await session.execute(
                update(IncidentTask)
                .where(
                    IncidentTask.id == task_id,
                    IncidentTask.reminders_sent == sent,
                    IncidentTask.status == TASK_OPEN,
                    IncidentTask.next_reminder_at <= now,
                )
                .values(next_reminder_at=retry_at)
                .execution_options(synchronize_session=False)
            )
            continue
        retries.succeeded((ITEM, task_id))
    return queued


async def _remind(
    session: AsyncSession,
    task: IncidentTask,
    incident: Incident,
    config: AlertsConfig,
    now: datetime,
    metrics: Metrics,
) -> int:
    """Queue the task's due reminder; 1 when it did (0: finished or reminded since the
    read)."""
    sent = task.reminders_sent + 1
    # still open: a task finished since the read (which leaves ``reminders_sent``
    # alone) is not reminded, nor given a reminder time again
    result = await session.execute(
        update(IncidentTask)
        .where(
            IncidentTask.id == task.id,
            IncidentTask.reminders_sent == task.reminders_sent,
            IncidentTask.status == TASK_OPEN,
        )
        .values(reminders_sent=sent, next_reminder_at=next_reminder(task, now))
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        return 0
    overdue = now >= task.due_at
    why = Reason(
        code="task_overdue" if overdue else "task_due",
        title=task.title,
        role=task.owner_role or None,
        seconds=abs((now - task.due_at).total_seconds()),
    )
    targets, left_out = unkeyed_team_targets(config, [task.team])
    if not targets and not left_out and incident.escalation_policy is not None:
        # a team that is not configured (or has no channel): the routed teams
        routed = incident.escalation_policy.get("teams", [])
        targets, left_out = unkeyed_team_targets(config, routed)
    await enqueue(
        session,
        incident,
        targets,
        reason=f"task-{task.id}-{sent}",
        why=why,
        evidence=[],
        config=config,
        now=now,
        trigger_received_at=None,
    )
    detail: dict[str, object] = {
        "task": task.id,
        "key": task.key,
        "team": task.team,
        "due_at": task.due_at.isoformat(),
        "overdue": overdue,
        "reminder": sent,
        "channels": sorted(targets),
    }
    if left_out:
        detail["left_out"] = left_out  # keyed per incident (PagerDuty): no reminders
    add_event(session, incident.id, "task_reminder", now, detail=detail)
    kind = "overdue" if overdue else "before"
    on_commit(session, metrics.task_reminders.labels(str(incident.tier), kind).inc)
    return 1
