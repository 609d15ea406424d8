"""Incident workflow changes made by people: mitigate, close, roles, notes, tasks, merge.

Transitions (``TRANSITIONS``; anything else is ``InvalidTransition``, the API's 409)::

    open ──► acknowledged ──► mitigating ──► resolved ──► closed
      │            └──────────────────────────▲
      └───────────────────────────────────────┘

Doing what is already done (ack twice, mitigate twice, close twice) changes nothing.
``open -> mitigating`` acknowledges first (the escalation stops on ack, as always). A
higher-tier signal re-opens a resolved or closed incident (``alerts.incidents``).

What may change in which status: tasks only while the incident is live (open,
acknowledged, mitigating): once it is resolved or closed they are final (``update_task``:
409; reading them works); roles until it is closed; notes always.

Merging: the incident merged closes and points to the survivor (``merged_into_id``); its
evidence, heat snapshots and timeline move to the survivor, its open tasks are cancelled,
its roles move where the survivor has none, and later signals of its story go to the
survivor. Only incidents of one watch, both real or both drills, neither closed, and a
survivor of at least the merged one's tier can be merged; a person (the API) cannot merge
a live incident into a resolved one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from alerts import escalation, incidents, outbox, sla
from alerts.incidents import InvalidTransition
from alerts.models import (
    ACKNOWLEDGED,
    CANCELLED,
    CLOSED,
    FINISHED,
    FOLLOW_UP_REASONS,
    MITIGATING,
    OPEN,
    PENDING,
    RESOLVED,
    Delivery,
    Incident,
    IncidentEvent,
    IncidentEvidence,
)
from alerts.timeline import add_event
from alerts.workflow import tasks as task_service
from alerts.workflow.models import (
    TASK_CANCELLED,
    TASK_OPEN,
    HeatSnapshot,
    IncidentRole,
    IncidentTask,
    TierChange,
)
from core.clock import Clock
from core.db import on_commit
from core.metrics import Metrics

TRANSITIONS: Final[dict[str, tuple[str, ...]]] = {
    OPEN: (ACKNOWLEDGED, MITIGATING, RESOLVED),
    ACKNOWLEDGED: (MITIGATING, RESOLVED),
    MITIGATING: (RESOLVED,),
    RESOLVED: (CLOSED,),
    CLOSED: (),
}


class RoleNotAssigned(LookupError):
    """Unassigning a role nobody holds (the API's 404)."""


class InvalidMerge(ValueError):
    """A merge request that can never work (into itself: the API's 422)."""


def allowed(current: str, target: str) -> bool:
    return target == current or target in TRANSITIONS.get(current, ())


def _refuse(incident: Incident, target: str, hint: str = "") -> InvalidTransition:
    nexts = ", ".join(TRANSITIONS.get(incident.status, ())) or "nothing"
    return InvalidTransition(
        f"incident {incident.id} is {incident.status}; it cannot become {target} "
        f"(from {incident.status}: {nexts}){hint}"
    )


async def mitigate(
    session: AsyncSession,
    incident_id: int,
    actor: str,
    clock: Clock,
    *,
    metrics: Metrics | None = None,
    note: str | None = None,
) -> Incident:
    """Someone works on the fix; an open incident is acknowledged on the way."""
    incident = await incidents.load_for_change(session, incident_id)
    if incident.status == MITIGATING:
        return incident
    if not allowed(incident.status, MITIGATING):
        raise _refuse(incident, MITIGATING)
    if incident.status == OPEN:
        await incidents.acknowledge(session, incident_id, actor, clock, metrics=metrics)
    now = clock.now()
    incident.status = MITIGATING
    incident.updated_at = now
    add_event(session, incident.id, "mitigating", now, actor=actor, detail={"note": note})
    return incident


async def close(
    session: AsyncSession, incident_id: int, actor: str, clock: Clock, *, note: str | None = None
) -> Incident:
    """Done with, report written: only a resolved incident can be closed."""
    incident = await incidents.load_for_change(session, incident_id)
    if incident.status == CLOSED:
        return incident
    if not allowed(incident.status, CLOSED):
        raise _refuse(incident, CLOSED, "; resolve it first")
    now = clock.now()
    open_tasks = await _open_tasks(session, incident_id)
    incident.status = CLOSED
    incident.closed_at = now
    incident.closed_by = actor
    incident.updated_at = now
    add_event(
        session,
        incident.id,
        "closed",
        now,
        actor=actor,
        detail={"note": note, "open_tasks": [t.key for t in open_tasks]},
    )
    return incident


async def _open_tasks(session: AsyncSession, incident_id: int) -> list[IncidentTask]:
    return list(
        (
            await session.scalars(
                select(IncidentTask)
                .where(IncidentTask.incident_id == incident_id, IncidentTask.status == TASK_OPEN)
                .order_by(IncidentTask.id)
            )
        ).all()
    )


# -- roles ----------------------------------------------------------------------------


async def roles_of(session: AsyncSession, incident_id: int) -> list[IncidentRole]:
    return list(
        (
            await session.scalars(
                select(IncidentRole)
                .where(IncidentRole.incident_id == incident_id)
                .order_by(IncidentRole.role)
            )
        ).all()
    )


async def _role(session: AsyncSession, incident_id: int, role: str) -> IncidentRole | None:
    return await session.scalar(
        select(IncidentRole).where(
            IncidentRole.incident_id == incident_id, IncidentRole.role == role
        )
    )


async def assign_role(
    session: AsyncSession, incident_id: int, role: str, person: str, actor: str, now: datetime
) -> tuple[str | None, IncidentRole]:
    """Give ``role`` to ``person`` (replacing whoever held it); returns (previous, row)."""
    incident = await incidents.load_for_change(session, incident_id)
    if incident.status == CLOSED:
        raise InvalidTransition(f"incident {incident_id} is closed; its roles are final")
    row = await _role(session, incident_id, role)
    previous = row.person if row is not None else None
    if row is None:
        row = IncidentRole(incident_id=incident_id, role=role)
        session.add(row)
    row.person, row.assigned_by, row.assigned_at = person, actor, now
    incident.updated_at = now
    add_event(
        session,
        incident_id,
        "role_assigned",
        now,
        actor=actor,
        detail={"role": role, "person": person, "previous": previous},
    )
    await session.flush()
    return previous, row


async def unassign_role(
    session: AsyncSession, incident_id: int, role: str, actor: str, now: datetime
) -> str:
    """Nobody holds ``role`` any more; returns who did (``RoleNotAssigned``: nobody)."""
    incident = await incidents.load_for_change(session, incident_id)
    if incident.status == CLOSED:
        raise InvalidTransition(f"incident {incident_id} is closed; its roles are final")
    row = await _role(session, incident_id, role)
    if row is None:
        raise RoleNotAssigned(f"nobody holds the {role} role on incident {incident_id}")
    person = row.person
    await session.delete(row)
    incident.updated_at = now
    add_event(
        session, incident_id, "role_unassigned", now, actor=actor,
        detail={"role": role, "person": person},
    )  # fmt: skip
    return person


# -- notes and tasks ------------------------------------------------------------------


async def add_note(
    session: AsyncSession, incident_id: int, text: str, actor: str, now: datetime
) -> IncidentEvent:
    incident = await incidents.load_for_change(session, incident_id)
    incident.updated_at = now
    event = add_event(session, incident_id, "note", now, actor=actor, detail={"text": text})
    await session.flush()
    return event


async def tasks_of(session: AsyncSession, incident_id: int) -> list[IncidentTask]:
    return list(
        (
            await session.scalars(
                select(IncidentTask)
                .where(IncidentTask.incident_id == incident_id)
                .order_by(IncidentTask.due_at, IncidentTask.id)
            )
        ).all()
    )


def _tasks_final(incident: Incident) -> str:
    """Why the tasks of a finished incident cannot change (the API's 409 message)."""
    if incident.merged_into_id is not None:
        into = incident.merged_into_id
        return (
            f"incident {incident.id} was merged into incident {into}; its tasks are final "
            f"(its open ones were cancelled by the merge): work on incident {into}"
        )
    return (
        f"incident {incident.id} is {incident.status}; its tasks are final: they change only "
        "while the incident is open, acknowledged or mitigating (it must be reopened first: "
        "a higher-tier signal reopens it)"
    )


async def update_task(
    session: AsyncSession,
    incident_id: int,
    task_id: int,
    status: str,
    actor: str,
    now: datetime,
    *,
    note: str | None = None,
) -> IncidentTask:
    """Mark an open task done or skipped.

    ``InvalidTransition`` (the API's 409) when the task is not open, or when its incident
    is resolved or closed (merged included): its tasks are final then, as the report
    judges them at the resolve (a task still open then stays open: the record says it was
    not done while the incident was live), its reminders have stopped, and only a
    higher-tier signal reopens the incident. ``TaskNotFound`` when the incident has no
    such task. Reading the tasks (``tasks_of``) works in every status."""
    if status not in task_service.FINISHING:
        raise ValueError(f"a task can be marked {' or '.join(task_service.FINISHING)}")
    incident = await incidents.load_for_change(session, incident_id)
    task = await session.scalar(
        select(IncidentTask)
        .where(IncidentTask.id == task_id, IncidentTask.incident_id == incident_id)
        .with_for_update()
    )
    if task is None:
        raise task_service.TaskNotFound(incident_id, task_id)
    if incident.status in FINISHED:
        raise InvalidTransition(_tasks_final(incident))
    if task.status != TASK_OPEN:
        raise InvalidTransition(f"task {task_id} is already {task.status}")
    task_service.finish(task, status, actor, now, note)
    add_event(
        session, incident_id, "task_updated", now, actor=actor,
        detail={"task": task.id, "key": task.key, "status": status, "note": note,
                "outcome": task_service.outcome(task, now)},
    )  # fmt: skip
    return task


# -- merge ----------------------------------------------------------------------------


def _check_merge(source: Incident, survivor: Incident, *, live_into_resolved: bool) -> None:
    if source.watch_id != survivor.watch_id:
        raise InvalidTransition(
            f"incidents {source.id} and {survivor.id} belong to different watches "
            f"({source.watch_id!r}, {survivor.watch_id!r}); only one story's incidents merge"
        )
    if source.drill != survivor.drill:
        raise InvalidTransition("a drill incident never merges with a real one")
    for incident in (source, survivor):
        if incident.status == CLOSED:
            raise InvalidTransition(f"incident {incident.id} is closed; it cannot be merged")
    if not live_into_resolved and survivor.status == RESOLVED and source.status not in FINISHED:
        raise InvalidTransition(
            f"incident {survivor.id} is resolved and incident {source.id} is {source.status}: "
            f"the merge would close {source.id} and settle its alerts while nobody works on "
            f"{survivor.id}; keep working incident {source.id} (or resolve it), or merge once "
            f"{survivor.id} is live again (a higher-tier signal reopens it)"
        )
    if source.tier > survivor.tier:
        raise InvalidTransition(
            f"incident {source.id} is tier {source.tier}, above incident {survivor.id} "
            f"(tier {survivor.tier}): merge the lower-tier incident into the higher one"
        )


async def merge(
    session: AsyncSession,
    source_id: int,
    into_id: int,
    actor: str,
    clock: Clock,
    *,
    metrics: Metrics | None = None,
    note: str | None = None,
    live_into_resolved: bool = True,
) -> tuple[Incident, Incident]:
    """Merge incident ``source_id`` into ``into_id``; returns (merged, survivor).

    ``live_into_resolved=False`` (a person's merge, through the API) refuses to merge an
    incident still worked (open, acknowledged, mitigating) into a resolved one: that would
    close it, cancel its tasks and alerts and send its channels a resolve, leaving the
    story with no live incident (its later signals reach the resolved survivor, which only
    a higher tier reopens)."""
    if source_id == into_id:
        raise InvalidMerge(f"incident {source_id} cannot be merged into itself")
    # lock in id order: two merges of the same pair never deadlock
    first, second = sorted((source_id, into_id))
    locked = {
        first: await incidents.load_for_change(session, first),
        second: await incidents.load_for_change(session, second),
    }
    source, survivor = locked[source_id], locked[into_id]
    _check_merge(source, survivor, live_into_resolved=live_into_resolved)
    now = clock.now()
    moved_events = (
        await session.scalars(select(IncidentEvent).where(IncidentEvent.incident_id == source.id))
    ).all()
    for event in moved_events:
        event.incident_id = survivor.id
        event.detail = {**(event.detail or {}), "from_incident": source.id}
    known = set(
        await session.scalars(
            select(IncidentEvidence.mention_id).where(IncidentEvidence.incident_id == survivor.id)
        )
    )
    evidence = (
        await session.scalars(
            select(IncidentEvidence).where(IncidentEvidence.incident_id == source.id)
        )
    ).all()
    moved_evidence = 0
    for row in evidence:
        if row.mention_id in known:
            continue
        row.incident_id = survivor.id
        moved_evidence += 1
    await session.execute(
        update(HeatSnapshot)
        .where(HeatSnapshot.incident_id == source.id)
        .values(incident_id=survivor.id)
        .execution_options(synchronize_session=False)
    )
    survivor_roles = {r.role for r in await roles_of(session, survivor.id)}
    moved_roles = []
    for role in await roles_of(session, source.id):
        if role.role not in survivor_roles:
            role.incident_id = survivor.id
            moved_roles.append(role.role)
    cancelled_tasks = []
    for task in await _open_tasks(session, source.id):
        task_service.finish(task, TASK_CANCELLED, actor, now, f"merged into incident {survivor.id}")
        cancelled_tasks.append(task.key)
    # its queued follow-ups still go: a resolve queued before the merge is the only one
    # that closes its page where it went (none is queued below for a resolved incident)
    await session.execute(
        update(Delivery)
        .where(
            Delivery.incident_id == source.id,
            Delivery.status == PENDING,
            Delivery.reason.not_in(FOLLOW_UP_REASONS),
        )
        .values(status=CANCELLED, last_error=f"cancelled: merged into incident {survivor.id}")
        .execution_options(synchronize_session=False)
    )
    was = source.status
    escalation.disarm(source)
    merged: dict[str, object] = {"into": survivor.id, "was": was, "note": note}
    if source.status not in FINISHED:
        # its clock stops: a deadline it passed since the last tick is a breach all the same
        await sla.missed_at_stop(session, source, now, "merged", metrics)
        if (not_needed := sla.not_needed(source, now, "merged")) is not None:
            merged["sla"] = not_needed  # (for the report: the deadline is cleared below)
        if source.sla_met_at is None and source.sla_breached_at is None:
            sla.stop(source)  # (a clock met or missed keeps its deadline, for the report)
    source.status = CLOSED
    source.merged_into_id = survivor.id
    source.closed_at = now
    source.closed_by = actor
    if was not in FINISHED:
        source.resolved_at, source.resolved_by = now, actor
    source.updated_at = survivor.updated_at = now
    await session.flush()
    if was not in FINISHED:
        # Its alerts are settled where they went: a PagerDuty alert would stay open (and
        # page again at its acknowledgement timeout), a chat would never hear of it again.
        # The survivor carries on with its own alerts.
        await outbox.enqueue_follow_ups(
            session, source, "resolve", f"{actor} (merged into incident {survivor.id})", now
        )
    add_event(session, source.id, "merged_into", now, actor=actor, detail=merged)
    add_event(
        session,
        survivor.id,
        "merged_from",
        now,
        actor=actor,
        detail={
            "incident": source.id,
            "story_id": source.story_id,
            "tier": source.tier,
            "was": was,
            "note": note,
            "moved_events": len(moved_events),
            "moved_evidence": moved_evidence,
            "moved_roles": moved_roles,
            "cancelled_tasks": cancelled_tasks,
        },
    )
    if metrics is not None:
        on_commit(session, metrics.incidents_merged.inc)
    return source, survivor


async def incident_row(session: AsyncSession, incident_id: int) -> Incident:
    """The incident's own row (``IncidentNotFound`` when missing), for a scope check or a
    404: not its timeline, evidence and deliveries, which ``incidents.get_incident`` loads
    whole (seconds for a long incident, on every page of its timeline before)."""
    incident = await session.get(Incident, incident_id)
    if incident is None:
        raise incidents.IncidentNotFound(incident_id)
    return incident


async def timeline(
    session: AsyncSession,
    incident_id: int,
    *,
    kinds: list[str] | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[IncidentEvent], int]:
    """A page of the incident's timeline in time order, optionally of some kinds only."""
    await incident_row(session, incident_id)  # IncidentNotFound
    conditions = [IncidentEvent.incident_id == incident_id]
    if kinds:
        conditions.append(IncidentEvent.kind.in_(kinds))
    total = await session.scalar(select(func.count()).select_from(IncidentEvent).where(*conditions))
    items = await session.scalars(
        select(IncidentEvent)
        .where(*conditions)
        .order_by(IncidentEvent.at, IncidentEvent.id)
        .limit(limit)
        .offset(offset)
    )
    return list(items), int(total or 0)


async def tier_history(session: AsyncSession, incident_id: int) -> list[TierChange]:
    await incident_row(session, incident_id)
    return list(
        (
            await session.scalars(
                select(TierChange)
                .where(TierChange.incident_id == incident_id)
                .order_by(TierChange.at, TierChange.id)
            )
        ).all()
    )
