"""The delivery outbox: alerts are rows first, messages second.

``enqueue`` writes deliveries in the caller's transaction (the one that opened, upgraded
or escalated the incident), so an alert exists exactly when its cause does.
``dedupe_key`` = ``"{incident}:{tier}:{channel}:{reason}"`` makes that idempotent.

``deliver_due`` sends what is due, in three steps so that a slow channel holds no lock:

1. claim (one short transaction): pick pending rows with ``next_attempt_at <= now``
   (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, ignored by SQLite), then per row
   ``UPDATE ... SET attempts = attempts + 1, next_attempt_at = now + claim_timeout
   WHERE attempts = <read>`` — the row goes to whoever's update matched, so two alerters
   (or a tick and a signal handler) never send the same attempt;
2. send, outside any transaction, all claimed rows concurrently;
3. record (one transaction): sent / retry at ``now + backoff(attempts)`` (exponential with
   jitter, at least ``Retry-After``) / failed (permanent error, or ``max_attempts`` used),
   with a timeline event each.

Delivery is at-least-once: a crash between 1 and 3 leaves the row claimed, and after
``claim_timeout`` it is due again and sent again. Receivers dedupe on the idempotency key.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts.config import AlertsConfig
from alerts.messages import build_message
from alerts.models import FAILED, PENDING, SENT, Delivery, Incident
from alerts.notifiers.base import AlertMessage, DeliveryError, EvidenceSnippet, Notifier
from alerts.timeline import add_event
from core.clock import Clock
from core.db import unit_of_work
from core.metrics import Metrics

log = logging.getLogger(__name__)

ALERT = "alert"
UPGRADE = "upgrade"
FIRST_ALERT_REASONS = (ALERT, UPGRADE)
MAX_ROUNDS = 100  # per deliver_due call; a safety stop, not a limit one should reach


def escalation_reason(level: int) -> str:
    return f"escalation-{level}"


def dedupe_key(incident_id: int, tier: int, channel: str, reason: str) -> str:
    return f"{incident_id}:{tier}:{channel}:{reason}"


async def enqueue(
    session: AsyncSession,
    incident: Incident,
    targets: Mapping[str, Sequence[str]],
    *,
    reason: str,
    reason_text: str,
    evidence: Sequence[EvidenceSnippet],
    config: AlertsConfig,
    now: datetime,
    trigger_received_at: datetime | None,
) -> list[Delivery]:
    """Queue one delivery per target channel, skipping those already queued."""
    keys = {ch: dedupe_key(incident.id, incident.tier, ch, reason) for ch in targets}
    existing = set(
        await session.scalars(
            select(Delivery.dedupe_key).where(Delivery.dedupe_key.in_(keys.values()))
        )
    )
    queued: list[Delivery] = []
    for channel, teams in targets.items():
        key = keys[channel]
        if key in existing:
            continue
        message = build_message(
            incident,
            config=config,
            reason=reason_text,
            teams=teams,
            evidence=evidence,
            idempotency_key=key,
        )
        delivery = Delivery(
            incident_id=incident.id,
            tier=incident.tier,
            channel=channel,
            channel_type=config.channels[channel].type,
            reason=reason,
            payload=message.model_dump(mode="json"),
            status=PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            trigger_received_at=trigger_received_at,
            dedupe_key=key,
        )
        session.add(delivery)
        queued.append(delivery)
        add_event(
            session,
            incident.id,
            "alert_queued",
            now,
            detail={"channel": channel, "reason": reason, "teams": list(teams)},
        )
    return queued


@dataclass(frozen=True)
class _Claim:
    id: int
    incident_id: int
    tier: int
    channel: str
    channel_type: str
    reason: str
    payload: dict[str, Any]
    attempts: int  # including this one
    trigger_received_at: datetime | None


def rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


async def _claim(
    sessions: async_sessionmaker[AsyncSession], config: AlertsConfig, now: datetime
) -> list[_Claim]:
    lease_until = now + config.delivery.claim_timeout
    async with unit_of_work(sessions) as session:
        rows = (
            await session.scalars(
                select(Delivery)
                .where(Delivery.status == PENDING, Delivery.next_attempt_at <= now)
                .order_by(Delivery.next_attempt_at, Delivery.id)
                .limit(config.delivery.batch_size)
                .with_for_update(skip_locked=True)
            )
        ).all()
        claims: list[_Claim] = []
        for row in rows:
            result = await session.execute(
                update(Delivery)
                .where(
                    Delivery.id == row.id,
                    Delivery.status == PENDING,
                    Delivery.attempts == row.attempts,
                )
                .values(attempts=row.attempts + 1, next_attempt_at=lease_until)
                .execution_options(synchronize_session=False)
            )
            if rowcount(result) == 1:
                claims.append(
                    _Claim(
                        id=row.id,
                        incident_id=row.incident_id,
                        tier=row.tier,
                        channel=row.channel,
                        channel_type=row.channel_type,
                        reason=row.reason,
                        payload=dict(row.payload),
                        attempts=row.attempts + 1,
                        trigger_received_at=row.trigger_received_at,
                    )
                )
    return claims


async def _send(
    claim: _Claim, notifiers: Mapping[str, Notifier], limit: float
) -> DeliveryError | None:
    notifier = notifiers.get(claim.channel)
    if notifier is None:
        return DeliveryError(
            f"channel {claim.channel} is not configured (it was removed after the alert "
            "was queued)",
            retryable=False,
        )
    try:
        message = AlertMessage.model_validate(claim.payload)
    except ValidationError as exc:
        return DeliveryError(
            f"stored alert payload is invalid ({exc.error_count()} errors)", retryable=False
        )
    try:
        async with asyncio.timeout(limit):
            await notifier.send(message)
    except DeliveryError as exc:
        return exc
    except TimeoutError:
        return DeliveryError(f"channel {claim.channel}: send took over {limit:g}s", retryable=True)
    except Exception as exc:  # a notifier bug must not stop the other deliveries
        # Only the type: an arbitrary exception's message might carry a URL or a key.
        log.error(
            "channel %s: unexpected %s while sending delivery %d (will retry)",
            claim.channel,
            type(exc).__name__,
            claim.id,
        )
        return DeliveryError(
            f"channel {claim.channel}: unexpected {type(exc).__name__}", retryable=True
        )
    return None


def next_delay(
    config: AlertsConfig, attempts: int, error: DeliveryError, rng: random.Random
) -> timedelta:
    """Backoff after ``attempts`` failed tries: exponential, +/- jitter, >= Retry-After."""
    base = config.delivery.backoff(attempts)
    jitter = config.delivery.jitter
    delay = base * (1 + rng.uniform(-jitter, jitter)) if jitter else base
    if error.retry_after is not None:
        delay = max(delay, timedelta(seconds=error.retry_after))
    return min(delay, config.delivery.max_backoff)


async def _record(
    sessions: async_sessionmaker[AsyncSession],
    claims: Sequence[_Claim],
    outcomes: Sequence[DeliveryError | None],
    config: AlertsConfig,
    now: datetime,
    metrics: Metrics,
    rng: random.Random,
) -> None:
    after_commit: list[Callable[[], None]] = []
    async with unit_of_work(sessions) as session:
        for claim, error in zip(claims, outcomes, strict=True):
            if error is None:
                await _record_sent(session, claim, now, metrics, after_commit)
            else:
                await _record_failure(
                    session, claim, error, config, now, metrics, rng, after_commit
                )
    for action in after_commit:
        action()


async def _record_sent(
    session: AsyncSession,
    claim: _Claim,
    now: datetime,
    metrics: Metrics,
    after_commit: list[Callable[[], None]],
) -> None:
    first = False
    if claim.reason in FIRST_ALERT_REASONS and claim.trigger_received_at is not None:
        earlier = await session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(
                Delivery.incident_id == claim.incident_id,
                Delivery.tier == claim.tier,
                Delivery.reason.in_(FIRST_ALERT_REASONS),
                Delivery.status == SENT,
                Delivery.id != claim.id,
            )
        )
        first = not earlier
    # No status condition: if an ack cancelled it while it was in flight, it was still sent.
    result = await session.execute(
        update(Delivery)
        .where(Delivery.id == claim.id, Delivery.attempts == claim.attempts)
        .values(status=SENT, sent_at=now, next_attempt_at=None, last_error=None)
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        log.warning("delivery %d was re-claimed before its outcome was recorded", claim.id)
        return
    add_event(
        session,
        claim.incident_id,
        "alert_delivered",
        now,
        detail={"channel": claim.channel, "reason": claim.reason, "attempts": claim.attempts},
    )
    tier = str(claim.tier)
    after_commit.append(lambda: metrics.deliveries.labels(claim.channel_type, "sent").inc())
    if first and claim.trigger_received_at is not None:
        latency = (now - claim.trigger_received_at).total_seconds()
        after_commit.append(lambda: metrics.alert_latency.labels(tier).observe(max(latency, 0.0)))


async def _record_failure(
    session: AsyncSession,
    claim: _Claim,
    error: DeliveryError,
    config: AlertsConfig,
    now: datetime,
    metrics: Metrics,
    rng: random.Random,
    after_commit: list[Callable[[], None]],
) -> None:
    final = not error.retryable or claim.attempts >= config.delivery.max_attempts
    message = str(error)[:1000]
    next_at = None if final else now + next_delay(config, claim.attempts, error, rng)
    values: dict[str, Any] = {"last_error": message, "next_attempt_at": next_at}
    if final:
        values["status"] = FAILED
    result = await session.execute(
        update(Delivery)
        .where(
            Delivery.id == claim.id,
            Delivery.attempts == claim.attempts,
            Delivery.status == PENDING,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        log.info("delivery %d changed while it was being sent; outcome not recorded", claim.id)
        return
    add_event(
        session,
        claim.incident_id,
        "alert_failed",
        now,
        detail={
            "channel": claim.channel,
            "reason": claim.reason,
            "attempts": claim.attempts,
            "error": message,
            "will_retry": not final,
            "next_attempt_at": next_at.isoformat() if next_at else None,
        },
    )
    if final:
        log.error(
            "alert delivery %d to channel %s failed for good after %d attempt(s): %s",
            claim.id,
            claim.channel,
            claim.attempts,
            message,
        )
    else:
        log.warning(
            "alert delivery %d to channel %s failed (attempt %d/%d), retry at %s: %s",
            claim.id,
            claim.channel,
            claim.attempts,
            config.delivery.max_attempts,
            next_at.isoformat() if next_at else "-",
            message,
        )
    outcome = "failed" if final else "retry"
    after_commit.append(lambda: metrics.deliveries.labels(claim.channel_type, outcome).inc())


async def deliver_due(
    sessions: async_sessionmaker[AsyncSession],
    notifiers: Mapping[str, Notifier],
    config: AlertsConfig,
    clock: Clock,
    metrics: Metrics,
    *,
    rng: random.Random | None = None,
) -> int:
    """Send every delivery that is due; returns how many attempts were made."""
    rng = rng or random.Random()
    send_limit = config.delivery.claim_timeout.total_seconds() * 0.8
    attempted = 0
    for _ in range(MAX_ROUNDS):
        claims = await _claim(sessions, config, clock.now())
        if not claims:
            break
        outcomes = await asyncio.gather(*(_send(c, notifiers, send_limit) for c in claims))
        await _record(sessions, claims, outcomes, config, clock.now(), metrics, rng)
        attempted += len(claims)
        if len(claims) < config.delivery.batch_size:
            break
    return attempted


async def pending_count(session: AsyncSession) -> int:
    count = await session.scalar(
        select(func.count()).select_from(Delivery).where(Delivery.status == PENDING)
    )
    return int(count or 0)
