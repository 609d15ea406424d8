"""The incident workflow: mitigate, close, merge, roles, tasks, notes, timeline, tier
history, evidence and the post-incident report.

Every change is audited (who, what, before/after) in the request's unit of work. Unknown
incident, task or unassigned role: 404; a transition the status does not allow: 409
(``alerts.workflow.service.TRANSITIONS``), and so is a change to a task of a resolved or
closed incident; a bad body or an unknown role name: 422.
Closing is for the pr, legal, executive and admin roles; every other change for any role
that works incidents.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request, status
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.config import IncidentRoleName
from alerts.models import EVENT_KINDS
from alerts.timeline import CATEGORIES
from alerts.workflow import evidence, report, service
from alerts.workflow.models import IncidentTask
from alerts.workflow.tasks import judged_at, outcome
from api import audit
from api.auth import Principal, ensure_visible, require, require_any
from api.deps import db_session, viewable_incident
from api.runtime import Runtime
from api.schemas import ActionIn, IncidentOut, Page
from api.template_schemas import errors
from api.workflow_schemas import (
    EvidenceSummaryOut,
    HeatPointOut,
    MentionOut,
    MergeIn,
    MergeOut,
    NoteIn,
    RoleIn,
    RoleOut,
    TaskOut,
    TaskUpdateIn,
    TierChangeOut,
    TimelineItemOut,
)

ERRORS = errors(
    "no such incident, task or assigned role", "the incident's status does not allow this"
)
log = logging.getLogger(__name__)
router = APIRouter(
    route_class=audit.AuditedRoute,
    prefix="/incidents/{incident_id}",
    tags=["incident workflow"],
    responses=ERRORS,
)

Session = Annotated[AsyncSession, Depends(db_session, scope="function")]
IncidentId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the incident's id")]
TaskId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the task's id")]
RoleName = Annotated[IncidentRoleName, Path(description="the role on the incident")]
Worker = Annotated[Principal, Depends(require("responder"))]
Viewer = Annotated[Principal, Depends(require("viewer"))]
Closer = Annotated[Principal, Depends(require_any("pr", "legal", "executive", "admin"))]
Note = Annotated[ActionIn | None, Body()]


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def _scoped(session: AsyncSession, who: Principal, incident_id: int) -> dict[str, Any]:
    """The incident's audit state (404 when missing), after the key's scope check."""
    before = await audit.incident_state(session, incident_id)
    ensure_visible(who, before["watch_id"], f"incident {incident_id}")
    return before


def _task_out(task: IncidentTask, at: datetime) -> TaskOut:
    """The task with its outcome judged at ``at`` (``judged_at``: the resolve of a
    resolved or closed incident, as the report judges it; else now)."""
    return TaskOut.model_validate(task).model_copy(update={"outcome": outcome(task, at)})


@router.post("/mitigate", response_model=IncidentOut)
@audit.audited("incident.mitigate", "incident", "{incident_id}")
async def mitigate(
    request: Request, incident_id: IncidentId, session: Session, who: Worker, body: Note = None
) -> IncidentOut:
    """Mitigation under way (an open incident is acknowledged on the way: escalation stops)."""
    runtime = _runtime(request)
    before = await _scoped(session, who, incident_id)
    incident = await service.mitigate(
        session,
        incident_id,
        who.name,
        runtime.clock,
        metrics=runtime.metrics,
        note=body.note if body else None,
    )
    await audit.record_incident_change(
        session, who, "incident.mitigate", incident_id, before, at=runtime.clock.now()
    )
    return IncidentOut.model_validate(incident)


@router.post("/close", response_model=IncidentOut)
@audit.audited("incident.close", "incident", "{incident_id}")
async def close(
    request: Request, incident_id: IncidentId, session: Session, who: Closer, body: Note = None
) -> IncidentOut:
    """Close a resolved incident (409 otherwise). Closing twice is harmless."""
    runtime = _runtime(request)
    before = await _scoped(session, who, incident_id)
    incident = await service.close(
        session, incident_id, who.name, runtime.clock, note=body.note if body else None
    )
    await audit.record_incident_change(
        session, who, "incident.close", incident_id, before, at=runtime.clock.now()
    )
    return IncidentOut.model_validate(incident)


@router.post("/merge", response_model=MergeOut)
@audit.audited("incident.merge", "incident", "{incident_id}")
async def merge(
    request: Request, incident_id: IncidentId, body: MergeIn, session: Session, who: Worker
) -> MergeOut:
    """Merge this incident into ``into`` (same story): it closes and points to the survivor;
    its evidence, heat curve and timeline move there. A live incident does not merge into
    a resolved one (409)."""
    runtime = _runtime(request)
    # locked in id order, as service.merge does: two merges of one pair, each way, at
    # once would otherwise each hold one incident and wait for the other (a deadlock)
    states = {i: await _scoped(session, who, i) for i in sorted({incident_id, body.into})}
    before, survivor_before = states[incident_id], states[body.into]
    merged, survivor = await service.merge(
        session,
        incident_id,
        body.into,
        who.name,
        runtime.clock,
        metrics=runtime.metrics,
        note=body.note,
        live_into_resolved=False,
    )
    now = runtime.clock.now()
    await audit.record_incident_change(
        session, who, "incident.merge", body.into, survivor_before, at=now
    )
    await audit.record_incident_change(session, who, "incident.merge", incident_id, before, at=now)
    return MergeOut(
        merged=IncidentOut.model_validate(merged), survivor=IncidentOut.model_validate(survivor)
    )


@router.get("/roles", response_model=list[RoleOut])
async def list_roles(incident_id: IncidentId, session: Session, who: Viewer) -> list[RoleOut]:
    await viewable_incident(session, who, incident_id)
    return [RoleOut.model_validate(r) for r in await service.roles_of(session, incident_id)]


@router.put("/roles/{role}", response_model=RoleOut)
@audit.audited("incident.role.assign", "incident", "{incident_id}")
async def assign_role(
    request: Request,
    incident_id: IncidentId,
    role: RoleName,
    body: RoleIn,
    session: Session,
    who: Worker,
) -> RoleOut:
    """Give a role on the incident to a person (replaces whoever held it)."""
    runtime = _runtime(request)
    await _scoped(session, who, incident_id)
    now = runtime.clock.now()
    previous, row = await service.assign_role(
        session, incident_id, role, body.person, who.name, now
    )
    out = RoleOut.model_validate(row)
    audit.record(
        session, who, "incident.role.assign", "incident", incident_id, at=now,
        before={"role": role, "person": previous}, after=out.model_dump(mode="json"),
    )  # fmt: skip
    return out


@router.delete("/roles/{role}", response_model=list[RoleOut])
@audit.audited("incident.role.unassign", "incident", "{incident_id}")
async def unassign_role(
    request: Request, incident_id: IncidentId, role: RoleName, session: Session, who: Worker
) -> list[RoleOut]:
    """Nobody holds the role any more (404 when nobody did); returns the roles left."""
    runtime = _runtime(request)
    await _scoped(session, who, incident_id)
    now = runtime.clock.now()
    person = await service.unassign_role(session, incident_id, role, who.name, now)
    audit.record(
        session, who, "incident.role.unassign", "incident", incident_id, at=now,
        before={"role": role, "person": person}, after={"role": role, "person": None},
    )  # fmt: skip
    await session.flush()
    return [RoleOut.model_validate(r) for r in await service.roles_of(session, incident_id)]


@router.get("/tasks", response_model=list[TaskOut])
async def list_tasks(
    request: Request, incident_id: IncidentId, session: Session, who: Viewer
) -> list[TaskOut]:
    """The playbook tasks, by due time, with their outcome so far: an open task's judged
    at the resolve once the incident is resolved or closed (as the report judges it),
    else now."""
    incident = await viewable_incident(session, who, incident_id)
    at = judged_at(incident, _runtime(request).clock.now())
    return [_task_out(t, at) for t in await service.tasks_of(session, incident_id)]


@router.patch("/tasks/{task_id}", response_model=TaskOut)
@audit.audited("incident.task.update", "incident", "{incident_id}")
async def update_task(
    request: Request,
    incident_id: IncidentId,
    task_id: TaskId,
    body: TaskUpdateIn,
    session: Session,
    who: Worker,
) -> TaskOut:
    """Mark an open task done or skipped: reminders stop. 409 when the task is not open,
    or when the incident is resolved or closed (merged included): its tasks are final then
    (reading them still works)."""
    runtime = _runtime(request)
    await _scoped(session, who, incident_id)
    now = runtime.clock.now()
    task = await service.update_task(
        session, incident_id, task_id, body.status, who.name, now, note=body.note
    )
    out = _task_out(task, now)  # (a live incident's: judged now)
    audit.record(
        session, who, "incident.task.update", "incident", incident_id, at=now,
        before={"task": task_id, "status": "open"}, after=out.model_dump(mode="json"),
    )  # fmt: skip
    return out


@router.post("/notes", response_model=TimelineItemOut, status_code=status.HTTP_201_CREATED)
@audit.audited("incident.note", "incident", "{incident_id}")
async def add_note(
    request: Request, incident_id: IncidentId, body: NoteIn, session: Session, who: Worker
) -> TimelineItemOut:
    """Add a note to the timeline (also on resolved and closed incidents)."""
    runtime = _runtime(request)
    await _scoped(session, who, incident_id)
    now = runtime.clock.now()
    event = await service.add_note(session, incident_id, body.text, who.name, now)
    out = TimelineItemOut.of(event)
    audit.record(
        session, who, "incident.note", "incident", incident_id, at=now,
        after=out.model_dump(mode="json"),
    )  # fmt: skip
    return out


@router.get("/timeline", response_model=Page[TimelineItemOut])
async def get_timeline(
    incident_id: IncidentId,
    session: Session,
    who: Viewer,
    kind: Annotated[list[str] | None, Query(description="only these kinds")] = None,
    category_: Annotated[
        list[str] | None, Query(alias="category", description=f"one of {', '.join(CATEGORIES)}")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Page[TimelineItemOut]:
    """The typed timeline in time order: every change, alert, ack, escalation, task,
    template use and note with its actor and time."""
    unknown = [k for k in kind or () if k not in EVENT_KINDS]
    unknown += [c for c in category_ or () if c not in CATEGORIES]
    if unknown:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"unknown kind or category {unknown[:5]}; kinds: {', '.join(EVENT_KINDS)}; "
            f"categories: {', '.join(CATEGORIES)}",
        )
    await viewable_incident(session, who, incident_id)
    kinds = list(kind or [])
    for name in category_ or ():
        kinds += CATEGORIES[name]
    items, total = await service.timeline(
        session, incident_id, kinds=kinds or None, limit=limit, offset=offset
    )
    return Page[TimelineItemOut](
        items=[TimelineItemOut.of(e) for e in items], total=total, limit=limit, offset=offset
    )


@router.get("/tier-history", response_model=list[TierChangeOut])
async def get_tier_history(
    incident_id: IncidentId, session: Session, who: Viewer
) -> list[TierChangeOut]:
    await viewable_incident(session, who, incident_id)
    rows = await service.tier_history(session, incident_id)
    return [TierChangeOut.model_validate(t) for t in rows]


@router.get("/evidence", response_model=EvidenceSummaryOut)
async def get_evidence(
    incident_id: IncidentId,
    session: Session,
    who: Viewer,
    limit: Annotated[int, Query(ge=1, le=200, description="representative mentions")] = 10,
) -> EvidenceSummaryOut:
    """Representative mentions (most-followed first), the sentiment mix, the heat curve."""
    await viewable_incident(session, who, incident_id)
    found = await evidence.collect(session, incident_id, limit=limit)
    return EvidenceSummaryOut(
        mentions=[MentionOut.model_validate(m) for m in found.mentions],
        total_mentions=found.total_mentions,
        sentiment_mix=found.sentiment_mix,
        heat_curve=[HeatPointOut.model_validate(p) for p in found.heat_curve],
    )


@router.get(
    "/report",
    responses={200: {"content": {"text/markdown": {}, "application/json": {}}}},
    response_model=None,
)
async def get_report(
    request: Request,
    incident_id: IncidentId,
    session: Session,
    who: Viewer,
    format_: Annotated[Literal["md", "json"], Query(alias="format")] = "json",
) -> StreamingResponse:
    """The post-incident report: what happened, when, who did what, deadlines met or missed,
    and every timeline event. Streamed: its bounded part is read first (a missing incident,
    a database error: an ordinary error answer), then its lists, a chunk of events at a
    time, each in a short session of its own (memory and connections do not grow with the
    incident). The Markdown's last line counts the timeline's events (the JSON's
    ``timeline_events``): a report cut short lacks it."""
    await viewable_incident(session, who, incident_id)
    runtime = _runtime(request)
    found = await report.head(session, incident_id, runtime.clock.now())
    assert runtime.sessions is not None  # (db_session answered 503 otherwise)
    if format_ == "md":
        pieces = report.stream_markdown(found, runtime.sessions)
        media_type = "text/markdown"
    else:
        pieces = report.stream_json(found, runtime.sessions)
        media_type = "application/json"
    return StreamingResponse(_logged(pieces, incident_id), media_type=media_type)


async def _logged(pieces: AsyncIterator[str], incident_id: int) -> AsyncIterator[str]:
    """``pieces``; an error once the answer has begun can only cut it short: logged."""
    try:
        async for piece in pieces:
            yield piece
    except Exception:
        log.exception("the report of incident %s was cut short by an error", incident_id)
        raise
