"""The delivery outbox: alerts are rows first, messages second.

``enqueue`` writes deliveries in the caller's transaction (the one that opened, upgraded
or escalated the incident), so an alert exists exactly when its cause does.
``dedupe_key`` = ``"{incident}:{tier}:{channel}:{reason}"`` makes that idempotent.

``deliver_due`` sends what is due, in three steps so that a slow channel holds no lock:

1. claim (one short transaction): pick pending rows with ``next_attempt_at <= now``
   (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite takes its write lock), then per row
   ``UPDATE ... SET attempts = attempts + 1, next_attempt_at = now + claim_timeout
   WHERE attempts = <read>`` — the row goes to whoever's update matched, so two alerters
   (or a tick and a signal handler) never send the same attempt;
2. send, outside any transaction, all claimed rows concurrently;
3. record (one transaction): sent / retry at ``now + backoff(attempts)`` (exponential with
   jitter, capped, at least ``Retry-After``) / failed (a permanent error, or the retry
   policy gave up: ``give_up_after`` since the first failure, or ``max_attempts`` if set) /
   cancelled (a retryable failure of an alert its incident no longer needs: acknowledged,
   resolved), with a timeline event each.

The retry policy (``alerts.config.DeliveryConfig``): a retryable failure is retried until
delivered, until the incident no longer needs the alert, or until it has failed for
``give_up_after`` (counted from ``first_failed_at``, not from ``created_at``: a held row is
created long before its first attempt). An open incident at ``keep_trying_tier`` or above
is never given up on. ``retrying`` feeds the gauges that show a channel still retrying.

Rate limits (``alerts.ratelimit``): before claiming, a channel's due rows are planned
against its limiter: if fewer messages may go than rows are due, the rows are merged into
digest messages (``AlertMessage.digest``, at most ``batch_size`` alerts each); if none may
go, the rows wait for the next free slot. Rows sharing a ``digest_group`` (quiet hours,
route grouping) always go as one digest. Nothing is dropped. Channels that key their
alerts per incident (``alerts.channels.KEYED_CHANNEL_TYPES``: PagerDuty) never get a
digest: each row is its own event, and rows over the limit wait.

Follow-ups: an ack or resolve is mirrored to the channels that got an alert
(``enqueue_follow_ups``); an alert recorded as sent after that (held, in flight) gets its
follow-up then; when an upgrade starts a new page (``Incident.page``), the older page's
alerts on keyed channels are resolved (``supersede_pages``). On a keyed channel an alert
attempted but never recorded as sent (its answer lost, the alerter died) may be open
there: cancelled or failed, it is followed up as a sent one (``possibly_sent``).

Fallback: after ``fallback_after`` failed attempts (at once on a permanent error, or when
the channel asks to wait longer than ``fallback_if_wait_over``, or is blocked that long by
its platform's penalty) a row with ``fallbacks`` is closed and queued again on the next
channel. A row that fails for
good with no channel left calls ``on_failed`` (the service opens an incident about
crisiswatch itself).

Delivery is at-least-once: a crash between 1 and 3 leaves the row claimed, and after
``claim_timeout`` it is due again and sent again. Receivers dedupe on the idempotency key.
A digest sent again may be merged with other rows (a new digest key): each of its items
keeps its own row's key (``DigestItem.idempotency_key``), and keyed channels get no digest.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import ColumnElement, CursorResult, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts.channels import KEYED_CHANNEL_TYPES, keyed
from alerts.config import AlertsConfig
from alerts.messages import build_message, digest_message, follow_up
from alerts.models import (
    ACK_REASON,
    ACKNOWLEDGED,
    CANCELLED,
    FAILED,
    FINISHED,
    FOLLOW_UP_REASONS,
    MITIGATING,
    OPEN,
    PENDING,
    RESOLVE_REASON,
    SENT,
    Delivery,
    Incident,
)
from alerts.notifiers.base import AlertMessage, DeliveryError, EvidenceSnippet, Notifier
from alerts.notifiers.reasons import Reason
from alerts.ratelimit import RateLimiter
from alerts.targets import Targets
from alerts.timeline import add_event
from core.clock import Clock
from core.db import on_commit, savepoint, unit_of_work
from core.metrics import Metrics, drill_label

log = logging.getLogger(__name__)

ALERT = "alert"
UPGRADE = "upgrade"
RESOLVE_FOLLOW_UP = "resolve"
FIRST_ALERT_REASONS = (ALERT, UPGRADE)
REALERT = "realert-"
"""Prefix of the reason of an alert raised again at a tier that was alerted before (the
incident was alerted, then muted, then released: ``realert_reason``)."""
MAX_ROUNDS = 100  # per deliver_due call; a safety stop, not a limit one should reach

AckLink = Callable[[int, str], Awaitable[str | None]]
"""(incident id, channel) -> a signed ack URL for the message, or None (the hook for the
ack-link tokens; the URL is added at send time, never stored)."""
OnFailed = Callable[[AsyncSession, str, str, datetime], Awaitable[None]]
"""(session, channel, error, now): a delivery failed for good on its last channel."""


ESCALATION = "escalation-"
"""Prefix of the reason of an escalation step or reminder (``escalation_reason``)."""


def escalation_reason(level: int, run: int = 1) -> str:
    """The reason of step ``level`` of the incident's ``run``-th escalation at its tier
    (``escalation-<level>``, then ``escalation-<level>@<run>`` for a run started again by a
    release: its dedupe keys are new, as ``realert_reason``'s are)."""
    return f"{ESCALATION}{level}" if run <= 1 else f"{ESCALATION}{level}@{run}"


def realert_reason(n: int) -> str:
    """The ``n``-th alert of an incident at a tier it was alerted at before (released from
    an inhibition or a silence after an earlier alert there): a reason of its own, so that
    its dedupe keys are new."""
    return f"{REALERT}{n}"


def is_alert(reason: str) -> bool:
    """A first alert, upgrade or re-alert (not an escalation step, reminder or follow-up)."""
    return reason in FIRST_ALERT_REASONS or reason.startswith(REALERT)


def is_page(reason: str) -> bool:
    """An alert that asks someone to act (first alert, upgrade, re-alert, escalation): moot
    once somebody acknowledged the incident."""
    return is_alert(reason) or reason.startswith(ESCALATION)


def no_longer_needed(reason: str, incident_status: str | None) -> str | None:
    """Why a delivery of ``reason`` is moot for an incident in ``incident_status`` (None:
    it is still needed). Task reminders and the ack follow-up matter until the incident is
    resolved; the resolve follow-up always."""
    if incident_status in FINISHED:
        return None if reason == RESOLVE_FOLLOW_UP else f"incident {incident_status}"
    if incident_status in (ACKNOWLEDGED, MITIGATING) and is_page(reason):
        return "incident acknowledged"
    return None


def dedupe_key(incident_id: int, tier: int, channel: str, reason: str) -> str:
    return f"{incident_id}:{tier}:{channel}:{reason}"


async def _existing(session: AsyncSession, keys: Sequence[str]) -> set[str]:
    return set(
        await session.scalars(select(Delivery.dedupe_key).where(Delivery.dedupe_key.in_(keys)))
    )


def _row(
    incident: Incident,
    channel: str,
    channel_type: str,
    reason: str,
    payload: dict[str, Any],
    *,
    now: datetime,
    not_before: datetime | None = None,
    trigger_received_at: datetime | None = None,
    fallbacks: Sequence[str] = (),
    digest_group: str | None = None,
) -> Delivery:
    return Delivery(
        incident_id=incident.id,
        tier=incident.tier,
        channel=channel,
        channel_type=channel_type,
        reason=reason,
        payload=payload,
        status=PENDING,
        attempts=0,
        next_attempt_at=max(now, not_before) if not_before else now,
        created_at=now,
        trigger_received_at=trigger_received_at,
        dedupe_key=str(payload["idempotency_key"]),
        fallbacks=list(fallbacks),
        digest_group=digest_group,
    )


async def enqueue(
    session: AsyncSession,
    incident: Incident,
    targets: Targets,
    *,
    reason: str,
    why: Reason,
    evidence: Sequence[EvidenceSnippet],
    config: AlertsConfig,
    now: datetime,
    trigger_received_at: datetime | None,
    not_before: datetime | None = None,
    digest_group: str | None = None,
) -> list[Delivery]:
    """Queue one delivery per target channel, skipping those already queued. ``reason``
    keys the delivery; ``why`` is what its message says (in each channel's language).

    ``not_before`` holds it (quiet hours, group wait); rows of one ``digest_group`` that
    are due together on one channel go out as one digest."""
    keys = {ch: dedupe_key(incident.id, incident.tier, ch, reason) for ch in targets}
    existing = await _existing(session, list(keys.values()))
    queued: list[Delivery] = []
    for channel, target in targets.items():
        key = keys[channel]
        if key in existing or channel not in config.channels:
            continue
        message = build_message(
            incident,
            config=config,
            reason=why,
            teams=target.teams,
            evidence=evidence,
            idempotency_key=key,
            mentions=target.mentions,
        )
        delivery = _row(
            incident,
            channel,
            config.channels[channel].type,
            reason,
            message.model_dump(mode="json"),
            now=now,
            not_before=not_before,
            trigger_received_at=trigger_received_at,
            fallbacks=[fb for fb in target.fallbacks if fb in config.channels],
            digest_group=digest_group,
        )
        session.add(delivery)
        queued.append(delivery)
        detail: dict[str, Any] = {"channel": channel, "reason": reason, "teams": target.teams}
        if target.mentions:
            detail["mentions"] = [c.name for c in target.mentions]
        if delivery.next_attempt_at and delivery.next_attempt_at > now:
            detail["not_before"] = delivery.next_attempt_at.isoformat()
        add_event(session, incident.id, "alert_queued", now, detail=detail)
    return queued


def page_of(payload: Mapping[str, Any]) -> int:
    """The incident page an alert payload belongs to (0 for payloads stored before pages)."""
    return int(payload.get("page") or 0)


def follow_up_reason(action: str) -> str:
    return ACK_REASON if action == "acknowledge" else RESOLVE_REASON


def follow_up_key(alert_key: str, action: str) -> str:
    """The follow-up of one sent alert (its ``dedupe_key``): one ack and one resolve per
    alert, whichever path queues it (the ack itself, or a late send of the alert)."""
    return f"{alert_key}:{follow_up_reason(action)}"


def possibly_sent() -> ColumnElement[bool]:
    """Deliveries that may have reached their channel though never recorded as sent: on a
    keyed channel (``alerts.channels.KEYED_CHANNEL_TYPES``), attempted at least once (its
    answer lost to a timeout, or the alerter died before recording it), then cancelled
    (an ack, a resolve, a merge, a new page) or failed for good. PagerDuty may hold an
    alert under their ``dedup_key``: left alone it stays triggered (and pages) or
    acknowledged for good, so they are followed up as sent ones are (an acknowledge or
    resolve for a key PagerDuty never got is accepted and changes nothing). A chat or
    mailbox is not told of an alert it may never have shown."""
    return and_(
        Delivery.channel_type.in_(KEYED_CHANNEL_TYPES),
        Delivery.status.in_((CANCELLED, FAILED)),
        Delivery.attempts > 0,
    )


def _add_follow_up(
    session: AsyncSession,
    incident: Incident,
    alert: Delivery | _Row,
    channel: str,
    channel_type: str,
    action: str,
    actor: str,
    now: datetime,
    *,
    why: Reason | None = None,
) -> None:
    key = follow_up_key(str(alert.payload["idempotency_key"]), action)
    payload = follow_up(dict(alert.payload), action, actor, key, reason=why)
    reason = follow_up_reason(action)
    session.add(_row(incident, channel, channel_type, reason, payload, now=now))


async def enqueue_follow_ups(
    session: AsyncSession, incident: Incident, action: str, actor: str, now: datetime
) -> int:
    """Mirror an ack/resolve to every channel that got an alert of ``incident``
    (one follow-up per channel, built from the last alert sent there, so it carries that
    alert's page and ``dedup_key``; on a keyed channel, one that was ``possibly_sent``
    counts as sent). A resolve also goes to every older page still held on a keyed
    channel (``alerts.channels.KEYED_CHANNEL_TYPES``) whose superseding resolve
    (``supersede_pages``) was not queued. An alert that reaches a channel only after this
    (held, in flight) gets its follow-up when it is recorded (``_follow_late_alert``)."""
    reason = follow_up_reason(action)
    sent = (
        await session.scalars(
            select(Delivery)
            .where(
                Delivery.incident_id == incident.id,
                or_(Delivery.status == SENT, possibly_sent()),
                Delivery.reason.not_in(FOLLOW_UP_REASONS),
            )
            .order_by(Delivery.id)
        )
    ).all()
    latest: dict[tuple[str, int], Delivery] = {}
    for row in sent:
        every_page = action == "resolve" and keyed(row.channel_type)
        latest[(row.channel, page_of(row.payload) if every_page else -1)] = row
    keys = {target: follow_up_key(row.dedupe_key, action) for target, row in latest.items()}
    existing = await _existing(session, list(keys.values()))
    queued = 0
    for target, row in latest.items():
        if keys[target] in existing:
            continue
        _add_follow_up(session, incident, row, row.channel, row.channel_type, action, actor, now)
        queued += 1
    if queued:
        channels = sorted({channel for channel, _ in latest})
        add_event(
            session,
            incident.id,
            "alert_queued",
            now,
            detail={"reason": reason, "channels": channels, "actor": actor},
        )
    return queued


SUPERSEDED = "crisiswatch"
"""The actor of the resolve that closes a superseded page on a keyed channel."""


async def supersede_pages(session: AsyncSession, incident: Incident, now: datetime) -> int:
    """``incident`` started a new page (an upgrade reopened it, or raised it while a keyed
    channel held its page: ``incidents._upgrade``): on keyed channels, close
    what is left of its older pages. Returns how many resolves were queued.

    The older page's alert there (PagerDuty: an *acknowledged* alert, which would
    otherwise stay open for good, or re-page when the service's acknowledgement timeout
    runs out) is resolved now, at the upgrade, rather than when the incident is finally
    resolved: from the upgrade on, the new page is the one that stands for the incident,
    so the channel holds exactly one open alert per incident, as crisiswatch does. The
    final resolve resolves any older page again if this one did not get queued
    (``enqueue_follow_ups``). An older page's alert not sent yet (held, waiting to be
    retried) is cancelled: the new page's alert replaces it; one that was attempted
    already (in flight, its answer lost, the alerter died before recording it) may have
    reached the channel: it is resolved all the same, as one ``possibly_sent``."""
    rows = (
        await session.scalars(
            select(Delivery)
            .where(
                Delivery.incident_id == incident.id,
                Delivery.channel_type.in_(KEYED_CHANNEL_TYPES),
                Delivery.status.in_((SENT, PENDING, CANCELLED, FAILED)),
                Delivery.reason.not_in(FOLLOW_UP_REASONS),
            )
            .order_by(Delivery.id)
        )
    ).all()
    latest: dict[tuple[str, int], Delivery] = {}
    cancelled: list[int] = []
    for row in rows:
        page = page_of(row.payload)
        if page >= incident.page:
            continue
        if row.status == PENDING:
            row.status, row.next_attempt_at = CANCELLED, None
            row.last_error = f"cancelled: superseded by page {incident.page} of the incident"
            cancelled.append(row.id)
        if row.status == SENT or row.attempts > 0:  # sent, or possibly sent
            latest[(row.channel, page)] = row
    keys = {target: follow_up_key(row.dedupe_key, "resolve") for target, row in latest.items()}
    existing = await _existing(session, list(keys.values()))
    todo = {target: row for target, row in latest.items() if keys[target] not in existing}
    why = Reason(code="superseded", tier=incident.tier)
    for (channel, _), row in todo.items():
        _add_follow_up(
            session,
            incident,
            row,
            channel,
            row.channel_type,
            "resolve",
            SUPERSEDED,
            now,
            why=why,
        )
    if todo or cancelled:
        detail: dict[str, Any] = {
            "reason": RESOLVE_REASON,
            "superseded_by_page": incident.page,
            "channels": sorted({channel for channel, _ in todo}),
            "pages": sorted({page for _, page in todo}),
        }
        if cancelled:
            detail["cancelled_deliveries"] = cancelled
        add_event(session, incident.id, "alert_queued", now, detail=detail)
    return len(todo)


@dataclass(frozen=True)
class _Row:
    id: int
    incident_id: int
    tier: int
    reason: str
    payload: dict[str, Any]
    attempts: int  # including this one
    trigger_received_at: datetime | None
    fallbacks: tuple[str, ...]
    first_failed_at: datetime | None = None


@dataclass(frozen=True)
class _Claim:
    """One message to send: one row, or several merged into a digest."""

    channel: str
    channel_type: str
    rows: tuple[_Row, ...]
    payload: dict[str, Any]
    error: DeliveryError | None = None  # the message could not be built: not sent


def rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def _units(rows: Sequence[Delivery], *, merge: bool = True) -> list[list[Delivery]]:
    """A channel's due rows as messages-to-be: each digest group is one, every other
    row is one (``merge`` False: every row is one, whatever its group)."""
    units: list[list[Delivery]] = []
    groups: dict[str, list[Delivery]] = {}
    for row in rows:
        if row.digest_group is None or not merge:
            units.append([row])
        elif row.digest_group in groups:
            groups[row.digest_group].append(row)
        else:
            groups[row.digest_group] = [row]
            units.append(groups[row.digest_group])
    return units


def _keyed_channel(config: AlertsConfig, channel: str, rows: Sequence[Delivery]) -> bool:
    """Whether ``channel`` keys its alerts per incident: by its type now (the notifier that
    will send), or by the type its rows were queued for (a channel retyped by a restart,
    its rows still waiting, is judged by both)."""
    section = config.channels.get(channel)
    types = {row.channel_type for row in rows} | ({section.type} if section else set())
    return any(keyed(t) for t in types)


def _plan(
    units: list[list[Delivery]], free: int, max_items: int, *, merge: bool = True
) -> tuple[list[list[Delivery]], list[Delivery]]:
    """(messages to send now, rows to defer). When the channel has room for every unit,
    each is one message; otherwise all its due rows are merged into as few digests as
    possible (``max_items`` rows each), so the slots left stay free for what comes next.
    ``merge`` False (a keyed channel: one event per incident page): the first ``free``
    units go, the others wait for the next free slot."""
    if free <= 0:
        return [], [row for unit in units for row in unit]
    if len(units) <= free:
        return units, []
    if not merge:
        return units[:free], [row for unit in units[free:] for row in unit]
    rows = [row for unit in units for row in unit]
    chunks = [rows[i : i + max_items] for i in range(0, len(rows), max_items)]
    return chunks[:free], [row for chunk in chunks[free:] for row in chunk]


async def _claim_rows(
    session: AsyncSession, rows: Sequence[Delivery], lease_until: datetime, channel_type: str
) -> list[_Row]:
    """Claim ``rows``, recording the type of channel they are sent to (``channel_type``:
    a channel retyped by a restart sends its waiting rows as its new type; what follows
    them up, ``enqueue_follow_ups`` and ``supersede_pages``, goes by the stored type)."""
    claimed: list[_Row] = []
    for row in rows:
        result = await session.execute(
            update(Delivery)
            .where(
                Delivery.id == row.id,
                Delivery.status == PENDING,
                Delivery.attempts == row.attempts,
            )
            .values(
                attempts=row.attempts + 1, next_attempt_at=lease_until, channel_type=channel_type
            )
            .execution_options(synchronize_session=False)
        )
        if rowcount(result) == 1:
            claimed.append(
                _Row(
                    id=row.id,
                    incident_id=row.incident_id,
                    tier=row.tier,
                    reason=row.reason,
                    payload=dict(row.payload),
                    attempts=row.attempts + 1,
                    trigger_received_at=row.trigger_received_at,
                    fallbacks=tuple(row.fallbacks or ()),
                    first_failed_at=row.first_failed_at,
                )
            )
    return claimed


async def _claim(
    sessions: async_sessionmaker[AsyncSession],
    config: AlertsConfig,
    limiter: RateLimiter,
    now: datetime,
    metrics: Metrics,
) -> tuple[list[_Claim], int, int]:
    """(messages claimed, rows looked at, rows moved to their next channel).

    One claim at a time per limiter (``RateLimiter.claiming``): between reading a channel's
    free slots and taking them this awaits the database, and a concurrent round of this
    alerter, given other rows by SKIP LOCKED, would plan against the same slots. The lock
    is taken before the transaction opens (a waiting round holds no connection) and covers
    only the claim's own statements, which wait on no lock held by an alerter coroutine
    that needs it; sending and recording are outside it."""
    lease_until = now + config.delivery.claim_timeout
    async with limiter.claiming, unit_of_work(sessions) as session:
        rows = (
            await session.scalars(
                select(Delivery)
                .where(Delivery.status == PENDING, Delivery.next_attempt_at <= now)
                .order_by(Delivery.next_attempt_at, Delivery.id)
                .limit(config.delivery.batch_size)
                .with_for_update(skip_locked=True)
            )
        ).all()
        by_channel: dict[str, list[Delivery]] = {}
        for row in rows:
            by_channel.setdefault(row.channel, []).append(row)
        claims: list[_Claim] = []
        moved = 0
        for channel, channel_rows in by_channel.items():
            bucket = limiter.channel(channel)
            section = config.channels.get(channel)  # None: removed (the send fails)
            channel_type = section.type if section else channel_rows[0].channel_type
            # never a digest where alerts are keyed per incident: it carries one key only
            merge = not _keyed_channel(config, channel, channel_rows)
            send, defer = _plan(
                _units(channel_rows, merge=merge),
                bucket.available(now),
                config.delivery.batch_size,
                merge=merge,
            )
            until = bucket.next_free(now)
            if defer and until - now > config.delivery.fallback_if_wait_over:
                waiting = await _leave_blocked(session, config, defer, until, now, metrics)
                moved += len(defer) - len(waiting)
                defer = waiting
            if defer:
                await session.execute(
                    update(Delivery)
                    .where(Delivery.id.in_([r.id for r in defer]), Delivery.status == PENDING)
                    .values(next_attempt_at=until)
                    .execution_options(synchronize_session=False)
                )
            for unit in send:
                claimed = await _claim_rows(session, unit, lease_until, channel_type)
                if not claimed:
                    continue
                claim = _message(channel, channel_type, unit, claimed)
                if claim.error is None:
                    bucket.take(now)
                    if len(claimed) > 1:
                        metrics.alert_digests.labels(claim.channel_type).inc()
                claims.append(claim)
    return claims, len(rows), moved


def _message(
    channel: str, channel_type: str, unit: Sequence[Delivery], claimed: Sequence[_Row]
) -> _Claim:
    """The message of claimed rows: one row's own payload, or their digest. A digest that
    cannot be built (a bug, a payload it cannot read) fails these rows alone, as a send
    would (recorded, counted and retried by ``_record``): it must not roll back the claims
    of every other channel, round after round."""
    rows = tuple(claimed)
    if len(rows) == 1:
        return _Claim(channel, channel_type, rows, rows[0].payload)
    ids = ",".join(str(r.id) for r in rows)
    why = Reason(
        code="digest_held" if len(rows) == len(unit) and unit[0].digest_group else "digest_rate"
    )
    try:
        digest = digest_message([r.payload for r in rows], why, "digest:" + ids)
        return _Claim(channel, channel_type, rows, digest.model_dump(mode="json"))
    except Exception as exc:  # the payloads are ours (no secrets): log the whole error
        log.exception("channel %s: could not build the digest of deliveries %s", channel, ids)
        error = DeliveryError(
            f"channel {channel}: could not build the digest message ({type(exc).__name__})",
            retryable=True,
        )
        return _Claim(channel, channel_type, rows, {}, error)


async def _send(
    claim: _Claim, notifiers: Mapping[str, Notifier], limit: float, ack_link: AckLink | None
) -> DeliveryError | None:
    if claim.error is not None:
        return claim.error
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
    if ack_link is not None and message.action == "trigger" and not message.digest:
        try:
            url = await ack_link(message.incident_id, claim.channel)
        except Exception as exc:
            # The link is a convenience (the ack hint stays): the alert goes without it.
            # Raised from here, it would leave every claim of this round unrecorded (their
            # messages, sent meanwhile, sent again after the claim timeout).
            log.error(
                "channel %s: no ack link for incident %d (%s); the alert goes without it",
                claim.channel,
                message.incident_id,
                type(exc).__name__,
            )
            url = None
        if url:
            message = message.model_copy(update={"ack_url": url})
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
            "channel %s: unexpected %s while sending delivery %s (will retry)",
            claim.channel,
            type(exc).__name__,
            ",".join(str(r.id) for r in claim.rows),
        )
        return DeliveryError(
            f"channel {claim.channel}: unexpected {type(exc).__name__}", retryable=True
        )
    return None


def next_delay(
    config: AlertsConfig, attempts: int, error: DeliveryError, rng: random.Random
) -> timedelta:
    """Backoff after ``attempts`` failed tries: exponential, +/- jitter, capped at
    ``max_backoff``; never sooner than the channel's Retry-After, even one over the cap
    (the notifiers bound it): the limiter's block that also honours it is in one process's
    memory, unknown to another alerter replica or to this one after a restart."""
    base = config.delivery.backoff(attempts)
    jitter = config.delivery.jitter
    delay = base * (1 + rng.uniform(-jitter, jitter)) if jitter else base
    delay = min(delay, config.delivery.max_backoff)
    if error.retry_after is not None:
        delay = max(delay, timedelta(seconds=error.retry_after))
    return delay


@dataclass
class _Recorder:
    session: AsyncSession
    config: AlertsConfig
    now: datetime
    metrics: Metrics
    rng: random.Random
    on_failed: OnFailed | None
    after_commit: list[Callable[[], None]]
    follow_ups: int = 0  # queued for alerts that reached their channel late: due now


async def _record(
    sessions: async_sessionmaker[AsyncSession],
    claims: Sequence[_Claim],
    outcomes: Sequence[DeliveryError | None],
    config: AlertsConfig,
    now: datetime,
    metrics: Metrics,
    rng: random.Random,
    limiter: RateLimiter,
    on_failed: OnFailed | None,
) -> int:
    """Record the outcomes; returns how many follow-ups that queued (due at once)."""
    after_commit: list[Callable[[], None]] = []
    async with unit_of_work(sessions) as session:
        # Lock the incidents (in one order: two recorders never deadlock) so that an ack or
        # resolve committing meanwhile is seen either here (a late alert gets its
        # follow-up, ``_follow_late_alert``) or by it (the alert is sent by then).
        await session.scalars(
            select(Incident)
            .where(Incident.id.in_(sorted({r.incident_id for c in claims for r in c.rows})))
            .order_by(Incident.id)
            .with_for_update()
        )
        rec = _Recorder(session, config, now, metrics, rng, on_failed, after_commit)
        for claim, error in zip(claims, outcomes, strict=True):
            if error is not None and error.retry_after is not None:
                bucket = limiter.channel(claim.channel)
                bucket.block(now + max(timedelta(seconds=error.retry_after), bucket.penalty()))
            for row in claim.rows:
                if error is None:
                    await _record_sent(rec, claim, row)
                else:
                    await _record_failure(rec, claim, row, error)
    for action in after_commit:
        action()
    return rec.follow_ups


async def _record_sent(rec: _Recorder, claim: _Claim, row: _Row) -> None:
    session, now = rec.session, rec.now
    first = False
    if row.reason in FIRST_ALERT_REASONS and row.trigger_received_at is not None:
        earlier = await session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(
                Delivery.incident_id == row.incident_id,
                Delivery.tier == row.tier,
                Delivery.reason.in_(FIRST_ALERT_REASONS),
                Delivery.status == SENT,
                Delivery.id != row.id,
            )
        )
        first = not earlier
    # No status condition: if an ack cancelled it while it was in flight, it was still sent.
    result = await session.execute(
        update(Delivery)
        .where(Delivery.id == row.id, Delivery.attempts == row.attempts)
        .values(status=SENT, sent_at=now, next_attempt_at=None, last_error=None)
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        log.warning("delivery %d was re-claimed before its outcome was recorded", row.id)
        return
    detail: dict[str, Any] = {
        "channel": claim.channel,
        "reason": row.reason,
        "attempts": row.attempts,
    }
    if len(claim.rows) > 1:
        detail["digest_of"] = len(claim.rows)
    add_event(session, row.incident_id, "alert_delivered", now, detail=detail)
    await _follow_late_alert(rec, claim, row)
    tier, metrics = str(row.tier), rec.metrics
    rec.after_commit.append(lambda: metrics.deliveries.labels(claim.channel_type, "sent").inc())
    if first and row.trigger_received_at is not None:
        latency = (now - row.trigger_received_at).total_seconds()
        # locked above (``_record``): read from the session, no query. A drill has its own
        # series, never the real one the latency rule and panels read
        incident = await session.get(Incident, row.incident_id)
        drill = drill_label(incident is not None and incident.drill)
        rec.after_commit.append(
            lambda: metrics.alert_latency.labels(tier, drill).observe(max(latency, 0.0))
        )


async def _followed_on_channel(
    session: AsyncSession, incident_id: int, channel: str, action: str, page: int
) -> bool:
    """Whether ``channel`` already has the ``action`` follow-up of this incident's page."""
    payloads = await session.scalars(
        select(Delivery.payload).where(
            Delivery.incident_id == incident_id,
            Delivery.channel == channel,
            Delivery.reason == follow_up_reason(action),
        )
    )
    return any(page_of(payload) == page for payload in payloads)


async def _follow_late_alert(rec: _Recorder, claim: _Claim, row: _Row) -> None:
    """An alert that reached its channel after the incident moved on (or, on a keyed
    channel, may have: its send failed, and the incident no longer needs it) gets the
    follow-up that the ack or resolve could not queue (it mirrors only what was sent, or
    ``possibly_sent``, by then):

    * on a keyed channel, an alert of a page an upgrade superseded: resolved;
    * an incident resolved or closed meanwhile: its resolve;
    * an alert asking someone to act (``is_page``) of an incident acknowledged meanwhile
      (held by quiet hours or a group wait, or in flight at the ack): its acknowledge.

    A held alert still goes after an ack (the team learns what happened overnight; the
    ack stops only the escalation), so it is followed rather than dropped; one in flight
    cannot be called back anyway."""
    if row.reason in FOLLOW_UP_REASONS:
        return
    session = rec.session
    incident = await session.get(Incident, row.incident_id)
    if incident is None:
        return
    why = None
    if keyed(claim.channel_type) and page_of(row.payload) < incident.page:
        action, actor = "resolve", SUPERSEDED
        why = Reason(code="superseded", tier=incident.tier)
    elif incident.status in FINISHED:
        action, actor = "resolve", incident.resolved_by or incident.closed_by or "someone"
    elif incident.status in (ACKNOWLEDGED, MITIGATING) and is_page(row.reason):
        action, actor = "acknowledge", incident.acked_by or "someone"
    else:
        return
    key = follow_up_key(str(row.payload["idempotency_key"]), action)
    if await _existing(session, [key]):
        return
    if not keyed(claim.channel_type) and await _followed_on_channel(
        session, incident.id, claim.channel, action, page_of(row.payload)
    ):
        return  # a chat or mailbox is told once per page ("resolved by ..."), not per alert
    _add_follow_up(
        session,
        incident,
        row,
        claim.channel,
        claim.channel_type,
        action,
        actor,
        rec.now,
        why=why,
    )
    rec.follow_ups += 1
    add_event(
        session,
        incident.id,
        "alert_queued",
        rec.now,
        detail={
            "reason": follow_up_reason(action),
            "channels": [claim.channel],
            "actor": actor,
            "after_late": row.reason,
        },
    )


async def _next_channel(
    session: AsyncSession, config: AlertsConfig, row: _Row
) -> tuple[str, list[str]] | None:
    """``row``'s next channel that has not got this alert already, and the fallbacks
    after it (None: no channel left)."""
    remaining = [fb for fb in row.fallbacks if fb in config.channels]
    while remaining:
        channel, remaining = remaining[0], remaining[1:]
        key = dedupe_key(row.incident_id, row.tier, channel, row.reason)
        if not await _existing(session, [key]):
            return channel, remaining
    return None


async def _requeue(
    session: AsyncSession, config: AlertsConfig, row: _Row, from_channel: str, now: datetime
) -> str | None:
    """Queue ``row``'s message on its next channel; returns that channel (None: none
    left that has not already got this alert)."""
    found = await _next_channel(session, config, row)
    incident = await session.get(Incident, row.incident_id) if found is not None else None
    if found is None or incident is None:
        return None
    channel, remaining = found
    key = dedupe_key(row.incident_id, row.tier, channel, row.reason)
    payload = dict(row.payload) | {"idempotency_key": key}
    session.add(
        _row(
            incident,
            channel,
            config.channels[channel].type,
            row.reason,
            payload,
            now=now,
            trigger_received_at=row.trigger_received_at,
            fallbacks=remaining,
        )
    )
    add_event(
        session,
        row.incident_id,
        "alert_fallback",
        now,
        detail={"from": from_channel, "to": channel, "reason": row.reason},
    )
    return channel


async def _fall_back(rec: _Recorder, claim: _Claim, row: _Row) -> str | None:
    channel = await _requeue(rec.session, rec.config, row, claim.channel, rec.now)
    if channel is not None:
        rec.after_commit.append(rec.metrics.channel_fallbacks.labels(claim.channel_type).inc)
    return channel


async def _leave_blocked(
    session: AsyncSession,
    config: AlertsConfig,
    rows: Sequence[Delivery],
    until: datetime,
    now: datetime,
    metrics: Metrics,
) -> list[Delivery]:
    """Rows of a channel that is blocked until ``until`` (a platform's penalty) move to
    their next channel at once; returns the rows that have none (they wait)."""
    waiting: list[Delivery] = []
    for row in rows:
        moved = None
        if row.fallbacks:
            moved = await _requeue(
                session,
                config,
                _Row(
                    id=row.id,
                    incident_id=row.incident_id,
                    tier=row.tier,
                    reason=row.reason,
                    payload=dict(row.payload),
                    attempts=row.attempts,
                    trigger_received_at=row.trigger_received_at,
                    fallbacks=tuple(row.fallbacks),
                    first_failed_at=row.first_failed_at,
                ),
                row.channel,
                now,
            )
        if moved is None:
            waiting.append(row)
            continue
        await session.execute(
            update(Delivery)
            .where(Delivery.id == row.id, Delivery.status == PENDING)
            .values(
                status=FAILED,
                next_attempt_at=None,
                last_error=f"channel {row.channel} blocked until {until.isoformat()}; "
                f"sent on {moved} instead",
            )
            .execution_options(synchronize_session=False)
        )
        on_commit(session, metrics.channel_fallbacks.labels(row.channel_type).inc)
    return waiting


@dataclass(frozen=True)
class _Verdict:
    """What the retry policy makes of one failed attempt."""

    final: bool  # no more attempts on this channel
    wants_fallback: bool
    cancelled: str | None  # why the incident no longer needs it
    gave_up: str | None  # why a retryable failure is given up
    deadline: datetime | None  # when it will be given up (None: not by age)


async def _judge(rec: _Recorder, row: _Row, error: DeliveryError) -> _Verdict:
    delivery, now = rec.config.delivery, rec.now
    found = (
        await rec.session.execute(
            select(Incident.status, Incident.tier).where(Incident.id == row.incident_id)
        )
    ).one_or_none()
    status, tier = (found[0], found[1]) if found is not None else (None, row.tier)
    moot = no_longer_needed(row.reason, status) if error.retryable else None
    if moot is not None:
        return _Verdict(True, False, moot, None, None)
    keep_trying = (
        delivery.keep_trying_tier is not None
        and status == OPEN
        and tier >= delivery.keep_trying_tier
    )
    first_failed = row.first_failed_at or now
    deadline = None
    if delivery.give_up_after is not None and not keep_trying:
        deadline = first_failed + delivery.give_up_after
    gave_up = None
    if error.retryable and deadline is not None and now >= deadline:
        gave_up = f"still failing {now - first_failed} after its first failure"
    elif (
        error.retryable
        and not keep_trying
        and delivery.max_attempts is not None
        and row.attempts >= delivery.max_attempts
    ):
        gave_up = f"{row.attempts} attempts (max_attempts)"
    exhausted = not error.retryable or gave_up is not None
    wait = timedelta(seconds=error.retry_after or 0)
    told_to_wait = wait > delivery.fallback_if_wait_over
    # a fallback only where a channel is left that has not got this alert already (one
    # of the alert's own targets, say): else a retryable failure goes on retrying here
    wants_fallback = (
        bool(row.fallbacks)
        and (exhausted or told_to_wait or row.attempts >= delivery.fallback_after)
        and await _next_channel(rec.session, rec.config, row) is not None
    )
    return _Verdict(exhausted or wants_fallback, wants_fallback, None, gave_up, deadline)


async def _record_failure(rec: _Recorder, claim: _Claim, row: _Row, error: DeliveryError) -> None:
    session, config, now = rec.session, rec.config, rec.now
    verdict = await _judge(rec, row, error)
    final = verdict.final
    message = str(error)[:1000]
    next_at = None
    if not final:
        next_at = now + next_delay(config, row.attempts, error, rec.rng)
        if verdict.deadline is not None and next_at > verdict.deadline:
            # one last attempt at the deadline (unless the channel asked to wait longer)
            floor = now + timedelta(seconds=error.retry_after or 0)
            next_at = max(verdict.deadline, floor)
    values: dict[str, Any] = {
        "last_error": message,
        "next_attempt_at": next_at,
        # the claim read it, and the update below only matches the row as claimed
        "first_failed_at": row.first_failed_at or now,
    }
    if verdict.cancelled is not None:
        values["status"] = CANCELLED
        values["last_error"] = f"cancelled: {verdict.cancelled} while the channel failed: {message}"
    elif final:
        values["status"] = FAILED
    result = await session.execute(
        update(Delivery)
        .where(
            Delivery.id == row.id,
            Delivery.attempts == row.attempts,
            Delivery.status == PENDING,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        log.info("delivery %d changed while it was being sent; outcome not recorded", row.id)
        return
    detail: dict[str, Any] = {
        "channel": claim.channel,
        "reason": row.reason,
        "attempts": row.attempts,
        "error": message,
        "will_retry": not final,
        "next_attempt_at": next_at.isoformat() if next_at else None,
    }
    if verdict.cancelled is not None:
        detail["cancelled"] = verdict.cancelled
    if verdict.gave_up is not None:
        detail["gave_up"] = verdict.gave_up
    add_event(session, row.incident_id, "alert_failed", now, detail=detail)
    if verdict.cancelled is not None and keyed(claim.channel_type):
        # it may have got there (a lost answer): the ack or resolve found it in flight
        await _follow_late_alert(rec, claim, row)
    fallback = await _fall_back(rec, claim, row) if verdict.wants_fallback else None
    if verdict.cancelled is not None:
        log.warning(
            "alert delivery %d to channel %s failed (attempt %d) and is not retried: %s: %s",
            row.id,
            claim.channel,
            row.attempts,
            verdict.cancelled,
            message,
        )
    elif fallback is not None:
        log.error(
            "alert delivery %d to channel %s failed %d time(s), now trying channel %s: %s",
            row.id,
            claim.channel,
            row.attempts,
            fallback,
            message,
        )
    elif final:
        why = f"gave up, {verdict.gave_up}" if verdict.gave_up else "a permanent error"
        log.error(
            "alert delivery %d to channel %s failed for good after %d attempt(s) (%s): %s",
            row.id,
            claim.channel,
            row.attempts,
            why,
            message,
        )
        if rec.on_failed is not None:
            reported = f"{message} ({verdict.gave_up}; gave up)" if verdict.gave_up else message
            await _report_failed(rec, rec.on_failed, claim.channel, reported)
    else:
        log.warning(
            "alert delivery %d to channel %s failed (attempt %d), retry at %s%s: %s",
            row.id,
            claim.channel,
            row.attempts,
            next_at.isoformat() if next_at else "-",
            f", gives up at {verdict.deadline.isoformat()}"
            if verdict.deadline is not None
            else " (until delivered or acknowledged)",
            message,
        )
    outcome = "cancelled" if verdict.cancelled else "failed" if final else "retry"
    metrics = rec.metrics
    rec.after_commit.append(lambda: metrics.deliveries.labels(claim.channel_type, outcome).inc())


async def _report_failed(rec: _Recorder, on_failed: OnFailed, channel: str, error: str) -> None:
    """Call the failure hook (the self-alert) in a savepoint of the round's record. If it
    raises, only its own writes are undone and it is logged: raised from here, it would roll
    back the outcome of every message of the round (those sent would be sent again after
    the claim timeout, as often as the hook raised), for a report about one of them; what
    it counted (``on_commit``) is dropped with its writes."""
    try:
        async with savepoint(rec.session):
            await on_failed(rec.session, channel, error, rec.now)
    except Exception:
        log.exception(
            "channel %s failed for good, and reporting it (the self-alert) failed: the "
            "delivery stays recorded as failed",
            channel,
        )


async def deliver_due(
    sessions: async_sessionmaker[AsyncSession],
    notifiers: Mapping[str, Notifier],
    config: AlertsConfig,
    clock: Clock,
    metrics: Metrics,
    *,
    rng: random.Random | None = None,
    limiter: RateLimiter | None = None,
    ack_link: AckLink | None = None,
    on_failed: OnFailed | None = None,
) -> int:
    """Send every delivery that is due; returns how many messages were attempted."""
    rng = rng or random.Random()
    limiter = limiter or RateLimiter(notifiers)
    send_limit = config.delivery.claim_timeout.total_seconds() * 0.8
    attempted = 0
    for _ in range(MAX_ROUNDS):
        claims, looked_at, moved = await _claim(sessions, config, limiter, clock.now(), metrics)
        followed = 0
        if claims:
            outcomes = await asyncio.gather(
                *(_send(c, notifiers, send_limit, ack_link) for c in claims)
            )
            followed = await _record(
                sessions, claims, outcomes, config, clock.now(), metrics, rng, limiter, on_failed
            )
            attempted += len(claims)
        if moved or followed:
            continue  # what moved to another channel, or follows what was sent, is due now
        if not claims or looked_at < config.delivery.batch_size:
            break
    return attempted


async def seed_limiter(session: AsyncSession, limiter: RateLimiter, now: datetime) -> int:
    """Count what each rate-limited channel sent within its window before a restart.
    Every sent row counts as a message: a digest's rows are counted apart, so the count
    is at most too high (after a restart in a burst, more alerts wait or go as digests
    for up to one window). Counting rows sent at the same instant once was too low: every
    message of one delivery round is recorded at the round's time, so a round of 20
    DingTalk alerts counted 1, and the robot, over its 20 a minute, is blocked for 10
    minutes."""
    seeded = 0
    for name in limiter.names():
        bucket = limiter.channel(name)
        if not bucket.limits:
            continue
        times = await session.scalars(
            select(Delivery.sent_at).where(
                Delivery.channel == name,
                Delivery.status == SENT,
                Delivery.sent_at >= now - bucket.window,
            )
        )
        sent = [t for t in times if t is not None]
        bucket.seed(sent)
        seeded += len(sent)
    return seeded


@dataclass(frozen=True)
class Retrying:
    """A channel's deliveries that failed and are still being retried."""

    count: int
    oldest_failed_at: datetime


async def retrying(session: AsyncSession) -> dict[str, Retrying]:
    """Per channel: pending deliveries that have failed at least once, and the first
    failure of the oldest of them."""
    rows = await session.execute(
        select(Delivery.channel, func.count(), func.min(Delivery.first_failed_at))
        .where(Delivery.status == PENDING, Delivery.first_failed_at.is_not(None))
        .group_by(Delivery.channel)
    )
    return {
        channel: Retrying(int(count), oldest)
        for channel, count, oldest in rows.all()
        if oldest is not None
    }


async def pending_count(session: AsyncSession) -> int:
    count = await session.scalar(
        select(func.count()).select_from(Delivery).where(Delivery.status == PENDING)
    )
    return int(count or 0)
