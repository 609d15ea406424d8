"""Append to an incident's timeline (the record the post-crisis report is built from)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from alerts.models import EVENT_KINDS, IncidentEvent

SYSTEM = "system"


def add_event(
    session: AsyncSession,
    incident_id: int,
    kind: str,
    at: datetime,
    *,
    actor: str = SYSTEM,
    detail: dict[str, Any] | None = None,
    signal_id: str | None = None,
) -> IncidentEvent:
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown timeline event kind {kind!r}")
    event = IncidentEvent(
        incident_id=incident_id,
        kind=kind,
        at=at,
        actor=actor,
        detail=detail or {},
        signal_id=signal_id,
    )
    session.add(event)
    return event
