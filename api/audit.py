"""The audit log: one row per mutation made through the API (who, what, before/after),
and one per attempt an authenticated caller was refused (403, 409: who tried what).

A change is written in the same unit of work as the change (``outcome`` ``ok``), so a
change that rolls back leaves no such row and a committed change always has one. A refused
attempt is written after its request's unit of work rolled back, in one of its own
(``outcome`` ``forbidden`` or ``conflict``, ``detail`` saying why): every state-changing
route declares what it does (``audited``) and is served by ``AuditedRoute``, which records
the refusal. Values never hold secrets (keys, tokens and signatures are not audited). The
table is append-only (database triggers, migration 0017); entries are kept for good.

An entry is tied to watches through its target: an incident's or a drill's watch, a
silence's ``watch`` matcher. A list limited to some watches (a scoped key's) shows only
the entries whose target is tied to those watches alone: not templates, which every watch
shares, nor a silence without a watch matcher (it mutes every watch), nor anything whose
target no longer exists.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, TypeVar

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute
from sqlalchemy import JSON, ColumnElement, Integer, String, and_, cast, func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from alerts import incidents
from alerts.models import Incident, Silence
from alerts.workflow.drills import Drill
from api.auth import Principal
from api.schemas import IncidentOut
from api.scope import silence_watches
from core.db import Base, UtcDateTime, unit_of_work

log = logging.getLogger(__name__)

Outcome = Literal["ok", "forbidden", "conflict"]
REFUSED: Final[dict[int, Outcome]] = {403: "forbidden", 409: "conflict"}
"""The refusals recorded, by status: a role or scope that does not allow it (or four
eyes), a state that does not allow it. Not 401 (nobody authenticated), nor 404/422."""


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(255), index=True)
    role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(64))
    target_id: Mapped[str] = mapped_column(String(255))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    outcome: Mapped[str] = mapped_column(String(16), server_default="ok", default="ok")
    detail: Mapped[str | None] = mapped_column(String(500), nullable=True)


def record(
    session: AsyncSession,
    who: Principal,
    action: str,
    target_type: str,
    target_id: str | int,
    *,
    at: datetime,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    outcome: Outcome = "ok",
    detail: str | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        at=at,
        actor=who.name[:255],
        role=who.role,
        action=action,
        target_type=target_type,
        target_id=str(target_id)[:255],
        before=before,
        after=after,
        outcome=outcome,
        detail=detail[:500] if detail is not None else None,
    )
    session.add(entry)
    return entry


@dataclass(frozen=True)
class Attempt:
    """What a state-changing route does, for the entry of a refused attempt: the action
    and the target (``target``: a format string over the path parameters, such as
    ``"{template_id}/{number}"``; empty for what a create would have made)."""

    action: str
    target_type: str
    target: str = ""

    def target_id(self, path_params: dict[str, Any]) -> str:
        try:
            return self.target.format(**path_params)
        except (KeyError, IndexError, ValueError):
            return ""


_ATTEMPT = "crisiswatch_audit_attempt"
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def audited(action: str, target_type: str, target: str = "") -> Callable[[Endpoint], Endpoint]:
    """Declare a state-changing route's action and target (below ``@router.post``): a
    refused attempt on it is then recorded (``AuditedRoute``). Its changes are recorded by
    the route itself, in its unit of work."""

    def mark(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, _ATTEMPT, Attempt(action, target_type, target))
        return endpoint

    return mark


def attempt_of(endpoint: Callable[..., Any]) -> Attempt | None:
    attempt: Attempt | None = getattr(endpoint, _ATTEMPT, None)
    return attempt


def acting(request: Request, who: Principal, attempt: Attempt | None = None) -> None:
    """Who acts in this request (the key's principal, set by ``api.auth``; a Slack user
    or an ack link's recipient, set by their routes) and, where the route's declaration
    cannot say it, what they attempt (``attempt.target`` then the target id itself)."""
    request.state.principal = who
    if attempt is not None:
        request.state.audit_attempt = attempt


async def record_refusal(
    sessions: async_sessionmaker[AsyncSession],
    who: Principal,
    action: str,
    target_type: str,
    target_id: str | int,
    *,
    outcome: Outcome,
    detail: str,
    at: datetime,
) -> None:
    """Record a refused attempt in a unit of work of its own (the request's rolled back).
    A database that cannot take it is logged, never raised: the caller's answer (the 403 or
    409) is what the client must get."""
    try:
        async with unit_of_work(sessions) as session:
            record(
                session, who, action, target_type, target_id, at=at,
                outcome=outcome, detail=detail,
            )  # fmt: skip
    except (SQLAlchemyError, OSError) as exc:
        log.error(
            "audit: the refused attempt %s on %s %s by %r could not be recorded (%s: %s)",
            action,
            target_type,
            target_id,
            who.name,
            type(exc).__name__,
            str(exc)[:200],
        )


async def _refusal(request: Request, exc: Exception) -> tuple[Outcome, str] | None:
    """The outcome and reason of ``exc`` when the app answers it with a refusal recorded
    (``REFUSED``): an ``HTTPException``'s status, or the status the app's handler of a
    domain error gives (``api.app``; those handlers only build the answer)."""
    if isinstance(exc, HTTPException):
        outcome = REFUSED.get(exc.status_code)
        return (outcome, str(exc.detail)) if outcome is not None else None
    handlers: dict[Any, Any] = request.app.exception_handlers
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        handler = handlers.get(cls)
        if handler is not None:
            answer = await handler(request, exc)
            outcome = REFUSED.get(answer.status_code) if isinstance(answer, Response) else None
            return (outcome, str(exc)) if outcome is not None else None
    return None


class AuditedRoute(APIRoute):
    """A route whose endpoint is ``audited``: an authenticated caller's attempt refused
    with 403 or 409 (by the role check, the scope check or the domain) is recorded."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        declared = attempt_of(self.endpoint)
        if declared is None:
            return handler

        async def audited_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                # recorded once the request's own unit of work has rolled back: it closes
                # with the dependencies of the function's scope, after this handler (its
                # lock held, on SQLite, would keep the entry out)
                stack = request.scope.get("fastapi_inner_astack")
                if isinstance(stack, AsyncExitStack):
                    stack.push_async_callback(_record_refused, request, declared, exc)
                else:
                    await _record_refused(request, declared, exc)
                raise

        return audited_handler


async def _record_refused(request: Request, declared: Attempt, exc: Exception) -> None:
    who: Principal | None = getattr(request.state, "principal", None)
    runtime = getattr(request.app.state, "runtime", None)
    sessions = getattr(runtime, "sessions", None)
    if who is None or runtime is None or sessions is None:  # nobody authenticated, no database
        return
    refusal = await _refusal(request, exc)
    if refusal is None:
        return
    outcome, detail = refusal
    attempt: Attempt = getattr(request.state, "audit_attempt", declared)
    target_id = (
        attempt.target if attempt is not declared else declared.target_id(request.path_params)
    )
    await record_refusal(
        sessions, who, attempt.action, attempt.target_type, target_id,
        outcome=outcome, detail=detail, at=runtime.clock.now(),
    )  # fmt: skip


async def incident_state(session: AsyncSession, incident_id: int) -> dict[str, Any]:
    """An incident as the audit log keeps it (``IncidentNotFound`` when it is missing).

    Read under the row's lock (``FOR UPDATE``; on SQLite the database's write lock), which
    the change then holds until it commits: the ``before`` of a change is the state it
    started from. Taken without it, two acknowledges at once both recorded "open". Only
    the incident's own row is read: what is kept has none of its timeline, evidence or
    deliveries (loading them made every change to a long incident take seconds)."""
    incident = await incidents.load_for_change(session, incident_id)
    return IncidentOut.model_validate(incident).model_dump(mode="json")


IDEMPOTENT = frozenset(
    {"incident.acknowledge", "incident.mitigate", "incident.resolve", "incident.close"}
)
"""Transitions that, repeated, are harmless no-ops (a response or a merge always adds)."""


async def record_incident_change(
    session: AsyncSession,
    who: Principal,
    action: str,
    incident_id: int,
    before: dict[str, Any],
    *,
    at: datetime,
) -> None:
    """Audit a change to an incident: ``before`` was taken with ``incident_state``. A
    repeated transition that changed nothing (a second acknowledge) is not recorded: an
    entry whose before and after are the same would read as a change."""
    after = await incident_state(session, incident_id)
    if after == before and action in IDEMPOTENT:
        return
    record(session, who, action, "incident", incident_id, at=at, before=before, after=after)


async def list_entries(
    session: AsyncSession,
    *,
    actor: str | None = None,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    watches: Collection[str] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[AuditEntry], int]:
    """A page of entries, newest first, and the total matching the filters (``watches``:
    only the entries tied to those watches alone; ``since`` inclusive, ``until``
    exclusive, both aware)."""
    conditions: list[Any] = []
    if watches is not None:
        conditions.append(await _tied_to(session, watches))
    for column, value in (
        (AuditEntry.actor, actor),
        (AuditEntry.action, action),
        (AuditEntry.target_type, target_type),
        (AuditEntry.target_id, target_id),
        (AuditEntry.outcome, outcome),
    ):
        if value is not None:
            conditions.append(column == value)
    if since is not None:
        conditions.append(AuditEntry.at >= since)
    if until is not None:
        conditions.append(AuditEntry.at < until)
    total = await session.scalar(select(func.count()).select_from(AuditEntry).where(*conditions))
    items = await session.scalars(
        select(AuditEntry)
        .where(*conditions)
        .order_by(AuditEntry.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(items), int(total or 0)


async def _tied_to(session: AsyncSession, watches: Collection[str]) -> ColumnElement[bool]:
    """Entries whose target (incident, drill, silence) is tied to ``watches`` alone."""
    scope = sorted(watches)
    # target_id is text ("3/2" for a template version): compare it with the ids as text
    incident_ids = select(cast(Incident.id, String)).where(Incident.watch_id.in_(scope))
    drill_ids = select(cast(Drill.id, String)).where(Drill.watch_id.in_(scope))
    silence_ids = [
        str(silence_id)
        for silence_id, matchers in await session.execute(select(Silence.id, Silence.matchers))
        if (limited := silence_watches(matchers)) is not None and set(limited) <= set(scope)
    ]
    return or_(
        and_(AuditEntry.target_type == "incident", AuditEntry.target_id.in_(incident_ids)),
        and_(AuditEntry.target_type == "drill", AuditEntry.target_id.in_(drill_ids)),
        and_(AuditEntry.target_type == "silence", AuditEntry.target_id.in_(silence_ids)),
    )
