"""The audit log: one row per mutation made through the API (who, what, before/after).

Written in the same unit of work as the change, so a change that rolls back leaves no row
and a committed change always has one. Values never hold secrets (keys are not audited).

An entry is tied to watches through its target: an incident's or a drill's watch, a
silence's ``watch`` matcher. A list limited to some watches (a scoped key's) shows only
the entries whose target is tied to those watches alone: not templates, which every watch
shares, nor a silence without a watch matcher (it mutes every watch), nor anything whose
target no longer exists.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ColumnElement, Integer, String, and_, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from alerts import incidents
from alerts.models import Incident, Silence
from alerts.workflow.drills import Drill
from api.auth import Principal
from api.schemas import IncidentOut
from api.scope import silence_watches
from core.db import Base, UtcDateTime


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
) -> AuditEntry:
    entry = AuditEntry(
        at=at,
        actor=who.name,
        role=who.role,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        before=before,
        after=after,
    )
    session.add(entry)
    return entry


async def incident_state(session: AsyncSession, incident_id: int) -> dict[str, Any]:
    """An incident as the audit log keeps it (``IncidentNotFound`` when it is missing).

    Read under the row's lock (``FOR UPDATE``; on SQLite the database's write lock), which
    the change then holds until it commits: the ``before`` of a change is the state it
    started from. Taken without it, two acknowledges at once both recorded "open"."""
    await session.execute(select(Incident.id).where(Incident.id == incident_id).with_for_update())
    incident = await incidents.get_incident(session, incident_id)
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
    watches: Collection[str] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[AuditEntry], int]:
    """A page of entries, newest first, and the total matching the filters (``watches``:
    only the entries tied to those watches alone)."""
    conditions: list[Any] = []
    if watches is not None:
        conditions.append(await _tied_to(session, watches))
    for column, value in (
        (AuditEntry.actor, actor),
        (AuditEntry.action, action),
        (AuditEntry.target_type, target_type),
        (AuditEntry.target_id, target_id),
    ):
        if value is not None:
            conditions.append(column == value)
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
