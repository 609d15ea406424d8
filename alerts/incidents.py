"""Incidents: opened and upgraded by Signals; listed, acknowledged and resolved by people.

The stage calls ``apply_signal``; the API calls ``list_incidents``, ``get_incident``,
``acknowledge`` and ``resolve``. Nothing here commits: the caller's unit of work does.

Lifecycle: ``open`` -> ``acknowledged`` -> ``resolved`` (``open`` -> ``resolved`` too).
A signal with a higher tier upgrades the incident: new alerts go to the new tier's teams
and the ack clock starts again; if it was acknowledged or resolved, it is open again
(the new teams have not acknowledged anything). A signal with the same or a lower tier
only adds to the timeline and the evidence. A signal whose id is already in the timeline
does nothing, so a redelivered signal never alerts twice.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from alerts.config import AlertsConfig
from alerts.messages import incident_title, snippets_from_signal
from alerts.models import (
    ACKNOWLEDGED,
    CANCELLED,
    INCIDENT_STATUSES,
    OPEN,
    PENDING,
    RESOLVED,
    Delivery,
    Incident,
    IncidentEvent,
    IncidentEvidence,
)
from alerts.outbox import ALERT, UPGRADE, enqueue, rowcount
from alerts.routing import alert_targets
from alerts.timeline import add_event
from core.clock import Clock
from core.db import on_commit
from core.events import Signal
from core.metrics import Metrics

DETECTOR = "detector"


class IncidentNotFound(LookupError):
    def __init__(self, incident_id: int) -> None:
        super().__init__(f"incident {incident_id} does not exist")
        self.incident_id = incident_id


class InvalidTransition(ValueError):
    """The incident's status does not allow the change (the API answers 409)."""


class InvalidSignal(ValueError):
    """A signal that can never be stored (the stage dead-letters it)."""


MAX_ID = 255


def _check(signal: Signal) -> None:
    for what, value in (
        ("id", signal.id),
        ("story_id", signal.story_id),
        ("watch.id", signal.watch.id),
    ):
        if not value or len(value) > MAX_ID:
            raise InvalidSignal(
                f"signal {signal.id[:80]!r}: {what} must be 1-{MAX_ID} characters, got {len(value)}"
            )


def arm_escalation(incident: Incident, config: AlertsConfig, now: datetime) -> None:
    """(Re)start the ack clock with a fresh token; a round holding the old token is void."""
    incident.escalation_token = str(uuid.uuid4())
    incident.next_escalation_at = (
        now + config.ack_timeout[incident.tier] if config.max_escalations > 0 else None
    )


def disarm_escalation(incident: Incident) -> None:
    incident.escalation_token = str(uuid.uuid4())
    incident.next_escalation_at = None


async def _signal_seen(session: AsyncSession, signal_id: str) -> bool:
    found = await session.scalar(
        select(IncidentEvent.id).where(IncidentEvent.signal_id == signal_id).limit(1)
    )
    return found is not None


async def _add_evidence(session: AsyncSession, incident_id: int, signal: Signal) -> None:
    if not signal.evidence:
        return
    known = set(
        await session.scalars(
            select(IncidentEvidence.mention_id).where(
                IncidentEvidence.incident_id == incident_id,
                IncidentEvidence.mention_id.in_([ev.id for ev in signal.evidence]),
            )
        )
    )
    for ev in signal.evidence:
        if ev.id in known:
            continue
        known.add(ev.id)
        session.add(
            IncidentEvidence(
                incident_id=incident_id,
                mention_id=ev.id,
                url=ev.url,
                text=ev.text,
                author=ev.author[:255] if ev.author else ev.author,
                followers=ev.followers,
                created_at=ev.created_at,
                label=ev.label,
            )
        )


def _signal_detail(signal: Signal) -> dict[str, Any]:
    return {
        "signal_id": signal.id,
        "tier": signal.tier,
        "previous_tier": signal.previous_tier,
        "spread": signal.spread,
        "explanation": signal.explanation,
        "heat": signal.heat.model_dump(mode="json"),
        "at": signal.at.isoformat(),
    }


async def apply_signal(
    session: AsyncSession,
    signal: Signal,
    config: AlertsConfig,
    clock: Clock,
    *,
    metrics: Metrics | None = None,
) -> Incident | None:
    """Open, upgrade or annotate the incident of ``signal``'s story; queue its alerts.

    Returns the incident, or None when the signal changed nothing (already applied, or
    tier 0 for a story without an incident). Raises ``InvalidSignal`` for a signal whose
    ids do not fit the tables.
    """
    _check(signal)
    if await _signal_seen(session, signal.id):
        return None
    now = clock.now()
    incident = await session.scalar(
        select(Incident)
        .where(Incident.watch_id == signal.watch.id, Incident.story_id == signal.story_id)
        .with_for_update()
    )
    if incident is None:
        if signal.tier < 1:
            return None
        incident = await _open(session, signal, config, now)
        if metrics is not None:
            opened = metrics.incidents_opened.labels(str(signal.tier))
            on_commit(session, opened.inc)
        return incident
    if signal.tier > incident.tier:
        await _upgrade(session, incident, signal, config, now)
        return incident
    incident.spread = signal.spread
    incident.updated_at = now
    add_event(
        session,
        incident.id,
        "signal",
        now,
        actor=DETECTOR,
        detail=_signal_detail(signal),
        signal_id=signal.id,
    )
    await _add_evidence(session, incident.id, signal)
    return incident


async def _open(
    session: AsyncSession, signal: Signal, config: AlertsConfig, now: datetime
) -> Incident:
    incident = Incident(
        watch_id=signal.watch.id,
        story_id=signal.story_id,
        brand=signal.watch.brand[:255],
        tier=signal.tier,
        spread=signal.spread,
        status=OPEN,
        title=incident_title(signal.watch.brand, signal.watch.id, signal.tier),
        explanation=signal.explanation,
        opened_at=now,
        updated_at=now,
        alerted_at=now,
        escalation_level=0,
        first_trigger_received_at=signal.trigger_received_at,
        drill=signal.drill,
    )
    arm_escalation(incident, config, now)
    session.add(incident)
    await session.flush()
    add_event(
        session,
        incident.id,
        "opened",
        now,
        actor=DETECTOR,
        detail=_signal_detail(signal),
        signal_id=signal.id,
    )
    await _add_evidence(session, incident.id, signal)
    await enqueue(
        session,
        incident,
        alert_targets(config, incident.tier),
        reason=ALERT,
        reason_text="new",
        evidence=snippets_from_signal(signal.evidence, config.evidence_in_alert),
        config=config,
        now=now,
        trigger_received_at=signal.trigger_received_at,
    )
    return incident


async def _upgrade(
    session: AsyncSession, incident: Incident, signal: Signal, config: AlertsConfig, now: datetime
) -> None:
    previous_tier, previous_status = incident.tier, incident.status
    incident.tier = signal.tier
    incident.spread = signal.spread
    incident.explanation = signal.explanation
    incident.title = incident_title(incident.brand, incident.watch_id, signal.tier)
    incident.drill = incident.drill and signal.drill
    incident.updated_at = now
    incident.alerted_at = now
    incident.status = OPEN
    incident.acked_at = incident.acked_by = None
    incident.resolved_at = incident.resolved_by = None
    incident.escalation_level = 0
    arm_escalation(incident, config, now)
    detail = _signal_detail(signal) | {"from_tier": previous_tier, "was": previous_status}
    add_event(
        session, incident.id, "upgraded", now, actor=DETECTOR, detail=detail, signal_id=signal.id
    )
    await _add_evidence(session, incident.id, signal)
    await enqueue(
        session,
        incident,
        alert_targets(config, incident.tier),
        reason=UPGRADE,
        reason_text=f"upgraded to tier {signal.tier} (was tier {previous_tier})",
        evidence=snippets_from_signal(signal.evidence, config.evidence_in_alert),
        config=config,
        now=now,
        trigger_received_at=signal.trigger_received_at,
    )


async def list_incidents(
    session: AsyncSession,
    *,
    status: str | None = None,
    tier: int | None = None,
    watch: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Incident], int]:
    """A page of incidents, newest first, and the total matching the filters."""
    if status is not None and status not in INCIDENT_STATUSES:
        raise ValueError(f"unknown status {status!r}; one of {', '.join(INCIDENT_STATUSES)}")
    if limit < 1 or offset < 0:
        raise ValueError("limit must be >= 1 and offset >= 0")
    conditions = []
    if status is not None:
        conditions.append(Incident.status == status)
    if tier is not None:
        conditions.append(Incident.tier == tier)
    if watch is not None:
        conditions.append(Incident.watch_id == watch)
    total = await session.scalar(select(func.count()).select_from(Incident).where(*conditions))
    items = await session.scalars(
        select(Incident)
        .where(*conditions)
        .order_by(Incident.opened_at.desc(), Incident.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(items), int(total or 0)


async def get_incident(session: AsyncSession, incident_id: int) -> Incident:
    """The incident with ``timeline``, ``evidence`` and ``deliveries`` loaded."""
    incident = await session.scalar(
        select(Incident)
        .where(Incident.id == incident_id)
        .options(
            selectinload(Incident.timeline),
            selectinload(Incident.evidence),
            selectinload(Incident.deliveries),
        )
    )
    if incident is None:
        raise IncidentNotFound(incident_id)
    return incident


async def _load_for_change(session: AsyncSession, incident_id: int) -> Incident:
    incident = await session.scalar(
        select(Incident).where(Incident.id == incident_id).with_for_update()
    )
    if incident is None:
        raise IncidentNotFound(incident_id)
    return incident


async def _cancel_pending(
    session: AsyncSession, incident_id: int, why: str, *, escalations_only: bool
) -> int:
    stmt = (
        update(Delivery)
        .where(Delivery.incident_id == incident_id, Delivery.status == PENDING)
        .values(status=CANCELLED, next_attempt_at=None, last_error=why)
        .execution_options(synchronize_session=False)
    )
    if escalations_only:
        stmt = stmt.where(Delivery.reason.like("escalation-%"))
    result = await session.execute(stmt)
    return rowcount(result)


async def acknowledge(
    session: AsyncSession,
    incident_id: int,
    actor: str,
    clock: Clock,
    *,
    metrics: Metrics | None = None,
    note: str | None = None,
) -> Incident:
    """Stop the escalation: someone is on it. Acknowledging twice changes nothing.

    Pending escalation messages are cancelled. Pass ``metrics`` to observe time-to-ack.
    Raises ``IncidentNotFound``, or ``InvalidTransition`` for a resolved incident.
    """
    incident = await _load_for_change(session, incident_id)
    if incident.status == ACKNOWLEDGED:
        return incident
    if incident.status == RESOLVED:
        raise InvalidTransition(
            f"incident {incident_id} is resolved; there is nothing to acknowledge"
        )
    now = clock.now()
    incident.status = ACKNOWLEDGED
    incident.acked_at = now
    incident.acked_by = actor
    incident.updated_at = now
    disarm_escalation(incident)
    cancelled = await _cancel_pending(
        session, incident.id, "cancelled: incident acknowledged", escalations_only=True
    )
    add_event(
        session,
        incident.id,
        "acknowledged",
        now,
        actor=actor,
        detail={"note": note, "cancelled_escalations": cancelled},
    )
    if metrics is not None:
        waited = max((now - incident.alerted_at).total_seconds(), 0.0)
        histogram = metrics.time_to_ack.labels(str(incident.tier))
        on_commit(session, lambda: histogram.observe(waited))
    return incident


async def resolve(
    session: AsyncSession,
    incident_id: int,
    actor: str,
    clock: Clock,
    *,
    note: str | None = None,
) -> Incident:
    """Close the incident; pending deliveries are cancelled. Resolving twice changes nothing."""
    incident = await _load_for_change(session, incident_id)
    if incident.status == RESOLVED:
        return incident
    now = clock.now()
    incident.status = RESOLVED
    incident.resolved_at = now
    incident.resolved_by = actor
    incident.updated_at = now
    disarm_escalation(incident)
    cancelled = await _cancel_pending(
        session, incident.id, "cancelled: incident resolved", escalations_only=False
    )
    add_event(
        session,
        incident.id,
        "resolved",
        now,
        actor=actor,
        detail={"note": note, "cancelled_deliveries": cancelled},
    )
    return incident


async def open_counts(session: AsyncSession) -> dict[int, int]:
    """Unresolved incidents per tier (every tier present, 0 when none)."""
    rows = await session.execute(
        select(Incident.tier, func.count())
        .where(Incident.status != RESOLVED)
        .group_by(Incident.tier)
    )
    counts = {1: 0, 2: 0, 3: 0}
    for tier, count in rows:
        counts[int(tier)] = int(count)
    return counts
