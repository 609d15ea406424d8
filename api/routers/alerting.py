"""Alert routing controls: silences, who is on call, and recorded responses (SLA).

Silences are created with matchers (the routing tree's matcher fields), an end time and
a reason; the author is the API key's name. Unknown silence: 404 (403 for a key scoped to
some watches, as another watch's silence: ``api.auth.HIDDEN_WHEN_MISSING``); a silence that
would mute everything, ends in the past or has no reason: 422.

A key scoped to some watches works only with silences limited to them: its silences need a
``watch`` matcher naming only its watches (403 otherwise: a silence without one would mute
every watch), it may expire only such silences (403, the same for one that does not exist)
and it lists only those. On call, it sees only the teams its watches' alerts may reach
(``api.scope.teams_of_watches``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from alerts import incidents, silences
from alerts.config import TIERS, Matchers
from alerts.models import Silence
from alerts.oncall import team_on_call
from api import audit
from api.auth import (
    Principal,
    ensure_visible,
    hidden_when_missing,
    limited_to_scope,
    not_visible,
    require,
    scoped_watches,
)
from api.deps import db_session
from api.runtime import Runtime
from api.schemas import IncidentOut
from api.scope import silence_watches, teams_of_watches, watches_named
from api.template_schemas import errors
from core.events import UtcDatetime

router = APIRouter(
    route_class=audit.AuditedRoute,
    tags=["alerting"],
    responses=errors("no such silence or incident", "the incident's status does not allow this"),
)

Session = Annotated[AsyncSession, Depends(db_session, scope="function")]
SilenceId = Annotated[int, Path(ge=1, le=2**31 - 1)]
IncidentId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the incident's id")]


class SilenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    matchers: Matchers
    ends_at: UtcDatetime  # aware, and still a date once in UTC (9999-12-31T23:59-01:00 is not)
    starts_at: UtcDatetime | None = None
    reason: str = Field(min_length=1, max_length=2000)


class SilenceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    matchers: dict[str, object]
    starts_at: datetime
    ends_at: datetime
    author: str
    reason: str
    created_at: datetime
    released_at: datetime | None = Field(
        description="when, after the silence ended, the alerter alerted the incidents it had "
        "muted that were still open and unacknowledged (none may have been); null while the "
        "silence lasts and until the alerter's next tick after its end"
    )


class OnCallOut(BaseModel):
    team: str
    person: str | None
    until: datetime | None
    override_reason: str | None


class ResponseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["reply", "statement", "other"]
    note: str | None = Field(None, max_length=4000)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _mine(who: Principal) -> str:
    return ", ".join(sorted(who.watches or ())) or "none"


def _ensure_silence_scope(who: Principal, watches: list[str] | None) -> None:
    """403 unless a silence to create, limited to ``watches``, stays in ``who``'s scope."""
    scope = who.watches
    if scope is None or limited_to_scope(who, watches):
        return
    if watches is None:
        detail = (
            f"key {who.name!r} is scoped to watches ({_mine(who)}): it may create only "
            "silences with a 'watch' matcher naming those watches (without one a silence "
            "mutes every watch)"
        )
    else:
        outside = ", ".join(repr(w) for w in sorted(set(watches) - scope))
        detail = f"key {who.name!r} is not scoped to watch {outside}: it may create only "
        detail += f"silences limited to its watches ({_mine(who)})"
    raise HTTPException(status.HTTP_403_FORBIDDEN, detail=detail)


def _expire_only_mine(who: Principal) -> str:
    return f"it may expire only silences limited to its watches ({_mine(who)})"


@router.get("/silences", response_model=list[SilenceOut])
async def list_silences(
    request: Request,
    session: Session,
    who: Annotated[Principal, Depends(require("viewer"))],
    include_expired: Annotated[bool, Query()] = False,
) -> list[Silence]:
    """Newest first; for a key scoped to some watches, only the silences limited to them."""
    now = _runtime(request).clock.now()
    found = await silences.list_silences(session, now, active_only=not include_expired)
    return [s for s in found if limited_to_scope(who, silence_watches(s.matchers))]


def _known_watches(runtime: Runtime, watches: Sequence[str]) -> None:
    """422 for a watch this process's config does not have (none configured: any). The
    configured ones are not listed: a key scoped to some watches must not learn the others."""
    configured = {w.id for w in runtime.settings.listener.watches}
    unknown = sorted(set(watches) - configured)
    if unknown and configured:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"unknown watch {unknown[0]!r}: no watch of that id is configured",
        )


@router.post("/silences", response_model=SilenceOut, status_code=status.HTTP_201_CREATED)
@audit.audited("silence.create", "silence")
async def create_silence(
    request: Request,
    body: SilenceIn,
    session: Session,
    who: Annotated[Principal, Depends(require("responder"))],
) -> Silence:
    _ensure_silence_scope(who, body.matchers.watch)
    runtime = _runtime(request)
    _known_watches(runtime, body.matchers.watch or ())  # else it would mute nothing, silently
    now = runtime.clock.now()
    try:
        silence = silences.create(
            session,
            matchers=body.matchers,
            ends_at=body.ends_at,
            starts_at=body.starts_at,
            author=who.name,
            reason=body.reason,
            now=now,
        )
    except silences.InvalidSilence as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    await session.flush()
    after = SilenceOut.model_validate(silence).model_dump(mode="json")
    audit.record(session, who, "silence.create", "silence", silence.id, at=now, after=after)
    return silence


@router.delete("/silences/{silence_id}", response_model=SilenceOut)
@audit.audited("silence.expire", "silence", "{silence_id}")
async def expire_silence(
    request: Request,
    silence_id: SilenceId,
    session: Session,
    who: Annotated[Principal, Depends(require("responder"))],
) -> Silence:
    """Expire now (the record stays, with its end set to now). A key scoped to some
    watches gets the same 403 for a silence that also mutes other watches (or every watch)
    and for one that does not exist: it learns neither their matchers nor their ids."""
    now = _runtime(request).clock.now()
    what = f"silence {silence_id}"
    try:
        silence = await silences.get(session, silence_id)
    except silences.SilenceNotFound as exc:
        hidden = hidden_when_missing(request, what, _expire_only_mine(who))
        raise hidden or HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    if not limited_to_scope(who, silence_watches(silence.matchers)):
        raise not_visible(who, what, _expire_only_mine(who))
    before = SilenceOut.model_validate(silence).model_dump(mode="json")
    silence = await silences.expire(session, silence_id, now)
    after = SilenceOut.model_validate(silence).model_dump(mode="json")
    audit.record(
        session, who, "silence.expire", "silence", silence_id, at=now, before=before, after=after
    )
    return silence


@router.get("/oncall", response_model=list[OnCallOut])
async def who_is_on_call(
    request: Request,
    who: Annotated[Principal, Depends(require("viewer"))],
    watch: Annotated[
        str | None,
        Query(min_length=1, max_length=100, description="only the teams of this watch"),
    ] = None,
    tier: Annotated[
        int | None,
        Query(ge=min(TIERS), le=max(TIERS), description="only the teams alerts of this tier reach"),
    ] = None,
) -> list[OnCallOut]:
    """Who is on call in each team now, and until when, by team name.

    A key scoped to some watches sees only the teams their alerts may reach: those the
    routing tree may route them to (at any tier, from any platform) and those the
    escalation policies notify by name; ``?watch=`` narrows to one watch's teams (403
    outside the key's scope), ``?tier=`` to the teams an alert of that tier may reach
    (routes, that tier's escalation steps and playbook): ``?watch=W&tier=T`` answers
    "who is on call for this incident" (the incident console asks it)."""
    runtime = _runtime(request)
    config = runtime.settings.alerts
    now = runtime.clock.now()
    watches = scoped_watches(who, watch)  # 403 outside the key's scope first
    _known_watches(runtime, [watch] if watch is not None else [])
    tiers = TIERS if tier is None else (tier,)
    if watches is None and tier is not None:  # every watch, at that tier
        configured = frozenset(w.id for w in runtime.settings.listener.watches)
        watches = configured or frozenset(watches_named(config))
    teams = set(config.teams) if watches is None else teams_of_watches(config, watches, tiers)
    return [OnCallOut(**vars(team_on_call(config, team, now))) for team in sorted(teams)]


@router.post("/incidents/{incident_id}/response", response_model=IncidentOut)
@audit.audited("incident.response", "incident", "{incident_id}")
async def record_response(
    request: Request,
    incident_id: IncidentId,
    body: ResponseIn,
    session: Session,
    who: Annotated[Principal, Depends(require("responder"))],
) -> IncidentOut:
    """Record the response the plan asks for (private reply, statement): stops the
    SLA clock of a tier that waits for one."""
    runtime = _runtime(request)
    before = await audit.incident_state(session, incident_id)
    ensure_visible(who, before["watch_id"], f"incident {incident_id}")
    incident = await incidents.record_response(
        session,
        incident_id,
        body.kind,
        who.name,
        runtime.clock,
        metrics=runtime.metrics,
        note=body.note,
    )
    await audit.record_incident_change(
        session, who, "incident.response", incident_id, before, at=runtime.clock.now()
    )
    return IncidentOut.model_validate(incident)
