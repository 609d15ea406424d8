"""The audit log (admin only): every change made through the API, and every attempt an
authenticated caller was refused (403, 409), newest first (``api.audit``).

``since`` (inclusive) and ``until`` (exclusive) take a time with its offset (``Z`` or
``%2B02:00``; a time without one: 422) and compare it with the entry's time in UTC.

A key scoped to some watches sees only the entries about its watches' incidents, drills and
silences (``api.audit``): not template changes, which every watch shares, nor silences
that mute other watches too; ``?watch=`` narrows to one watch (403 outside its scope).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy.ext.asyncio import AsyncSession

from api import audit
from api.auth import Principal, require, scoped_watches
from api.deps import db_session
from api.schemas import Page
from api.template_schemas import ERRORS, AuditOut
from core.events import UtcDatetime

router = APIRouter(prefix="/audit", tags=["audit"], responses=ERRORS)

Session = Annotated[AsyncSession, Depends(db_session, scope="function")]


@router.get("", response_model=Page[AuditOut])
async def list_audit(
    session: Session,
    who: Annotated[Principal, Depends(require("admin"))],
    actor: Annotated[
        str | None, Query(min_length=1, max_length=255, description="key name")
    ] = None,
    action: Annotated[
        str | None, Query(min_length=1, max_length=64, examples=["template.approve"])
    ] = None,
    target_type: Annotated[
        str | None, Query(min_length=1, max_length=64, examples=["template_version"])
    ] = None,
    target_id: Annotated[str | None, Query(min_length=1, max_length=255, examples=["3/2"])] = None,
    outcome: Annotated[
        audit.Outcome | None,
        Query(description="ok: a change made; forbidden (403), conflict (409): refused"),
    ] = None,
    since: Annotated[
        UtcDatetime | None, Query(description="entries at or after this time (with offset)")
    ] = None,
    until: Annotated[
        UtcDatetime | None, Query(description="entries before this time (with offset)")
    ] = None,
    watch: Annotated[
        str | None, Query(min_length=1, max_length=100, description="only entries about this watch")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Page[AuditOut]:
    """Who changed what, when, with the state before and after; who was refused what,
    and why (``outcome``, ``detail``)."""
    items, total = await audit.list_entries(
        session,
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        outcome=outcome,
        since=since,
        until=until,
        watches=scoped_watches(who, watch),
        limit=limit,
        offset=offset,
    )
    return Page[AuditOut](
        items=[AuditOut.model_validate(e) for e in items], total=total, limit=limit, offset=offset
    )
