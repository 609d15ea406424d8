"""Escalation: an alert nobody acknowledged in time goes to the next contact.

Each round reads (incident id, escalation token) of the open incidents whose
``next_escalation_at`` has passed, then escalates each in its own transaction with
``UPDATE ... WHERE escalation_token = <read>``: an ack, a resolve or an upgrade rotates the
token, so a round that read the old one does nothing (and neither does a second alerter
running the same round).

Level n goes to each routed team's ``escalation[n-1]`` contact (the last one repeats),
then re-arms ``ack_timeout[tier]`` later, until ``max_escalations`` levels were sent.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts.config import AlertsConfig
from alerts.messages import describe, snippets_from_rows
from alerts.models import OPEN, Incident, IncidentEvidence
from alerts.outbox import enqueue, escalation_reason, rowcount
from alerts.routing import escalation_targets
from alerts.timeline import add_event
from core.clock import Clock
from core.db import unit_of_work
from core.metrics import Metrics

log = logging.getLogger(__name__)

BATCH = 200


async def _due(sessions: async_sessionmaker[AsyncSession], now: datetime) -> list[tuple[int, str]]:
    async with sessions() as session:
        rows = await session.execute(
            select(Incident.id, Incident.escalation_token)
            .where(Incident.status == OPEN, Incident.next_escalation_at <= now)
            .order_by(Incident.next_escalation_at, Incident.id)
            .limit(BATCH)
        )
        return [(int(i), str(t)) for i, t in rows]


async def escalate_one(
    session: AsyncSession, incident_id: int, token: str, config: AlertsConfig, now: datetime
) -> Incident | None:
    """Escalate one incident if ``token`` is still its token; None when the round is stale."""
    incident = await session.get(Incident, incident_id)
    if incident is None or incident.escalation_token != token:
        return None
    level = incident.escalation_level + 1
    next_at = now + config.ack_timeout[incident.tier] if level < config.max_escalations else None
    result = await session.execute(
        update(Incident)
        .where(
            Incident.id == incident_id,
            Incident.escalation_token == token,
            Incident.status == OPEN,
            Incident.next_escalation_at <= now,
        )
        .values(
            escalation_level=level,
            escalation_token=str(uuid.uuid4()),
            next_escalation_at=next_at,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        return None
    await session.refresh(incident)
    targets = escalation_targets(config, incident.tier, level)
    evidence = await session.scalars(
        select(IncidentEvidence)
        .where(IncidentEvidence.incident_id == incident_id)
        .order_by(IncidentEvidence.id)
        .limit(config.evidence_in_alert)
    )
    waited = describe(now - incident.alerted_at)
    await enqueue(
        session,
        incident,
        targets,
        reason=escalation_reason(level),
        reason_text=f"ESCALATION level {level}: not acknowledged within {waited}",
        evidence=snippets_from_rows(evidence, config.evidence_in_alert),
        config=config,
        now=now,
        trigger_received_at=None,
    )
    add_event(
        session,
        incident_id,
        "escalated",
        now,
        detail={
            "level": level,
            "contacts": {channel: teams for channel, teams in targets.items()},
            "unacknowledged_for": waited,
            "next_escalation_at": next_at.isoformat() if next_at else None,
        },
    )
    return incident


async def escalate_due(
    sessions: async_sessionmaker[AsyncSession],
    config: AlertsConfig,
    clock: Clock,
    metrics: Metrics,
) -> int:
    """Escalate every open incident whose ack deadline passed; returns how many."""
    now = clock.now()
    escalated = 0
    for incident_id, token in await _due(sessions, now):
        async with unit_of_work(sessions) as session:
            incident = await escalate_one(session, incident_id, token, config, now)
        if incident is None:
            continue
        escalated += 1
        metrics.escalations.labels(str(incident.tier)).inc()
        log.warning(
            "incident %d (tier %d) not acknowledged: escalated to level %d",
            incident.id,
            incident.tier,
            incident.escalation_level,
        )
    return escalated
