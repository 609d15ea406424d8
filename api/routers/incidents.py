"""Incidents: list, read (timeline, evidence, deliveries), acknowledge, resolve.

Domain errors (unknown incident: 404, impossible transition: 409) are mapped once, in
``api.app``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from alerts import incidents as service
from api import audit
from api.auth import Principal, ensure_visible, require, scoped_watches
from api.deps import db_session
from api.runtime import Runtime
from api.schemas import ActionIn, IncidentDetail, IncidentOut, Page

router = APIRouter(route_class=audit.AuditedRoute, prefix="/incidents", tags=["incidents"])

# scope="function": commit before the response is sent, so a failed commit is never a 200
Session = Annotated[AsyncSession, Depends(db_session, scope="function")]
IncidentId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the incident's id")]
StatusFilter = Literal["open", "acknowledged", "mitigating", "resolved", "closed"]


@router.get("", response_model=Page[IncidentOut])
async def list_incidents(
    request: Request,
    session: Session,
    who: Annotated[Principal, Depends(require("viewer"))],
    status_: Annotated[StatusFilter | None, Query(alias="status")] = None,
    tier: Annotated[int | None, Query(ge=0, le=3)] = None,
    watch: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Page[IncidentOut]:
    """Newest first. A key scoped to some watches lists those (or the ``?watch=`` asked:
    403 outside its scope)."""
    items, total = await service.list_incidents(
        session,
        status=status_,
        tier=tier,
        watches=scoped_watches(who, watch),
        limit=limit,
        offset=offset,
    )
    return Page[IncidentOut](
        items=[IncidentOut.model_validate(i) for i in items],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get("/{incident_id}", response_model=IncidentDetail)
async def get_incident(
    incident_id: IncidentId,
    session: Session,
    who: Annotated[Principal, Depends(require("viewer"))],
) -> IncidentDetail:
    incident = await service.get_incident(session, incident_id)
    ensure_visible(who, incident.watch_id, f"incident {incident_id}")
    return IncidentDetail.model_validate(incident)


@router.post("/{incident_id}/ack", response_model=IncidentOut)
@audit.audited("incident.acknowledge", "incident", "{incident_id}")
async def acknowledge(
    request: Request,
    incident_id: IncidentId,
    session: Session,
    who: Annotated[Principal, Depends(require("responder"))],
    body: Annotated[ActionIn | None, Body()] = None,
) -> IncidentOut:
    """Acknowledge: stops the escalation. Acknowledging twice is harmless."""
    runtime: Runtime = request.app.state.runtime
    before = await audit.incident_state(session, incident_id)
    ensure_visible(who, before["watch_id"], f"incident {incident_id}")
    incident = await service.acknowledge(
        session,
        incident_id,
        who.name,
        runtime.clock,
        metrics=runtime.metrics,
        note=body.note if body else None,
    )
    await audit.record_incident_change(
        session, who, "incident.acknowledge", incident_id, before, at=runtime.clock.now()
    )
    return IncidentOut.model_validate(incident)


@router.post("/{incident_id}/resolve", response_model=IncidentOut)
@audit.audited("incident.resolve", "incident", "{incident_id}")
async def resolve(
    request: Request,
    incident_id: IncidentId,
    session: Session,
    who: Annotated[Principal, Depends(require("responder"))],
    body: Annotated[ActionIn | None, Body()] = None,
) -> IncidentOut:
    """Resolve: cancels pending deliveries. Resolving twice is harmless."""
    runtime: Runtime = request.app.state.runtime
    before = await audit.incident_state(session, incident_id)
    ensure_visible(who, before["watch_id"], f"incident {incident_id}")
    incident = await service.resolve(
        session,
        incident_id,
        who.name,
        runtime.clock,
        metrics=runtime.metrics,
        note=body.note if body else None,
    )
    await audit.record_incident_change(
        session, who, "incident.resolve", incident_id, before, at=runtime.clock.now()
    )
    return IncidentOut.model_validate(incident)
