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


# The timeline's types: every kind belongs to one category (the API filters on both).
CATEGORIES: dict[str, tuple[str, ...]] = {
    "signal": ("opened", "upgraded", "signal", "tier_changed"),
    "alert": (
        "alert_queued",
        "alert_delivered",
        "alert_failed",
        "alert_fallback",
        "inhibited",
        "silenced",
        "unsilenced",
        "uninhibited",
        "held",
    ),
    "escalation": ("escalation_started", "escalated", "escalation_skipped"),
    "status": ("acknowledged", "mitigating", "resolved", "closed"),
    "sla": ("sla_warning", "sla_breached", "responded"),
    "role": ("role_assigned", "role_unassigned"),
    "task": ("task_created", "task_updated", "task_reminder"),
    "note": ("note",),
    "template": ("template_used",),
    "merge": ("merged_into", "merged_from", "story_merged"),
}
_CATEGORY_OF = {kind: name for name, kinds in CATEGORIES.items() for kind in kinds}


def category(kind: str) -> str:
    return _CATEGORY_OF.get(kind, "other")
