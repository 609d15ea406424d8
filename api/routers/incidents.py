"""Incidents: list, read (with the newest of its timeline, evidence and deliveries; the
evidence and deliveries paged in full: the timeline's pages are the workflow router's),
acknowledge, resolve. Listed and read, an incident says what holds its alerts back
(``muted``: an inhibition, a silence or quiet hours, ``alerts.incidents.mutes``).

Domain errors (unknown incident: 404, impossible transition: 409) are mapped once, in
``api.app``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from alerts import incidents as service
from alerts.models import Incident
from api import audit
from api.auth import Principal, ensure_visible, require, scoped_watches
from api.deps import db_session, viewable_incident
from api.runtime import Runtime
from api.schemas import (
    ActionIn,
    DeliveryOut,
    EvidenceOut,
    IncidentDetail,
    IncidentOut,
    IncidentPages,
    IncidentView,
    Muted,
    MutedByInhibition,
    MutedByQuietHours,
    MutedBySilence,
    Page,
    TimelineEventOut,
)
from api.template_schemas import errors

router = APIRouter(
    route_class=audit.AuditedRoute,
    prefix="/incidents",
    tags=["incidents"],
    responses=errors("no such incident", "the incident's status does not allow this"),
)

# scope="function": commit before the response is sent, so a failed commit is never a 200
Session = Annotated[AsyncSession, Depends(db_session, scope="function")]
IncidentId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the incident's id")]
StatusFilter = Literal["open", "acknowledged", "mitigating", "resolved", "closed"]


@router.get("", response_model=Page[IncidentView])
async def list_incidents(
    request: Request,
    session: Session,
    who: Annotated[Principal, Depends(require("viewer"))],
    status_: Annotated[StatusFilter | None, Query(alias="status")] = None,
    tier: Annotated[int | None, Query(ge=0, le=3)] = None,
    watch: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Page[IncidentView]:
    """Newest first. A key scoped to some watches lists those (or the ``?watch=`` asked:
    403 outside its scope). ``muted``: what holds each one's alerts back, if anything."""
    items, total = await service.list_incidents(
        session,
        status=status_,
        tier=tier,
        watches=scoped_watches(who, watch),
        limit=limit,
        offset=offset,
    )
    runtime: Runtime = request.app.state.runtime
    held = await service.mutes(session, items, runtime.clock.now())
    return Page[IncidentView](
        items=[_view(i, held.get(i.id)) for i in items],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get("/{incident_id}", response_model=IncidentDetail)
async def get_incident(
    request: Request,
    incident_id: IncidentId,
    session: Session,
    who: Annotated[Principal, Depends(require("viewer"))],
    limit: Annotated[
        int,
        Query(
            ge=0,
            le=service.MAX_DETAIL_ITEMS,
            description="the newest items of the timeline, the evidence and the deliveries "
            "to include (each); the rest are paged at `pages`",
        ),
    ] = service.DETAIL_ITEMS,
) -> IncidentDetail:
    """The incident with the newest ``limit`` items of its timeline, evidence and
    deliveries (each in time order), how many each has (``timeline_total``, ...) and where
    to page them all (``pages``): reading it costs the same after days of a crisis.
    ``muted``: what holds its alerts back, if anything."""
    await viewable_incident(session, who, incident_id)  # (before its lists are read)
    found = await service.incident_detail(session, incident_id, limit=limit)
    runtime: Runtime = request.app.state.runtime
    held = await service.mutes(session, [found.incident], runtime.clock.now())
    base = _view(found.incident, held.get(incident_id)).model_dump()
    return IncidentDetail(
        **base,
        timeline=[TimelineEventOut.of(e) for e in found.timeline],
        evidence=[EvidenceOut.model_validate(e) for e in found.evidence],
        deliveries=[DeliveryOut.model_validate(d) for d in found.deliveries],
        timeline_total=found.timeline_total,
        evidence_total=found.evidence_total,
        deliveries_total=found.deliveries_total,
        pages=IncidentPages(
            timeline=request.url_for("get_timeline", incident_id=incident_id).path,
            evidence=request.url_for("list_evidence", incident_id=incident_id).path,
            deliveries=request.url_for("list_deliveries", incident_id=incident_id).path,
        ),
    )


def _view(incident: Incident, mute: service.Mute | None) -> IncidentView:
    return IncidentView.model_validate(incident).model_copy(update={"muted": _muted(mute)})


def _muted(mute: service.Mute | None) -> Muted | None:
    if mute is None:
        return None
    if mute.by == "inhibition":
        other = mute.inhibitor
        return MutedByInhibition(
            since=mute.since,
            incident_id=mute.inhibitor_id,
            incident_tier=None if other is None else other[1],
            incident_status=None if other is None else other[2],
            ended=mute.ended,
        )
    if mute.by == "quiet_hours":
        assert mute.until is not None  # (set for every quiet-hours hold)
        return MutedByQuietHours(
            since=mute.since,
            until=mute.until,
            teams=list(mute.teams),
            channels=list(mute.channels),
            ended=mute.ended,
        )
    silence = mute.silence
    return MutedBySilence(
        since=mute.since,
        silence_id=mute.silence_id,
        reason=None if silence is None else silence.reason,
        author=None if silence is None else silence.author,
        until=None if silence is None else silence.ends_at,
        ended=mute.ended,
    )


@router.get("/{incident_id}/evidence/items", response_model=Page[EvidenceOut])
async def list_evidence(
    incident_id: IncidentId,
    session: Session,
    who: Annotated[Principal, Depends(require("viewer"))],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Page[EvidenceOut]:
    """Every evidence mention the incident kept, oldest first (``GET /incidents/{id}``
    embeds the newest; ``/evidence`` summarizes them)."""
    await viewable_incident(session, who, incident_id)
    items, total = await service.evidence_page(session, incident_id, limit=limit, offset=offset)
    return Page[EvidenceOut](
        items=[EvidenceOut.model_validate(e) for e in items],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get("/{incident_id}/deliveries", response_model=Page[DeliveryOut])
async def list_deliveries(
    incident_id: IncidentId,
    session: Session,
    who: Annotated[Principal, Depends(require("viewer"))],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Page[DeliveryOut]:
    """Every delivery of the incident's alerts (one per channel, tier and reason, with its
    attempts), in the order they were queued (``GET /incidents/{id}`` embeds the newest)."""
    await viewable_incident(session, who, incident_id)
    items, total = await service.deliveries_page(session, incident_id, limit=limit, offset=offset)
    return Page[DeliveryOut](
        items=[DeliveryOut.model_validate(d) for d in items],
        total=total,
        limit=limit,
        offset=offset,
    )


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
