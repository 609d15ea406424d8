"""Responses to an incident: approved templates that fit it, using one, the record of uses.

Using a template renders its approved version with the incident's data (escaped) and the
variables given, and records who used which version for which incident. A version that is
not approved, a template for other tiers, or an incident merged into another (use it on the
survivor) is refused (409); missing variables 422.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.templates import service
from api import audit
from api.auth import Principal, ensure_visible, require
from api.deps import db_session
from api.routers.templates import template_out
from api.runtime import Runtime
from api.schemas import Page
from api.template_schemas import (
    ERRORS,
    LANG_TAG,
    Kind,
    SuggestionOut,
    UsageOut,
    UseIn,
    VersionOut,
)

router = APIRouter(
    route_class=audit.AuditedRoute,
    prefix="/incidents/{incident_id}",
    tags=["responses"],
    responses=ERRORS,
)

Session = Annotated[AsyncSession, Depends(db_session, scope="function")]
IncidentId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the incident's id")]


@router.get("/template-suggestions", response_model=list[SuggestionOut])
async def suggestions(
    incident_id: IncidentId,
    session: Session,
    who: Annotated[Principal, Depends(require("viewer"))],
    kind: Annotated[Kind | None, Query()] = None,
    lang: Annotated[str | None, Query(max_length=16, pattern=LANG_TAG, examples=["en"])] = None,
) -> list[SuggestionOut]:
    """Approved templates whose tiers include the incident's tier, by name."""
    incident = await service.load_incident(session, incident_id)
    ensure_visible(who, incident.watch_id, f"incident {incident_id}")
    found = await service.suggest(session, incident.tier, kind=kind, lang=lang)
    return [
        SuggestionOut(template=template_out(t), version=VersionOut.model_validate(v))
        for t, v in found
    ]


@router.post("/responses", response_model=UsageOut, status_code=status.HTTP_201_CREATED)
@audit.audited("template.use", "incident", "{incident_id}")
async def use_template(
    request: Request,
    incident_id: IncidentId,
    session: Session,
    who: Annotated[Principal, Depends(require("responder"))],
    body: UseIn,
) -> UsageOut:
    """Render an approved template for this incident and record the use."""
    runtime: Runtime = request.app.state.runtime
    now = runtime.clock.now()
    incident = await service.load_incident(session, incident_id, lock=True)
    ensure_visible(who, incident.watch_id, f"incident {incident_id}")
    usage = await service.use_template(
        session, incident, body.template_id, body.version, body.variables, actor=who.name, now=now,
        metrics=runtime.metrics,
    )  # fmt: skip
    out = UsageOut.model_validate(usage)
    audit.record(
        session, who, "template.use", "incident", incident_id, at=now,
        after=out.model_dump(mode="json", exclude={"text", "used_at"}),
    )  # fmt: skip
    return out


@router.get("/responses", response_model=Page[UsageOut])
async def list_responses(
    incident_id: IncidentId,
    session: Session,
    who: Annotated[Principal, Depends(require("viewer"))],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Page[UsageOut]:
    """Templates used for this incident (and for incidents merged into it), newest first:
    who, which version, for which incident, the text."""
    incident = await service.load_incident(session, incident_id)
    ensure_visible(who, incident.watch_id, f"incident {incident_id}")
    items, total = await service.list_usages(session, incident_id, limit=limit, offset=offset)
    return Page[UsageOut](
        items=[UsageOut.model_validate(u) for u in items], total=total, limit=limit, offset=offset
    )
