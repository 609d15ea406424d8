"""Escalation policies: an alert nobody acknowledged goes, step by step, further up.

When escalation starts (an incident opens or is upgraded), ``arm`` copies the tier's
policy and the routed teams onto the incident (``escalation_policy``): later config
changes do not change a running timeline. Steps run in order (``repeat`` times over);
step ``k`` is due ``steps[k].after`` after the previous one. Each scheduled step carries
the incident's ``escalation_token``; ``run_step`` does
``UPDATE ... WHERE escalation_token = <the step's>``: an ack, a resolve or an upgrade
rotates the token, so a late timer (or a second alerter) does nothing.

Steps are APScheduler jobs in a persistent job store (``alerts.jobs``); the database row
stays the truth, so an overdue incident whose job was lost (a crash between the commit
and the scheduling) is found by ``overdue`` and run all the same.

Silences are evaluated when a step is due, as Alertmanager evaluates them at notification
time: a step (or reminder) of an incident that an active silence matches sends nothing;
the incident's escalation stops there (``silenced`` on its timeline, its pending pages
cancelled, its SLA clock kept) and, when the silence ends, the release alerts it again
and starts its escalation again if it is still open and unacknowledged
(``incidents.release_silence``): the silence delays the escalation, never drops it.

One incident's step that raises (a corrupt row, a channel the database refuses) must not
hold up the others: ``attempt`` logs it with the incident's id, counts it in
``crisiswatch_alert_item_errors_total{step="escalate"}`` and postpones that step with a
backoff (``Retries``: 30 s, doubling up to 10 min), on its row and in the job store,
so it is no longer first in line; the other incidents' steps go on. A database that is
unavailable is not one incident's problem: that error is raised (the tick skips the rest).
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts import silences
from alerts.config import AlertsConfig, EscalationStep
from alerts.messages import describe, snippets_from_rows
from alerts.models import (
    CANCELLED,
    OPEN,
    PENDING,
    Delivery,
    Incident,
    IncidentEvent,
    IncidentEvidence,
    Silence,
)
from alerts.notifiers.reasons import Reason
from alerts.outbox import (
    ESCALATION,
    FIRST_ALERT_REASONS,
    REALERT,
    enqueue,
    escalation_reason,
    rowcount,
)
from alerts.targets import step_targets
from alerts.timeline import add_event
from core.clock import Clock
from core.db import database_unavailable, on_commit, unit_of_work
from core.metrics import Metrics, drill_label

log = logging.getLogger(__name__)

BATCH = 200
RETRY_FIRST = timedelta(seconds=30)
RETRY_MAX = timedelta(minutes=10)
RETRY_FORGET = 2 * RETRY_MAX
"""A failed item not tried again (and failing) within this of its last failure is
forgotten: it is due at most ``RETRY_MAX`` after it, so nothing retries it any more (its
incident ended, its task was done, another alerter released it)."""
RETRIES_LIMIT = 10_000
"""The most failed items ``Retries`` remembers (those whose last failure is oldest go
first: forgotten, they are tried again at once)."""
ITEM = "escalate"
"""The ``step`` label of ``crisiswatch_alert_item_errors_total`` for a failed step."""


@dataclass(frozen=True)
class Scheduled:
    """A step to put in the job store once the transaction commits."""

    incident_id: int
    token: str
    at: datetime


def scheduled(incident: Incident) -> Scheduled | None:
    if incident.next_escalation_at is None or incident.status != OPEN:
        return None
    return Scheduled(incident.id, incident.escalation_token, incident.next_escalation_at)


def arm(
    incident: Incident,
    config: AlertsConfig,
    teams: list[str],
    start: datetime,
    repeat_interval: timedelta = timedelta(0),
    *,
    run: int = 1,
) -> None:
    """(Re)start escalation with a fresh token and a snapshot of the tier's policy.
    ``repeat_interval`` (the route's; 0 = never): once the steps are done, the routed
    teams are reminded this often until someone acknowledges. ``run`` (``next_run``): the
    how-manyth escalation of the incident at its tier this is; its steps' reasons carry it
    (``escalation_reason``), so a run restarted by a release does not reuse the dedupe
    keys of an earlier run's steps."""
    incident.escalation_token = str(uuid.uuid4())
    incident.escalation_level = 0
    name = config.escalation.get(incident.tier)
    policy = config.policy_for(incident.tier)
    if policy is None:
        incident.escalation_policy = None
        incident.next_escalation_at = None
        return
    incident.escalation_policy = {
        "name": name,
        "tier": incident.tier,
        "teams": list(teams),
        "repeat": policy.repeat,
        "steps": [step.model_dump(mode="json") for step in policy.steps],
        "repeat_interval": repeat_interval.total_seconds(),
        "run": run,
    }
    incident.next_escalation_at = start + policy.steps[0].after


async def next_run(session: AsyncSession, incident: Incident) -> int:
    """The number of the escalation that starts now at the incident's current tier: 1 + the
    runs started at that tier before (its own ``escalation_started`` events; those a merge
    moved from another incident, marked ``from_incident``, are not its own)."""
    details = await session.scalars(
        select(IncidentEvent.detail).where(
            IncidentEvent.incident_id == incident.id, IncidentEvent.kind == "escalation_started"
        )
    )
    return 1 + sum(
        1
        for detail in details
        if "from_incident" not in (detail or {}) and (detail or {}).get("tier") == incident.tier
    )


def disarm(incident: Incident) -> None:
    incident.escalation_token = str(uuid.uuid4())
    incident.next_escalation_at = None


def _steps(snapshot: dict[str, Any]) -> tuple[list[EscalationStep], int, timedelta]:
    steps = [EscalationStep.model_validate(s) for s in snapshot["steps"]]
    remind = timedelta(seconds=float(snapshot.get("repeat_interval") or 0))
    return steps, len(steps) * int(snapshot["repeat"]), remind


@dataclass(frozen=True)
class StepRun:
    """A step that ran: its incident, and whether it queued anything (False: recorded as
    ``escalation_skipped``: no target, or every delivery of it was queued already; or
    muted by ``silenced_by``, an active silence, which stopped the escalation)."""

    incident: Incident
    sent: bool
    silenced_by: Silence | None = None


async def run_step(
    session: AsyncSession,
    incident_id: int,
    token: str,
    config: AlertsConfig,
    now: datetime,
    *,
    why: Reason | None = None,
) -> Incident | None:
    """Run the incident's next step if ``token`` is still its token; None when the timer
    is stale (acked, resolved, upgraded, or already run). ``why`` set: run it now even
    if it is not due yet (an SLA breach)."""
    ran = await _run_step(session, incident_id, token, config, now, why=why)
    return None if ran is None else ran.incident


async def _run_step(
    session: AsyncSession,
    incident_id: int,
    token: str,
    config: AlertsConfig,
    now: datetime,
    *,
    why: Reason | None = None,
) -> StepRun | None:
    """``run_step``, and what the step did (``StepRun``)."""
    incident = await session.get(Incident, incident_id)
    if (
        incident is None
        or incident.escalation_token != token
        or incident.status != OPEN
        or incident.escalation_policy is None
    ):
        return None
    snapshot = incident.escalation_policy
    steps, total, remind = _steps(snapshot)
    done = incident.escalation_level
    reminder = done >= total
    if reminder and not remind:
        return None
    level = done + 1
    conditions = [
        Incident.id == incident_id,
        Incident.escalation_token == token,
        Incident.status == OPEN,
        Incident.escalation_level == done,
    ]
    if why is None:
        conditions.append(Incident.next_escalation_at <= now)
    silence = await silences.silencing(session, incident, config, now)
    if silence is not None:
        what = "reminder" if reminder else f"level {level}"
        return await _silence(session, incident, silence, conditions, now, what)
    if level < total:
        next_at: datetime | None = now + steps[level % len(steps)].after
    else:
        next_at = now + remind if remind else None
    result = await session.execute(
        update(Incident)
        .where(*conditions)
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
    notify = "route" if reminder else steps[done % len(steps)].notify
    targets, described = step_targets(config, notify, list(snapshot["teams"]), now)
    evidence = await session.scalars(
        select(IncidentEvidence)
        .where(IncidentEvidence.incident_id == incident_id)
        .order_by(IncidentEvidence.id)
        .limit(config.evidence_in_alert)
    )
    waited = describe(now - incident.alerted_at)
    seconds = (now - incident.alerted_at).total_seconds()
    step_why = (
        Reason(code="reminder", seconds=seconds)
        if reminder
        else Reason(code="escalation", level=level, seconds=seconds)
    )
    queued = await enqueue(
        session,
        incident,
        targets,
        reason=escalation_reason(level, int(snapshot.get("run") or 1)),
        why=why or step_why,
        evidence=snippets_from_rows(evidence, config.evidence_in_alert),
        config=config,
        now=now,
        trigger_received_at=None,
    )
    skipped: dict[str, Any] = {}
    if targets and not queued:  # a dedupe key taken: nothing new went out
        skipped["skipped"] = "already queued (same dedupe keys)"
    add_event(
        session,
        incident_id,
        "escalated" if queued else "escalation_skipped",
        now,
        detail=skipped
        | {
            "level": level,
            "of": total,
            "policy": snapshot.get("name"),
            "step": None if reminder else done % len(steps),
            "reminder": reminder,
            "notify": described,
            "contacts": {ch: t.teams for ch, t in targets.items()},
            "unacknowledged_for": waited,
            "why": why.english() if why else None,
            "next_escalation_at": next_at.isoformat() if next_at else None,
        },
    )
    return StepRun(incident, bool(queued))


def _pages() -> ColumnElement[bool]:
    """Deliveries that page someone (first alerts, re-alerts, escalation steps): not
    follow-ups nor task reminders."""
    return or_(
        Delivery.reason.in_(FIRST_ALERT_REASONS),
        Delivery.reason.startswith(REALERT, autoescape=True),
        Delivery.reason.startswith(ESCALATION, autoescape=True),
    )


async def _silence(
    session: AsyncSession,
    incident: Incident,
    silence: Silence,
    conditions: list[ColumnElement[bool]],
    now: datetime,
    what: str,
) -> StepRun | None:
    """The due step (``what``) of an incident that ``silence`` matches now: nothing is
    sent, the escalation stops (a new token: its timers are void), the pages still queued
    for it are cancelled, and ``silenced`` is recorded as when a silence mutes an alert,
    so that the silence's end alerts the incident again (``incidents.release_silence``).
    The SLA clock keeps running (a breach is recorded, and escalates nothing while the
    escalation is stopped), as for an incident inhibited after it was alerted."""
    result = await session.execute(
        update(Incident)
        .where(*conditions)
        .values(escalation_token=str(uuid.uuid4()), next_escalation_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        return None
    await session.refresh(incident)
    why = f"silenced by silence {silence.id}"
    cancelled = await session.execute(
        update(Delivery)
        .where(Delivery.incident_id == incident.id, Delivery.status == PENDING, _pages())
        .values(status=CANCELLED, next_attempt_at=None, last_error=why)
        .execution_options(synchronize_session=False)
    )
    snapshot = incident.escalation_policy or {}
    add_event(
        session,
        incident.id,
        "silenced",
        now,
        detail={
            "silence": silence.id,
            "author": silence.author,
            "reason": silence.reason,
            "teams": list(snapshot.get("teams", [])),
            "escalation": f"stopped at {what} (it starts again when the silence ends)",
            "cancelled_deliveries": rowcount(cancelled),
        },
    )
    return StepRun(incident, False, silenced_by=silence)


async def overdue(session: AsyncSession, now: datetime) -> list[tuple[int, str]]:
    """(incident id, token) of open incidents whose next step is due."""
    rows = await session.execute(
        select(Incident.id, Incident.escalation_token)
        .where(Incident.status == OPEN, Incident.next_escalation_at <= now)
        .order_by(Incident.next_escalation_at, Incident.id)
        .limit(BATCH)
    )
    return [(int(i), str(t)) for i, t in rows]


Schedule = Callable[[Scheduled], Awaitable[None]]


async def escalate_one(
    sessions: async_sessionmaker[AsyncSession],
    incident_id: int,
    token: str,
    config: AlertsConfig,
    clock: Clock,
    metrics: Metrics,
    *,
    why: Reason | None = None,
    schedule: Schedule | None = None,
) -> bool:
    """Run one step in its own transaction, then hand the next step to ``schedule``."""
    async with unit_of_work(sessions) as session:
        ran = await _run_step(session, incident_id, token, config, clock.now(), why=why)
        step = scheduled(ran.incident) if ran is not None else None
        if ran is not None and ran.silenced_by is not None:
            on_commit(session, metrics.alerts_suppressed.labels("silenced").inc)
    if ran is None:
        return False
    incident = ran.incident
    if step is not None and schedule is not None:
        await schedule(step)
    if ran.silenced_by is not None:
        log.info(
            "incident %d (tier %d): escalation stopped by silence %d until it ends",
            incident.id,
            incident.tier,
            ran.silenced_by.id,
        )
        return True
    if not ran.sent:
        log.info(
            "incident %d (tier %d): escalation level %d sent nothing (see its timeline)",
            incident.id,
            incident.tier,
            incident.escalation_level,
        )
        return True
    metrics.escalations.labels(str(incident.tier), drill_label(incident.drill)).inc()
    log.warning(
        "incident %d (tier %d) not acknowledged: escalation level %d%s",
        incident.id,
        incident.tier,
        incident.escalation_level,
        f" ({why.english()})" if why else "",
    )
    return True


class Retries:
    """Items (an incident's escalation step, a silence to release, ...) that failed, in this
    process: how many times in a row, and when to try again: ``RETRY_FIRST`` after the
    first failure, doubling up to ``RETRY_MAX``. Bounded: a success forgets the item, so
    does ``RETRY_FORGET`` without a new failure (its incident ended, whichever process
    ended it), and at most ``limit`` items are remembered."""

    def __init__(self, limit: int = RETRIES_LIMIT) -> None:
        self._limit = limit
        # key -> (failures in a row, next try, last failure); oldest last failure first
        self._failed: OrderedDict[Hashable, tuple[int, datetime, datetime]] = OrderedDict()

    @property
    def remembered(self) -> int:
        """How many failed items are remembered (not ``__len__``: an empty one is not
        false, callers write ``retries or Retries()``)."""
        return len(self._failed)

    def failed(self, key: Hashable, now: datetime) -> datetime:
        """Count a failure of ``key``; returns when to try it again."""
        self._forget_stale(now)
        failures = self.failures(key) + 1
        factor: int = 2 ** min(failures - 1, 16)
        retry_at = now + min(RETRY_MAX, RETRY_FIRST * factor)
        self._failed.pop(key, None)
        self._failed[key] = (failures, retry_at, now)
        while len(self._failed) > self._limit:
            self._failed.popitem(last=False)
        return retry_at

    def waiting(self, key: Hashable, now: datetime) -> bool:
        """Whether ``key`` failed and its next try is not due yet."""
        self._forget_stale(now)
        failed = self._failed.get(key)
        return failed is not None and now < failed[1]

    def failures(self, key: Hashable) -> int:
        failed = self._failed.get(key)
        return 0 if failed is None else failed[0]

    def held(self, step: str, now: datetime) -> set[Hashable]:
        """The items of ``step`` (keys ``(step, item)``) whose next try is not due yet."""
        self._forget_stale(now)
        return {
            key[1]
            for key, (_, retry_at, _) in self._failed.items()
            if isinstance(key, tuple) and len(key) == 2 and key[0] == step and now < retry_at
        }

    def succeeded(self, key: Hashable) -> None:
        self._failed.pop(key, None)

    def item_failed(self, step: str, item: Hashable, now: datetime, what: str) -> datetime:
        """Item ``item`` of the tick's ``step`` raised (call it in the ``except``, after
        counting it in ``crisiswatch_alert_item_errors_total{step}``): logged with its
        traceback as ``what`` failed and when it is tried again (key ``(step, item)``);
        that time."""
        key = (step, item)
        retry_at = self.failed(key, now)
        log.exception(
            "%s failed (%d time(s) in a row); retried at %s, the others go on",
            what,
            self.failures(key),
            retry_at.isoformat(),
        )
        return retry_at

    def _forget_stale(self, now: datetime) -> None:
        while self._failed:
            key, (_, _, last) = next(iter(self._failed.items()))
            if now - last < RETRY_FORGET:
                return
            del self._failed[key]


@dataclass(frozen=True)
class Attempt:
    ran: bool
    """The step ran (False: stale, or it failed)."""
    retry_at: datetime | None = None
    """It failed: its next try (the row's ``next_escalation_at`` was moved there)."""


async def attempt(
    sessions: async_sessionmaker[AsyncSession],
    incident_id: int,
    token: str,
    config: AlertsConfig,
    clock: Clock,
    metrics: Metrics,
    retries: Retries,
    *,
    why: Reason | None = None,
    schedule: Schedule | None = None,
) -> Attempt:
    """``escalate_one``, isolated: a step that raises is logged with the incident's id and
    counted (``crisiswatch_alert_item_errors_total{step="escalate"}``), and its row's
    ``next_escalation_at`` is moved ``retries``' backoff later (``retry_at``; the caller
    moves its job there), so that it is neither first in line at every tick nor lost. A
    step run early by an SLA breach (``why``) is not postponed: its timer still holds.
    An unavailable database is raised: it is no one incident's fault."""
    try:
        ran = await escalate_one(
            sessions, incident_id, token, config, clock, metrics, why=why, schedule=schedule
        )
    except Exception as exc:
        if database_unavailable(exc):
            raise
        metrics.alert_item_errors.labels(ITEM).inc()
        if why is not None:
            log.exception(
                "incident %d: the escalation step for %r failed; its next step stays "
                "scheduled, the other incidents go on",
                incident_id,
                why.english(),
            )
            return Attempt(ran=False)
        retry_at = retries.item_failed(
            ITEM, incident_id, clock.now(), f"incident {incident_id}: its escalation step"
        )
        await _postpone(sessions, incident_id, token, retry_at)
        return Attempt(ran=False, retry_at=retry_at)
    retries.succeeded((ITEM, incident_id))
    return Attempt(ran=ran)


async def _postpone(
    sessions: async_sessionmaker[AsyncSession], incident_id: int, token: str, at: datetime
) -> None:
    """Move the due step of the incident (still at ``token``) to ``at``."""
    try:
        async with unit_of_work(sessions) as session:
            await session.execute(
                update(Incident)
                .where(
                    Incident.id == incident_id,
                    Incident.escalation_token == token,
                    Incident.status == OPEN,
                    Incident.next_escalation_at < at,
                )
                .values(next_escalation_at=at)
                .execution_options(synchronize_session=False)
            )
    except Exception:
        # The step is retried at the next tick instead (it stays due by its row).
        log.exception("incident %d: could not postpone its failed escalation step", incident_id)


async def escalate_due(
    sessions: async_sessionmaker[AsyncSession],
    config: AlertsConfig,
    clock: Clock,
    metrics: Metrics,
    *,
    schedule: Schedule | None = None,
    retries: Retries | None = None,
) -> int:
    """Run the step of every open incident that is due by its row (what the job store
    did not run: a job lost in a crash, or no job store at all); returns how many ran.
    Each on its own (``attempt``): one that fails is postponed, the others still run."""
    retries = retries or Retries()
    async with sessions() as session:
        due = await overdue(session, clock.now())
    ran = 0
    for incident_id, token in due:
        done = await attempt(
            sessions, incident_id, token, config, clock, metrics, retries, schedule=schedule
        )
        ran += done.ran
        if done.retry_at is not None and schedule is not None:
            await schedule(Scheduled(incident_id, token, done.retry_at))
    return ran
