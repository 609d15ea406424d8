"""SLA clocks per tier: the response plan's deadlines, watched.

A clock starts when an incident is alerted (opened, upgraded, or released from quiet
hours) and stops at what its tier's SLA is ``met_by``: an ack (tier 3: the emergency
group convened), a recorded response (tier 1 private reply, tier 2 statement) or the
resolve. ``check`` (each tick) records a warning at each ``warn_at`` share of the deadline
and, at the deadline, a breach: recorded, counted, and the escalation's next step is run
at once, if the incident's escalation is running (a next step is scheduled). An incident
whose escalation was stopped while it stays open (muted by an open higher-tier incident:
inhibition) keeps its clock, since the plan's deadline for it still counts in the report,
so its breach is recorded and counted all the same, but runs no step: pulling a step
forward would restart the escalation that the inhibition stopped. ``sla_warned`` counts
the thresholds already reported (compare-and-set, so two alerters never report one twice).

A clock that a person stops after its deadline, before a tick saw the breach (an ack, a
response or a resolve between two ticks), is a breach all the same: ``missed_at_stop``
records and counts it then, at most once whichever of the two comes first (both
compare-and-set on ``sla_breached_at``; ``check`` no longer reads a clock that is met or
an incident that is finished).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from alerts.config import AlertsConfig
from alerts.escalation import Retries
from alerts.models import FINISHED, Incident
from alerts.outbox import rowcount
from alerts.timeline import add_event
from core.db import database_unavailable, on_commit, savepoint
from core.metrics import Metrics, drill_label

BATCH = 200
ITEM = "check_slas"
"""The ``step`` label of ``crisiswatch_alert_item_errors_total`` for a failed SLA check."""


def start(incident: Incident, config: AlertsConfig, at: datetime) -> None:
    sla = config.sla.get(incident.tier)
    incident.sla_due_at = at + sla.target if sla else None
    incident.sla_met_by = sla.met_by if sla else None
    incident.sla_met_at = None
    incident.sla_warned = 0
    incident.sla_breached_at = None


def restart(incident: Incident, config: AlertsConfig, at: datetime) -> None:
    """The clock of an incident alerted again at the same tier (released from a silence or
    an inhibition): a clock already met stays met (its deadline and warnings kept, for the
    report; ``check`` skips it); else it starts again at ``at``, and is met at once by a
    response recorded meanwhile, if that is what the tier waits for (a reply or statement
    recorded while the incident was muted)."""
    if incident.sla_met_at is not None:
        return
    start(incident, config, at)
    if incident.responded_at is not None:
        met(incident, "responded", incident.responded_at)


def stop(incident: Incident) -> None:
    incident.sla_due_at = None


def not_needed(incident: Incident, now: datetime, how: str) -> dict[str, Any] | None:
    """The record of a clock that the end of the incident (``how``: ``resolved``,
    ``merged``) stops in time, before what it waits for came (an incident resolved before
    anyone acknowledged it): neither met nor missed, the deadline was not needed. Kept in
    the detail of the event that ended the incident, since ``stop`` then clears the
    deadline; the report says so (it had no SLA line at all). Call it after ``met`` and
    ``missed_at_stop``, before ``stop``. None when the clock is met, missed or not running.
    """
    due = incident.sla_due_at
    if due is None or incident.sla_met_at is not None or incident.sla_breached_at is not None:
        return None
    if now > due:  # (missed_at_stop records it as missed)
        return None
    return {
        "what": incident.sla_met_by,
        "tier": incident.tier,
        "deadline": due.isoformat(),
        "target_s": round((due - incident.alerted_at).total_seconds(), 1),
        "after_s": round((now - incident.alerted_at).total_seconds(), 1),
        "stopped_by": how,
    }


def met(incident: Incident, by: str, at: datetime) -> bool:
    """Stop the clock if ``by`` is what the tier's SLA waits for; True when it did."""
    if incident.sla_met_by != by or incident.sla_met_at is not None:
        return False
    incident.sla_met_at = at
    return True


async def missed_at_stop(
    session: AsyncSession, incident: Incident, now: datetime, how: str, metrics: Metrics | None
) -> bool:
    """Record the breach of a clock that stops now after its deadline, unless ``check``
    recorded it already: ``how`` is what stops it (``acknowledged``, ``responded``,
    ``resolved``: what the tier waits for, met late; or the incident ``resolved`` or
    ``merged`` while still waiting). Call it after ``met`` and before ``stop``.

    Without it a deadline passed since the last tick was never a breach: ``check`` skips a
    met clock and a finished incident, and a resolve cleared the deadline, so the report
    had no SLA line at all. Like ``check`` it adds an ``sla_breached`` event and counts
    ``crisiswatch_sla_breaches_total`` (once the change commits); it runs no escalation
    step (a person is on it, or it is over). ``sla_breached_at`` is the deadline itself,
    when it was missed. Compare-and-set on ``sla_breached_at`` and the deadline as read,
    so a breach is recorded once whichever comes first: one ``check`` recorded since this
    change read the incident is kept (and read back), and ``check``'s own compare-and-set
    fails after this one (the clock is met or the incident finished). True when it
    recorded the breach."""
    due = incident.sla_due_at
    if due is None or incident.sla_breached_at is not None:
        return False
    stopped = incident.sla_met_at or now
    if stopped <= due:
        return False
    result = await session.execute(
        update(Incident)
        .where(
            Incident.id == incident.id,
            Incident.sla_due_at == due,
            Incident.sla_breached_at.is_(None),
        )
        .values(sla_breached_at=due)
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:  # recorded (or the deadline moved) since the read: keep that
        stored = (
            await session.execute(
                select(Incident.sla_due_at, Incident.sla_breached_at).where(
                    Incident.id == incident.id
                )
            )
        ).one()
        set_committed_value(incident, "sla_due_at", stored.sla_due_at)
        set_committed_value(incident, "sla_breached_at", stored.sla_breached_at)
        return False
    set_committed_value(incident, "sla_breached_at", due)
    detail = {
        "what": incident.sla_met_by,
        "deadline": due.isoformat(),
        "used": 1.0,
        "late_s": round((stopped - due).total_seconds(), 1),
        "stopped_by": how,
        "escalation": f"not run (the clock stopped: {how})",
    }
    add_event(session, incident.id, "sla_breached", now, detail=detail)
    if metrics is not None:
        breaches = metrics.sla_breaches.labels(str(incident.tier), drill_label(incident.drill))
        on_commit(session, breaches.inc)
    return True


@dataclass(frozen=True)
class Breach:
    incident_id: int
    token: str
    tier: int
    escalate: bool = True
    """Whether the breach runs the next escalation step (False: none is scheduled)."""


async def check(
    session: AsyncSession,
    config: AlertsConfig,
    now: datetime,
    metrics: Metrics,
    *,
    retries: Retries | None = None,
) -> list[Breach]:
    """Record the warnings and breaches that are due; returns the new breaches.

    Each incident on its own (a savepoint): one whose check raises (a corrupt row) is
    rolled back alone, logged with its id, counted
    (``crisiswatch_alert_item_errors_total{step="check_slas"}``) and left out of the
    checks until ``retries``' backoff has passed; the others' warnings and breaches are
    recorded all the same. An unavailable database is raised: it is no one incident's."""
    retries = retries or Retries()
    conditions = [
        Incident.sla_due_at.is_not(None),
        Incident.sla_met_at.is_(None),
        Incident.sla_breached_at.is_(None),
        Incident.status.not_in(FINISHED),
    ]
    held = retries.held(ITEM, now)
    if held:
        conditions.append(Incident.id.not_in(held))
    rows = (
        await session.scalars(
            select(Incident).where(*conditions).order_by(Incident.sla_due_at).limit(BATCH)
        )
    ).all()
    breaches: list[Breach] = []
    for incident in rows:
        incident_id = incident.id
        try:
            breach = await _check_one(session, incident, config, now, metrics)
        except Exception as exc:
            if database_unavailable(exc):
                raise
            metrics.alert_item_errors.labels(ITEM).inc()
            retries.item_failed(ITEM, incident_id, now, f"incident {incident_id}: its SLA check")
            continue
        retries.succeeded((ITEM, incident_id))
        if breach is not None:
            breaches.append(breach)
    return breaches


async def _check_one(
    session: AsyncSession, incident: Incident, config: AlertsConfig, now: datetime, metrics: Metrics
) -> Breach | None:
    """Record the incident's warning or breach, if one is due (in a savepoint); returns
    the breach."""
    sla = config.sla.get(incident.tier)
    due = incident.sla_due_at
    if sla is None or due is None:
        return None
    total = (due - incident.alerted_at).total_seconds()
    used = (now - incident.alerted_at).total_seconds() / total if total > 0 else 1.0
    thresholds = [*sla.warn_at, 1.0]
    reached = sum(1 for t in thresholds if used >= t)
    if reached <= incident.sla_warned:
        return None
    breached = used >= 1.0
    values: dict[str, object] = {"sla_warned": reached}
    if breached:
        values["sla_breached_at"] = now
    async with savepoint(session):
        # the clock still running as read: an ack, a response or a resolve since the read
        # (which leave ``sla_warned`` alone) met or stopped it, a new tier moved its deadline
        result = await session.execute(
            update(Incident)
            .where(
                Incident.id == incident.id,
                Incident.sla_warned == incident.sla_warned,
                Incident.sla_due_at == due,
                Incident.sla_met_at.is_(None),
                Incident.sla_breached_at.is_(None),
                Incident.status.not_in(FINISHED),
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if rowcount(result) != 1:
            return None
        tier, drill = str(incident.tier), drill_label(incident.drill)
        detail = {
            "what": sla.description or sla.met_by,
            "deadline": due.isoformat(),
            "used": round(min(used, 1.0), 3),
        }
        if not breached:
            share = max(t for t in sla.warn_at if used >= t)
            add_event(session, incident.id, "sla_warning", now, detail=detail | {"at": share})
            on_commit(session, metrics.sla_warnings.labels(tier, drill).inc)
            return None
        escalate = incident.next_escalation_at is not None
        if not escalate:
            detail["escalation"] = "not running (no step is scheduled)"
        add_event(session, incident.id, "sla_breached", now, detail=detail)
        on_commit(session, metrics.sla_breaches.labels(tier, drill).inc)
        return Breach(incident.id, incident.escalation_token, incident.tier, escalate)
