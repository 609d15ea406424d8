"""Crisis drills: start one on demand, list them, read a drill's report.

Starting a drill injects its scenario's synthetic mentions (marked as a drill end to end)
and needs a pr, executive or admin key; it is audited. Unknown scenario or watch: 422; an
API-only process (no listener, no bus): 409; unknown drill: 404.

A key scoped to some watches starts drills only on them (403 for another watch, before the
watch is looked up), lists only their drills, and reads only their reports (403 for another
watch's drill, as for another watch's incident, and the same 403 for a drill that does not
exist: ``api.auth.HIDDEN_WHEN_MISSING``, answered by ``api.app``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, status
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.workflow import drills
from api import audit
from api.auth import (
    Principal,
    ensure_scope,
    ensure_visible,
    require,
    require_any,
    scoped_watches,
)
from api.deps import db_session
from api.drills import SCENARIOS, start_drill
from api.runtime import Runtime
from api.schemas import Page
from api.template_schemas import errors

router = APIRouter(
    route_class=audit.AuditedRoute,
    prefix="/drills",
    tags=["drills"],
    responses=errors("no such drill", "drills need the listener and the bus in this process"),
)

Session = Annotated[AsyncSession, Depends(db_session, scope="function")]
DrillId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the drill's id")]


class DrillIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scenario: str = Field(
        max_length=64, examples=["product_complaint"], description=", ".join(SCENARIOS)
    )
    watch: str = Field(max_length=100, examples=["acme"])


class DrillOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    scenario: str
    watch_id: str
    story_root: str
    mentions: int
    first_mention_at: datetime
    started_at: datetime
    started_by: str


@router.post("", response_model=DrillOut, status_code=status.HTTP_201_CREATED)
@audit.audited("drill.start", "drill")
async def start(
    request: Request,
    body: DrillIn,
    session: Session,
    who: Annotated[Principal, Depends(require_any("pr", "executive", "admin"))],
) -> DrillOut:
    """Inject a scenario as drill mentions through the pipeline."""
    ensure_scope(who, body.watch)
    runtime: Runtime = request.app.state.runtime
    drill = await start_drill(session, runtime, body.scenario, body.watch, who.name)
    out = DrillOut.model_validate(drill)
    audit.record(
        session, who, "drill.start", "drill", drill.id, at=runtime.clock.now(),
        after=out.model_dump(mode="json"),
    )  # fmt: skip
    return out


@router.get("", response_model=Page[DrillOut])
async def list_drills(
    session: Session,
    who: Annotated[Principal, Depends(require("viewer"))],
    watch: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Page[DrillOut]:
    """Newest first. A key scoped to some watches lists those (or the ``?watch=`` asked:
    403 outside its scope)."""
    items, total = await drills.list_drills(
        session, watches=scoped_watches(who, watch), limit=limit, offset=offset
    )
    return Page[DrillOut](
        items=[DrillOut.model_validate(d) for d in items], total=total, limit=limit, offset=offset
    )


@router.get("/{drill_id}/report", response_model=None)
async def report(
    request: Request,
    drill_id: DrillId,
    session: Session,
    who: Annotated[Principal, Depends(require("viewer"))],
    format_: Annotated[Literal["md", "json"], Query(alias="format")] = "json",
) -> dict[str, Any] | PlainTextResponse:
    """Detection time, time to acknowledge, time to an approved statement against the
    tier's targets, and the gaps found."""
    runtime: Runtime = request.app.state.runtime
    drill = await drills.get_drill(session, drill_id)
    ensure_visible(who, drill.watch_id, f"drill {drill_id}")
    data = await drills.measure(session, drill, runtime.settings.alerts, runtime.clock.now())
    if format_ == "md":
        return PlainTextResponse(drills.markdown(data), media_type="text/markdown")
    return data
