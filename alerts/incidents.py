"""Incidents: opened and upgraded by Signals; listed, acknowledged and resolved by people.

The stage calls ``apply_signal``; the API calls ``list_incidents``, ``get_incident``,
``mutes`` (why an incident's alerts are held), ``acknowledge`` and ``resolve``. Nothing
here commits: the caller's unit of work does.

Lifecycle: ``open`` -> ``acknowledged`` -> ``resolved`` (``open`` -> ``resolved`` too);
``mitigating`` and ``closed`` (and merging) are ``alerts.workflow.service``'s.
A signal with a higher tier upgrades the incident: new alerts go to the new tier's teams
and the ack clock starts again; if it was acknowledged or resolved, it is open again
(the new teams have not acknowledged anything). A signal with the same or a lower tier
only adds to the timeline and the evidence. A signal whose id is already in the timeline
does nothing, so a redelivered signal never alerts twice.

Alerting an incident (``_alert``): the routing tree picks the teams; an active silence or
an open higher-tier incident of the same story/watch (inhibition) mutes it; quiet hours
hold tier-1 alerts for a morning digest; the tier's escalation policy is snapshotted and
its SLA clock started. Once a silence has ended, the tick's ``release_silence`` alerts the
incidents it muted that are still open and unacknowledged, as if newly raised at their
current tier (Alertmanager notifies again when a silence expires); once an inhibiting
incident has ended (resolved, closed, merged), ``release_inhibition`` does the same for the
incidents it inhibited. Playbook tasks created while an incident was muted get their due
time and reminders when it is alerted (``tasks.plan_muted``). An ack or resolve is
mirrored to every channel that got an alert (and to one that gets it later:
``alerts.outbox``). An upgrade starts a new page (``Incident.page``, ``_upgrade``) when
the incident was acknowledged or resolved, or when a channel that keys its alerts per
page (PagerDuty) holds an alert of its current page: there the upgrade's alert gets a
new key, so it is a new alert at the new tier's severity, and the old one is resolved.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Iterable
from datetime import datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from prometheus_client import Counter
from sqlalchemy import func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import load_only, selectinload

from alerts import escalation, inhibition, silences, sla
from alerts.channels import KEYED_CHANNEL_TYPES
from alerts.config import AlertsConfig
from alerts.messages import heat_of, incident_title, snippets_from_rows, snippets_from_signal
from alerts.models import (
    ACKNOWLEDGED,
    CANCELLED,
    CLOSED,
    FINISHED,
    FOLLOW_UP_REASONS,
    INCIDENT_STATUSES,
    MITIGATING,
    OPEN,
    PENDING,
    RESOLVED,
    SENT,
    Delivery,
    Incident,
    IncidentEvent,
    IncidentEvidence,
    Silence,
    StoryAlias,
)
from alerts.notifiers.base import EvidenceSnippet
from alerts.notifiers.reasons import Reason
from alerts.outbox import (
    ALERT,
    ESCALATION,
    FIRST_ALERT_REASONS,
    REALERT,
    UPGRADE,
    enqueue,
    enqueue_follow_ups,
    is_alert,
    page_of,
    possibly_sent,
    realert_reason,
    rowcount,
    supersede_pages,
)
from alerts.routing import AlertAttrs, Route, fit_key, match_routes
from alerts.targets import team_targets
from alerts.timeline import add_event
from alerts.workflow import tasks
from alerts.workflow.models import HeatSnapshot, TierChange
from core.clock import Clock
from core.db import database_unavailable, on_commit, savepoint
from core.events import MAX_COUNT, Evidence, Signal, storable
from core.metrics import Metrics, drill_label

DETECTOR = "detector"

log = logging.getLogger(__name__)


class IncidentNotFound(LookupError):
    def __init__(self, incident_id: int) -> None:
        super().__init__(f"incident {incident_id} does not exist")
        self.incident_id = incident_id


class InvalidTransition(ValueError):
    """The incident's status does not allow the change (the API answers 409)."""


class InvalidSignal(ValueError):
    """A signal that can never be stored (the stage dead-letters it)."""


MAX_ID = 255
MAX_MENTION_ID = 512
"""``incident_evidence.mention_id``: what ``Mention.id`` allows."""
MAX_AUTHOR = 255
"""``incident_evidence.author``."""


def check_signal(signal: Signal) -> None:
    """Raise ``InvalidSignal`` when the signal's ids do not fit the tables: empty, too
    long, or holding what PostgreSQL cannot store (a NUL, a lone surrogate)."""
    ids = [("id", signal.id), ("story_id", signal.story_id), ("watch.id", signal.watch.id)]
    if signal.merged_into is not None:
        ids.append(("merged_into", signal.merged_into))
    for what, value in ids:
        if not value or len(value) > MAX_ID:
            raise InvalidSignal(
                f"signal {signal.id[:80]!r}: {what} must be 1-{MAX_ID} characters, got {len(value)}"
            )
        if storable(value) != value:
            raise InvalidSignal(
                f"signal {signal.id[:80]!r}: {what} holds a NUL or a lone surrogate"
            )


def fit_signal(signal: Signal) -> Signal:
    """``signal`` with what the alerter stores of it made to fit the tables (after
    ``check_signal``). The contract does not bound a Signal's texts as it does a
    Mention's, and another producer (or a newer detector) may send more: an evidence
    mention id over ``MAX_MENTION_ID`` characters becomes its head and a hash of the
    whole (still one id per mention, and its source readable), its author is cut to
    ``MAX_AUTHOR`` characters, its followers to ``MAX_COUNT``, and NULs (and lone
    surrogates) in its texts, the explanation and the brand become U+FFFD. Refusing the
    signal instead would lose its alert for a detail of one of its mentions; storing it
    as sent fails the insert on PostgreSQL, and the bus retries the signal for ever."""
    evidence = tuple(_fit_evidence(ev) for ev in signal.evidence)
    explanation = storable(signal.explanation)
    brand = storable(signal.watch.brand[:MAX_ID])
    changed = evidence != signal.evidence or explanation != signal.explanation
    if not changed and brand == signal.watch.brand:
        return signal
    if changed:
        log.warning("signal %s: evidence or explanation changed to fit the tables", signal.id)
    return signal.model_copy(
        update={
            "evidence": evidence,
            "explanation": explanation,
            "watch": signal.watch.model_copy(update={"brand": brand}),
        }
    )


def _fit_evidence(ev: Evidence) -> Evidence:
    mention_id = fit_key(storable(ev.id), MAX_MENTION_ID)
    url = None if ev.url is None else storable(ev.url)
    text = storable(ev.text)
    author = None if ev.author is None else storable(ev.author[:MAX_AUTHOR])
    followers = None if ev.followers is None else min(ev.followers, MAX_COUNT)
    fitted = (mention_id, url, text, author, followers)
    if fitted == (ev.id, ev.url, ev.text, ev.author, ev.followers):
        return ev
    return ev.model_copy(
        update=dict(zip(("id", "url", "text", "author", "followers"), fitted, strict=True))
    )


def attrs_of(incident: Incident, signal: Signal, config: AlertsConfig) -> AlertAttrs:
    return _attrs(incident, (ev.id for ev in signal.evidence), config)


def _attrs(incident: Incident, mention_ids: Iterable[str], config: AlertsConfig) -> AlertAttrs:
    return silences.incident_attrs(incident, mention_ids, config)


def quiet_until(config: AlertsConfig, tier: int, now: datetime) -> datetime | None:
    """End of the quiet hours ``now`` falls in, for ``tier``; None when not held."""
    quiet = config.quiet_hours
    if quiet is None or tier not in quiet.tiers or tier >= 3:
        return None
    local = now.astimezone(ZoneInfo(quiet.timezone))
    t = local.time()
    if quiet.start < quiet.end:
        inside = quiet.start <= t < quiet.end
    else:
        inside = t >= quiet.start or t < quiet.end
    if not inside:
        return None
    end = local.replace(hour=quiet.end.hour, minute=quiet.end.minute, second=0, microsecond=0)
    if end <= local:
        end += timedelta(days=1)
    return end.astimezone(now.tzinfo)


async def signal_seen(session: AsyncSession, signal_id: str) -> bool:
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
                author=ev.author,
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
    } | ({} if signal.forecast_minutes is None else {"forecast_minutes": signal.forecast_minutes})


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
    tier 0 for a story without an incident). A forecast report (``forecast_minutes``)
    never opens or upgrades an incident and notifies nobody: it is a note on the
    timeline of the story's incident, if it has one. Raises ``InvalidSignal`` for a
    signal whose ids do not fit the tables.
    """
    check_signal(signal)
    signal = fit_signal(signal)
    if await signal_seen(session, signal.id):
        return None
    now = clock.now()
    story_id = signal.story_id
    incident = await survivor_of(session, await story_incident(session, signal, story_id))
    late = False
    if incident is None:
        story_id = await story_now(session, signal)
        late = story_id != signal.story_id  # of a story merged into another, sent before
        if late:
            incident = await survivor_of(session, await story_incident(session, signal, story_id))
    if incident is not None and late:  # stale: that incident has the merged story's heat
        _note_signal(session, incident, signal, now, late=True, story_id=signal.story_id)
        return incident
    if incident is None:
        if signal.tier < 1 or signal.forecast_minutes is not None:
            return None
        incident = await _open(session, signal, config, now, metrics, story_id)
        if metrics is not None:
            opened = metrics.incidents_opened.labels(str(signal.tier), drill_label(incident.drill))
            on_commit(session, opened.inc)
        return incident
    _snapshot(session, incident.id, signal)
    if signal.forecast_minutes is not None:
        _note_signal(session, incident, signal, now)
        await _add_evidence(session, incident.id, signal)
        return incident
    if signal.tier > incident.tier:
        await _upgrade(session, incident, signal, config, now, metrics)
        return incident
    incident.spread = signal.spread
    incident.updated_at = now
    _note_signal(session, incident, signal, now)
    await _add_evidence(session, incident.id, signal)
    return incident


def _note_signal(
    session: AsyncSession, incident: Incident, signal: Signal, now: datetime, **extra: object
) -> None:
    """A signal that changes no tier, on the timeline (marked applied by its id)."""
    detail = _signal_detail(signal) | extra
    add_event(
        session, incident.id, "signal", now, actor=DETECTOR, detail=detail, signal_id=signal.id
    )


MAX_ALIAS_HOPS = 16


async def story_now(session: AsyncSession, signal: Signal) -> str:
    """The story the signal's story is part of now, for a Signal the detector sent before
    it merged that story into another (``StoryAlias``, followed through chains); the
    signal's own story otherwise (no alias, or a Signal of a story whose id came back
    after the merge: a new life of it, not a late message)."""
    story_id = signal.story_id
    for _ in range(MAX_ALIAS_HOPS):
        alias = await session.get(StoryAlias, (signal.watch.id, story_id))
        if alias is None or alias.into_story_id == story_id or not _sent_before(signal, alias):
            break
        story_id = alias.into_story_id
    return story_id


def signal_seq(signal_id: str) -> tuple[str, int] | None:
    """(generation, n) of a detector Signal id ``<story>#[<generation>.]<n>``."""
    tail = signal_id.rpartition("#")[2]
    generation, _, n = tail.rpartition(".")
    return (generation, int(n)) if n.isascii() and n.isdigit() else None


def _sent_before(signal: Signal, alias: StoryAlias) -> bool:
    """Whether the detector sent ``signal`` before the merge ``alias`` records: its number
    is lower (same generation), else its event time is not later."""
    mine, merge = signal_seq(signal.id), signal_seq(alias.signal_id)
    if mine is not None and merge is not None and mine[0] == merge[0]:
        return mine[1] < merge[1]
    return signal.at <= alias.at


async def story_incident(session: AsyncSession, signal: Signal, story_id: str) -> Incident | None:
    """The incident opened for ``story_id`` of the signal's watch (locked), if any."""
    return await session.scalar(
        select(Incident)
        .where(Incident.watch_id == signal.watch.id, Incident.story_id == story_id)
        .with_for_update()
    )


async def survivor_of(session: AsyncSession, incident: Incident | None) -> Incident | None:
    """The incident a merged one points to (its story's signals go there)."""
    seen: set[int] = set()
    while incident is not None and incident.merged_into_id is not None:
        if incident.id in seen:  # a cycle cannot be made through the API; do not loop
            break
        seen.add(incident.id)
        incident = await session.scalar(
            select(Incident).where(Incident.id == incident.merged_into_id).with_for_update()
        )
    return incident


def _snapshot(session: AsyncSession, incident_id: int, signal: Signal) -> None:
    """Keep the signal's heat features: a point of the incident's heat curve."""
    session.add(
        HeatSnapshot(
            incident_id=incident_id,
            story_id=signal.story_id,
            signal_id=signal.id,
            at=signal.at,
            tier=signal.tier,
            heat=signal.heat.model_dump(mode="json"),
        )
    )


def _tier_change(
    session: AsyncSession, incident_id: int, from_tier: int, signal: Signal, now: datetime
) -> None:
    session.add(
        TierChange(
            incident_id=incident_id,
            at=now,
            from_tier=from_tier,
            tier=signal.tier,
            signal_id=signal.id,
            actor=DETECTOR,
        )
    )


async def _open(
    session: AsyncSession,
    signal: Signal,
    config: AlertsConfig,
    now: datetime,
    metrics: Metrics | None,
    story_id: str,
) -> Incident:
    incident = Incident(
        watch_id=signal.watch.id,
        story_id=story_id,
        brand=signal.watch.brand[:255],
        tier=signal.tier,
        spread=signal.spread,
        status=OPEN,
        title=incident_title(signal.watch.brand[:255], signal.watch.id, signal.tier),
        explanation=signal.explanation,
        heat=heat_of(signal),
        opened_at=now,
        updated_at=now,
        alerted_at=now,
        escalation_level=0,
        escalation_token=str(uuid.uuid4()),
        page=0,
        first_trigger_received_at=signal.trigger_received_at,
        drill=signal.drill,
    )
    session.add(incident)
    await session.flush()
    _snapshot(session, incident.id, signal)
    _tier_change(session, incident.id, 0, signal, now)
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
    await _alert(
        session,
        incident,
        signal,
        config,
        now,
        reason=ALERT,
        why=Reason(code="new"),
        metrics=metrics,
    )
    return incident


async def _upgrade(
    session: AsyncSession,
    incident: Incident,
    signal: Signal,
    config: AlertsConfig,
    now: datetime,
    metrics: Metrics | None,
) -> None:
    """Raise the tier and alert the new tier's teams, on a new page (``Incident.page``)
    when the current one is held on a keyed channel (``_keyed_page_held``) or the
    incident was no longer open (acknowledged, mitigating, resolved, closed). A new page's
    alerts get a new ``dedup_key`` and the older page's alerts are resolved on keyed
    channels (``outbox.supersede_pages``): PagerDuty folds a trigger whose key names an
    open alert, triggered or acknowledged, into that alert, which keeps the severity (and
    its incident the urgency) it was opened with and pages nobody anew, so under the old
    key a tier-1 alert (``warning``) upgraded to tier 3 would never page as ``critical``.

    An open incident whose page no keyed channel holds (chats and mail only, or nothing
    sent to PagerDuty yet) stays on it: the upgrade's alert would be a new alert there
    anyway, and a new page would only change what chats hear of alerts that reach them
    late (``outbox._follow_late_alert`` follows those once per channel and page)."""
    previous_tier, previous_status = incident.tier, incident.status
    new_page = previous_status != OPEN or await _keyed_page_held(session, incident)
    incident.tier = signal.tier
    incident.spread = signal.spread
    incident.explanation = signal.explanation
    incident.heat = heat_of(signal)
    incident.title = incident_title(incident.brand, incident.watch_id, signal.tier)
    incident.drill = incident.drill and signal.drill
    incident.updated_at = now
    incident.alerted_at = now
    incident.status = OPEN
    if previous_status in FINISHED:  # live again: its end will release what it inhibits
        incident.inhibition_released_at = None
    incident.acked_at = incident.acked_by = None
    incident.resolved_at = incident.resolved_by = None
    incident.closed_at = incident.closed_by = None
    if new_page:
        incident.page += 1
    _tier_change(session, incident.id, previous_tier, signal, now)
    detail = _signal_detail(signal) | {"from_tier": previous_tier, "was": previous_status}
    if new_page:
        detail["page"] = incident.page
    add_event(
        session, incident.id, "upgraded", now, actor=DETECTOR, detail=detail, signal_id=signal.id
    )
    await _add_evidence(session, incident.id, signal)
    if new_page:
        await supersede_pages(session, incident, now)
    await _alert(
        session,
        incident,
        signal,
        config,
        now,
        reason=UPGRADE,
        why=Reason(code="upgrade", tier=signal.tier, from_tier=previous_tier),
        metrics=metrics,
    )


async def _keyed_page_held(session: AsyncSession, incident: Incident) -> bool:
    """Whether a keyed channel (``alerts.channels.KEYED_CHANNEL_TYPES``: PagerDuty) holds
    an alert of the incident's current page, or may, or is about to: one sent, pending
    (held, waiting for a retry, in flight) or ``outbox.possibly_sent``. A trigger of the
    same page would be folded into it there (``_upgrade``)."""
    pages = await session.scalars(
        select(Delivery.payload["page"]).where(  # (the page alone, not the payload)
            Delivery.incident_id == incident.id,
            Delivery.channel_type.in_(KEYED_CHANNEL_TYPES),
            Delivery.reason.not_in(FOLLOW_UP_REASONS),
            or_(Delivery.status.in_((SENT, PENDING)), possibly_sent()),
        )
    )
    return any(page_of({"page": page}) == incident.page for page in pages)


async def _inhibitor(session: AsyncSession, incident: Incident, config: AlertsConfig) -> int | None:
    """An open incident of the inhibiting tier for the same story or watch, if any."""
    rule = config.inhibit
    if not rule.enabled or incident.tier >= rule.source_tier:
        return None
    found = await session.scalar(
        select(Incident.id)
        .where(inhibition.inhibitor_of(rule, Incident, incident))
        .order_by(Incident.id)
        .limit(1)
    )
    return int(found) if found is not None else None


async def _inhibit_lower(
    session: AsyncSession, incident: Incident, config: AlertsConfig, now: datetime
) -> None:
    """A new top-tier incident mutes the lower-tier ones of its story/watch (a drill only
    drills: ``inhibition.inhibitor_of``), also while it is silenced itself: it inhibits
    all the same, as in Alertmanager, and as ``inhibition.inhibitor_of`` counts it."""
    rule = config.inhibit
    if not rule.enabled or incident.tier < rule.source_tier:
        return
    same = []
    if "story" in rule.equal:
        same.append(Incident.story_id == incident.story_id)
    if "watch" in rule.equal:
        same.append(Incident.watch_id == incident.watch_id)
    lower = (
        await session.scalars(
            select(Incident).where(
                Incident.id != incident.id,
                Incident.tier < rule.source_tier,
                Incident.status.not_in(FINISHED),
                or_(*same),
                *([Incident.drill.is_(True)] if incident.drill else []),
            )
        )
    ).all()
    for other in lower:
        last = await last_mute(session, other.id)
        if (
            last is not None
            and last.kind == "inhibited"
            and last.detail.get("by_incident") == incident.id
        ):
            continue  # muted by it already (it was silenced when raised, and alerted since)
        escalation.disarm(other)
        cancelled = await _cancel_pending(
            session, other.id, f"inhibited by incident {incident.id}", escalations_only=False
        )
        add_event(
            session,
            other.id,
            "inhibited",
            now,
            detail={"by_incident": incident.id, "cancelled_deliveries": cancelled},
        )


async def _grouping(
    session: AsyncSession, incident: Incident, route: Route, attrs: AlertAttrs, now: datetime
) -> tuple[datetime | None, str | None]:
    """(not before, digest group) of a routed alert. The first alert of a group waits
    ``group_wait`` and the others joining meanwhile go with it; while the group was
    notified less than ``group_interval`` ago, below tier 3 they wait for the next
    interval. Rows of a group that fall due together on one channel are one message."""
    if not route.group_by:
        return None, None
    key = route.group_key(attrs)
    waiting = await session.scalar(
        select(func.min(Delivery.next_attempt_at)).where(
            Delivery.digest_group == key,
            Delivery.status == PENDING,
            Delivery.attempts == 0,
            Delivery.next_attempt_at > now,
        )
    )
    if waiting is not None and (incident.tier < 3 or waiting <= now + route.group_wait):
        return waiting, key  # the group's notification is pending: join it (tier 3 only
        # one due within its own group_wait, never one held for the group interval)
    not_before = now + route.group_wait
    if incident.tier < 3 and route.group_interval > timedelta(0):
        last = await session.scalar(
            select(func.max(Delivery.sent_at)).where(Delivery.digest_group == key)
        )
        if last is not None and last + route.group_interval > not_before:
            not_before = last + route.group_interval
    return not_before, key


async def _alert(
    session: AsyncSession,
    incident: Incident,
    signal: Signal,
    config: AlertsConfig,
    now: datetime,
    *,
    reason: str,
    why: Reason,
    metrics: Metrics | None,
) -> None:
    await _route(
        session,
        incident,
        attrs_of(incident, signal, config),
        config,
        now,
        reason=reason,
        why=why,
        evidence=snippets_from_signal(signal.evidence, config.evidence_in_alert),
        trigger_received_at=signal.trigger_received_at,
        metrics=metrics,
    )


async def _route(
    session: AsyncSession,
    incident: Incident,
    attrs: AlertAttrs,
    config: AlertsConfig,
    now: datetime,
    *,
    reason: str,
    why: Reason,
    evidence: list[EvidenceSnippet],
    trigger_received_at: datetime | None,
    metrics: Metrics | None,
    again: bool = False,
) -> bool:
    """Alert the incident (routes, quiet hours, grouping, escalation, SLA), or record it
    as muted by an inhibition or an active silence; True when it was alerted. ``again``:
    alerted again at the same tier (a release): an SLA already met stays met
    (``sla.restart``)."""
    routes = match_routes(config, attrs)
    teams = list(dict.fromkeys(team for route in routes for team in route.teams))
    muted_by: tuple[str, dict[str, Any]] | None = None
    if (inhibitor := await _inhibitor(session, incident, config)) is not None:
        muted_by = ("inhibited", {"by_incident": inhibitor})
    elif (silence := await silences.matching(session, attrs, now)) is not None:
        muted_by = (
            "silenced",
            {"silence": silence.id, "author": silence.author, "reason": silence.reason},
        )
    if muted_by is not None:
        kind, detail = muted_by
        escalation.disarm(incident)
        sla.stop(incident)
        add_event(session, incident.id, kind, now, detail=detail | {"teams": teams})
        if metrics is not None:
            on_commit(session, metrics.alerts_suppressed.labels(kind).inc)
        await tasks.create(session, incident, config, now, now, remind=False)
        if kind == "silenced":  # a silenced top-tier incident still inhibits (Alertmanager's
            await _inhibit_lower(session, incident, config, now)  # rule; inhibitor_of agrees)
        return False
    held = quiet_until(config, incident.tier, now)
    start = held or now
    incident.alerted_at = start
    reminders = [r.repeat_interval for r in routes if r.repeat_interval > timedelta(0)]
    run = await escalation.next_run(session, incident)
    escalation.arm(incident, config, teams, start, min(reminders, default=timedelta(0)), run=run)
    if again:
        sla.restart(incident, config, start)
    else:
        sla.start(incident, config, start)
    await tasks.create(session, incident, config, start, now)
    await tasks.plan_muted(session, incident, config, start, now)
    if held is not None:
        add_event(session, incident.id, "held", now, detail={"until": held.isoformat()})
    if incident.escalation_policy is not None:
        add_event(
            session, incident.id, "escalation_started", now, detail=incident.escalation_policy
        )
    for route in routes:
        not_before: datetime | None
        group: str | None
        if held is not None:
            not_before, group = held, quiet_group(held.isoformat())
        else:
            not_before, group = await _grouping(session, incident, route, attrs, now)
        await enqueue(
            session,
            incident,
            team_targets(config, route.teams),
            reason=reason,
            why=why,
            evidence=evidence,
            config=config,
            now=now,
            trigger_received_at=trigger_received_at,
            not_before=not_before,
            digest_group=group,
        )
    await _inhibit_lower(session, incident, config, now)
    return True


MUTE_KINDS = ("silenced", "inhibited", "upgraded", "unsilenced", "uninhibited")
"""Timeline events that change whether an incident's current alert was muted: the last
one of them (``last_mute``) says whether a silence or an inhibition still holds it back
(and which)."""


def _own(detail: dict[str, Any] | None) -> bool:
    """Whether an event is the incident's own (a merge moves the merged incident's timeline
    to the survivor, marked ``from_incident``: its mutes are not the survivor's)."""
    return "from_incident" not in (detail or {})


async def last_mute(session: AsyncSession, incident_id: int) -> IncidentEvent | None:
    """The incident's own last event of ``MUTE_KINDS`` (None: it was never muted)."""
    events = await session.scalars(
        select(IncidentEvent)
        .where(IncidentEvent.incident_id == incident_id, IncidentEvent.kind.in_(MUTE_KINDS))
        .order_by(IncidentEvent.id.desc())
    )
    return next((event for event in events if _own(event.detail)), None)


class Mute(NamedTuple):
    """What holds an incident's alerts back now (``mutes``): an inhibition, a silence or
    quiet hours, since when (its ``inhibited``/``silenced``/``held`` timeline event), and
    what muted it as it stands now (``inhibitor``: (id, tier, status) of the inhibiting
    incident; ``silence``: the silence; None when that row is gone; ``until``: the end of
    the quiet hours, ``teams`` and ``channels``: those its held alerts wait for). ``ended``:
    what muted it has ended (the inhibiting incident resolved, closed or merged; the
    silence over or expired; the quiet hours over) and the alerter's next tick alerts the
    incident (``release_inhibition``, ``release_silence``; after quiet hours the outbox
    sends the held alerts)."""

    by: str  # "inhibition", "silence" or "quiet_hours"
    since: datetime
    ended: bool
    inhibitor_id: int | None = None
    inhibitor: tuple[int, int, str] | None = None
    silence_id: int | None = None
    silence: Silence | None = None
    until: datetime | None = None
    teams: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()


HOLD_KINDS = (*MUTE_KINDS, "held")
"""``MUTE_KINDS`` and ``held`` (``_route``: the alert waits for the end of quiet hours):
the last of them says what holds the incident's current alert back (``mutes``)."""


def quiet_group(until: str) -> str:
    """The digest group of the alerts quiet hours hold until ``until`` (ISO 8601, as the
    ``held`` event records it): they go out together then, and ``mutes`` finds them by it."""
    return f"quiet:{until}"


async def mutes(
    session: AsyncSession, incidents: Collection[Incident], now: datetime
) -> dict[int, Mute]:
    """Why the alerts of each of ``incidents`` are held, for those whose are: a live
    incident whose own last ``HOLD_KINDS`` event is ``inhibited`` or ``silenced``, and,
    once what muted it has ended, only while the release will still alert it (open and
    unacknowledged: an acknowledged one is not alerted again, nothing is held for it any
    more); or ``held`` (quiet hours), while alerts it held are still waiting, untried
    (an ack does not stop them: ``alerts.outbox``). Four statements at most whatever the
    number of incidents (their hold events, the inhibiting incidents, the silences, the
    deliveries quiet hours hold): for a page of the list."""
    live = {i.id: i for i in incidents if i.status not in FINISHED}
    if not live:
        return {}
    rows = await session.execute(
        select(
            IncidentEvent.incident_id, IncidentEvent.kind, IncidentEvent.at, IncidentEvent.detail
        )
        .where(IncidentEvent.incident_id.in_(sorted(live)), IncidentEvent.kind.in_(HOLD_KINDS))
        .order_by(IncidentEvent.incident_id, IncidentEvent.id.desc())
    )
    last: dict[int, tuple[str, datetime, dict[str, Any]]] = {}
    for incident_id, kind, at, detail in rows:
        if incident_id not in last and _own(detail):
            last[incident_id] = (kind, at, detail or {})
    by_incident = {i: _id_in(d, "by_incident") for i, (k, _, d) in last.items() if k == "inhibited"}
    by_silence = {i: _id_in(d, "silence") for i, (k, _, d) in last.items() if k == "silenced"}
    wanted = {v for v in by_incident.values() if v is not None}
    inhibitors: dict[int, tuple[int, int, str]] = {}
    if wanted:
        found = await session.execute(
            select(Incident.id, Incident.tier, Incident.status).where(Incident.id.in_(wanted))
        )
        inhibitors = {int(i): (int(i), int(t), str(s)) for i, t, s in found}
    wanted = {v for v in by_silence.values() if v is not None}
    found_silences: dict[int, Silence] = {}
    if wanted:
        found_silences = {
            s.id: s for s in await session.scalars(select(Silence).where(Silence.id.in_(wanted)))
        }
    out = await _quiet_holds(session, last, now)
    for incident_id, (kind, at, _) in last.items():
        if kind == "inhibited":
            other_id = by_incident[incident_id]
            other = inhibitors.get(other_id) if other_id is not None else None
            ended = other is None or other[2] in FINISHED
            mute = Mute("inhibition", at, ended, inhibitor_id=other_id, inhibitor=other)
        elif kind == "silenced":
            silence_id = by_silence[incident_id]
            silence = found_silences.get(silence_id) if silence_id is not None else None
            ended = silence is None or silence.ends_at <= now
            mute = Mute("silence", at, ended, silence_id=silence_id, silence=silence)
        else:
            continue  # alerted since (unsilenced, uninhibited, upgraded)
        incident = live[incident_id]
        if ended and (incident.status != OPEN or incident.acked_at is not None):
            continue  # the release does not alert it: nothing is held for it any more
        out[incident_id] = mute
    return out


async def _quiet_holds(
    session: AsyncSession, last: dict[int, tuple[str, datetime, dict[str, Any]]], now: datetime
) -> dict[int, Mute]:
    """The incidents of ``last`` (each one's last ``HOLD_KINDS`` event) whose alert quiet
    hours hold (``held``), while some of its held deliveries (``_route``'s digest group
    ``quiet:<until>``) are still pending and untried: the teams and channels they are for.
    One statement for them all (none when no incident is held)."""
    groups: dict[int, tuple[str, datetime, datetime]] = {}
    for incident_id, (kind, at, detail) in last.items():
        if kind != "held" or not isinstance(raw := detail.get("until"), str):
            continue
        try:
            until = datetime.fromisoformat(raw)
        except ValueError:
            log.warning("incident %d: its held event has a bad until %r", incident_id, raw)
            continue
        groups[incident_id] = (quiet_group(raw), at, until)
    if not groups:
        return {}
    rows = await session.execute(
        select(
            Delivery.incident_id,
            Delivery.digest_group,
            Delivery.channel,
            Delivery.payload["teams"],  # (the alert's teams; not the rest of the payload)
        ).where(
            Delivery.incident_id.in_(sorted(groups)),
            Delivery.digest_group.in_(sorted({g for g, _, _ in groups.values()})),
            Delivery.status == PENDING,
            Delivery.attempts == 0,
        )
    )
    channels: dict[int, set[str]] = {}
    teams: dict[int, set[str]] = {}
    for incident_id, group, channel, names in rows:
        if group != groups[incident_id][0]:
            continue  # another incident's quiet night
        channels.setdefault(incident_id, set()).add(channel)
        if isinstance(names, list):
            teams.setdefault(incident_id, set()).update(str(n) for n in names)
    return {
        incident_id: Mute(
            "quiet_hours",
            at,
            until <= now,
            until=until,
            teams=tuple(sorted(teams.get(incident_id, ()))),
            channels=tuple(sorted(channels[incident_id])),
        )
        for incident_id, (_, at, until) in groups.items()
        if incident_id in channels
    }


def _id_in(detail: dict[str, Any], key: str) -> int | None:
    value = detail.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def is_reopen(event: IncidentEvent) -> bool:
    """Whether the event is the incident's own upgrade of it while it was no longer open
    (acknowledged, mitigating, resolved, closed): that reopened it, cleared its ack and
    started a new page (``_upgrade``). Each reopen starts an episode of the incident, and
    the time to acknowledge of an episode counts from its start (``episode_start``), not
    from the first open."""
    detail = event.detail or {}
    return event.kind == "upgraded" and _own(detail) and detail.get("was", OPEN) != OPEN


def own_event(event: IncidentEvent) -> bool:
    """Whether a timeline event is the incident's own, not one a merge moved to it."""
    return _own(event.detail)


async def episode_start(session: AsyncSession, incident: Incident) -> datetime:
    """When the incident's current episode started: its last reopen (``is_reopen``), else
    its open. Its ``acked_at`` (None until then) is the ack of this episode."""
    events = await session.scalars(
        select(IncidentEvent)
        .where(IncidentEvent.incident_id == incident.id, IncidentEvent.kind == "upgraded")
        .order_by(IncidentEvent.id.desc())
    )
    return next((event.at for event in events if is_reopen(event)), incident.opened_at)


async def _lock_open(session: AsyncSession, incident_id: int) -> Incident | None:
    """The incident, locked and read afresh, if it is open and unacknowledged."""
    incident = await session.scalar(
        select(Incident)
        .where(Incident.id == incident_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if incident is None or incident.status != OPEN or incident.acked_at is not None:
        return None
    return incident


async def release_silence(
    session: AsyncSession,
    silence_id: int,
    config: AlertsConfig,
    now: datetime,
    *,
    metrics: Metrics | None = None,
) -> Release | None:
    """After silence ``silence_id`` ended: alert, as if newly raised at their current
    tier, the incidents it muted that are still open (unacknowledged, unfinished) and
    whose last alert it held back. Escalation and the SLA clock start now. One still
    matched by another active silence, or inhibited now, is recorded as muted by that
    instead (so that the other silence's end releases it).

    Marks the silence released (compare-and-set on ``released_at``): returns None when
    it was not ended or another alerter already released it, else the incidents alerted
    (their escalation steps to schedule once this commits) and those whose release failed
    (``_release_muted``): while there is one, the silence stays unreleased, to be released
    again (the others were alerted: only those are left)."""
    result = await session.execute(
        update(Silence)
        .where(
            Silence.id == silence_id,
            Silence.released_at.is_(None),
            Silence.ends_at <= now,
        )
        .values(released_at=now)
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        return None
    release = await _release_muted(
        session,
        config,
        now,
        muted=("silenced", "silence", silence_id),
        kind="unsilenced",
        detail={"silence": silence_id},
        why=Reason(code="silence_ended"),
        metrics=metrics,
        counter=None if metrics is None else metrics.alerts_unsilenced,
    )
    if release.failed:
        await session.execute(
            update(Silence)
            .where(Silence.id == silence_id)
            .values(released_at=None)
            .execution_options(synchronize_session=False)
        )
    return release


async def release_inhibition(
    session: AsyncSession,
    inhibitor_id: int,
    config: AlertsConfig,
    now: datetime,
    *,
    metrics: Metrics | None = None,
) -> Release | None:
    """After incident ``inhibitor_id`` ended (resolved, closed, merged into another): alert,
    as if newly raised at their current tier, the incidents it inhibited that are still
    open (unacknowledged, unfinished) and whose last alert it held back. Escalation and the
    SLA clock start now. One inhibited by another live incident now (the survivor of a
    merge, say), or matched by an active silence, is recorded as muted by that instead (so
    that its end releases it).

    Marks the ended incident released (compare-and-set on ``inhibition_released_at``, as
    ``release_silence`` marks a silence, then each incident locked in id order): returns
    None when it is live again or another alerter already released it, else the incidents
    alerted (their escalation steps to schedule once this commits) and those whose release
    failed: while there is one, the ended incident stays unreleased, as a silence does."""
    result = await session.execute(
        update(Incident)
        .where(
            Incident.id == inhibitor_id,
            Incident.inhibition_released_at.is_(None),
            Incident.status.in_(FINISHED),
        )
        .values(inhibition_released_at=now)
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        return None
    ended = await session.scalar(
        select(Incident)
        .where(Incident.id == inhibitor_id)
        .execution_options(populate_existing=True)
    )
    if ended is None:
        return None
    how = f"merged into incident {ended.merged_into_id}" if ended.merged_into_id else ended.status
    release = await _release_muted(
        session,
        config,
        now,
        muted=("inhibited", "by_incident", ended.id),
        kind="uninhibited",
        detail={"by_incident": ended.id, "inhibitor": how},
        why=Reason(
            code="inhibition_ended",
            incident=ended.id,
            status=ended.status,
            merged_into=ended.merged_into_id,
        ),
        metrics=metrics,
        counter=None if metrics is None else metrics.alerts_uninhibited,
    )
    if release.failed:
        await session.execute(
            update(Incident)
            .where(Incident.id == inhibitor_id)
            .values(inhibition_released_at=None)
            .execution_options(synchronize_session=False)
        )
    return release


class Release(NamedTuple):
    """What a release did: the incidents it alerted, and the ids of those whose release
    raised (each rolled back alone and logged; the others were alerted)."""

    alerted: list[Incident]
    failed: list[int]


async def _release_muted(
    session: AsyncSession,
    config: AlertsConfig,
    now: datetime,
    *,
    muted: tuple[str, str, int],
    kind: str,
    detail: dict[str, Any],
    why: Reason,
    metrics: Metrics | None,
    counter: Counter | None,
) -> Release:
    """Alert again the open, unacknowledged incidents whose own last mute event is
    ``muted`` (its kind, the detail key naming what muted it, and that id), each locked
    in id order; the others were alerted since or are muted by something else now. Returns
    those alerted (``counter`` counts them by tier once this commits) and those that failed:
    each incident on its own (a savepoint), so that one that raises (a corrupt row) is
    rolled back alone and logged with its id, and the others are alerted all the same. An
    unavailable database is raised."""
    muted_kind, key, value = muted
    rows = await session.execute(
        select(IncidentEvent.incident_id, IncidentEvent.detail)
        .join(Incident, Incident.id == IncidentEvent.incident_id)
        .where(
            IncidentEvent.kind == muted_kind,
            Incident.status == OPEN,
            Incident.acked_at.is_(None),
        )
        .order_by(IncidentEvent.incident_id)
    )
    candidates = dict.fromkeys(
        incident_id
        for incident_id, found in rows
        if _own(found) and (found or {}).get(key) == value
    )
    alerted: list[Incident] = []
    failed: list[int] = []
    for incident_id in candidates:
        try:
            async with savepoint(session):
                incident = await _lock_open(session, incident_id)
                if incident is None:
                    continue
                last = await last_mute(session, incident_id)
                if last is None or last.kind != muted_kind or last.detail.get(key) != value:
                    continue  # alerted since (an upgrade), or muted by something else now
                sent = await _alert_again(
                    session, incident, config, now,
                    kind=kind, detail=detail, why=why, metrics=metrics,
                )  # fmt: skip
        except Exception as exc:
            if database_unavailable(exc):
                raise
            log.exception(
                "incident %d: alerting it again (%s) failed; it is tried again later, the "
                "others go on",
                incident_id,
                why.english(),
            )
            failed.append(incident_id)
            continue
        if sent:
            alerted.append(incident)
            if counter is not None:
                on_commit(session, counter.labels(str(incident.tier)).inc)
    return Release(alerted, failed)


async def _release_reason(session: AsyncSession, incident: Incident) -> str:
    """The delivery reason of an alert raised again at the incident's current tier: ``alert``
    (``upgrade`` for an incident raised to it), or, if the tier was alerted before (it was
    alerted, then inhibited by a newer incident), a re-alert reason of its own
    (``realert-<n>``): the dedupe keys of the earlier alert are taken."""
    upgraded = await session.scalar(
        select(IncidentEvent.id)
        .where(IncidentEvent.incident_id == incident.id, IncidentEvent.kind == "upgraded")
        .limit(1)
    )
    used = set(
        await session.scalars(
            select(Delivery.reason)
            .where(Delivery.incident_id == incident.id, Delivery.tier == incident.tier)
            .distinct()
        )
    )
    if not any(is_alert(reason) for reason in used):
        return ALERT if upgraded is None else UPGRADE
    n = 1 + sum(1 for reason in used if reason.startswith(REALERT))
    while realert_reason(n) in used:
        n += 1
    return realert_reason(n)


async def _alert_again(
    session: AsyncSession,
    incident: Incident,
    config: AlertsConfig,
    now: datetime,
    *,
    kind: str,
    detail: dict[str, Any],
    why: Reason,
    metrics: Metrics | None,
) -> bool:
    """Record the end of what muted the incident (``kind``: unsilenced, uninhibited) and
    alert it at its current tier (``_route``: it may be muted again by something else);
    True when it was alerted."""
    evidence = list(
        await session.scalars(
            select(IncidentEvidence)
            .where(IncidentEvidence.incident_id == incident.id)
            .order_by(IncidentEvidence.id)
        )
    )
    attrs = _attrs(incident, (ev.mention_id for ev in evidence), config)
    reason = await _release_reason(session, incident)
    add_event(session, incident.id, kind, now, detail=detail)
    incident.updated_at = now
    return await _route(
        session,
        incident,
        attrs,
        config,
        now,
        reason=reason,
        why=why,
        evidence=snippets_from_rows(evidence, config.evidence_in_alert),
        trigger_received_at=None,
        metrics=metrics,
        again=True,
    )


async def list_incidents(
    session: AsyncSession,
    *,
    status: str | None = None,
    tier: int | None = None,
    watch: str | None = None,
    watches: Collection[str] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Incident], int]:
    """A page of incidents, newest first, and the total matching the filters
    (``watches``: any of these, for an API key scoped to several)."""
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
    if watches is not None:
        conditions.append(Incident.watch_id.in_(sorted(watches)))
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
    """The incident with ``timeline``, ``evidence`` and ``deliveries`` loaded, whole: for
    tests and tools on small incidents. The API reads ``incident_detail`` and the pages
    (a days-long incident has tens of thousands of rows in each)."""
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


# The newest items of each list ``incident_detail`` returns by default, and at most.
DETAIL_ITEMS = 100
MAX_DETAIL_ITEMS = 1000
# the order of a timeline (and of its pages): event time, then insertion
TIMELINE_ORDER = (IncidentEvent.at, IncidentEvent.id)
# the columns of a delivery the API shows (not its payload, the rendered alert)
_DELIVERY_SHOWN = (
    Delivery.id,
    Delivery.incident_id,
    Delivery.channel,
    Delivery.channel_type,
    Delivery.reason,
    Delivery.status,
    Delivery.attempts,
    Delivery.created_at,
    Delivery.sent_at,
    Delivery.last_error,
)


class IncidentDetail(NamedTuple):
    """An incident with the newest items of its timeline, evidence and deliveries (each
    oldest first: the tail of its paged listing, the timeline's ``TIMELINE_ORDER``,
    ``evidence_page``, ``deliveries_page``) and how many each has in all."""

    incident: Incident
    timeline: list[IncidentEvent]
    evidence: list[IncidentEvidence]
    deliveries: list[Delivery]
    timeline_total: int
    evidence_total: int
    deliveries_total: int


def _count(model: type[IncidentEvent | IncidentEvidence | Delivery], incident_id: int) -> Any:
    return (
        select(func.count())
        .select_from(model)
        .where(model.incident_id == incident_id)
        .scalar_subquery()
    )


async def _newest(session: AsyncSession, query: Any, order: tuple[Any, ...], limit: int) -> Any:
    """The last ``limit`` rows of ``query`` in ``order``, in that order (read newest first,
    with a LIMIT: never the rows before them)."""
    if limit < 1:
        return []
    rows = await session.scalars(query.order_by(*(c.desc() for c in order)).limit(limit))
    return list(rows)[::-1]


async def incident_detail(
    session: AsyncSession, incident_id: int, *, limit: int = DETAIL_ITEMS
) -> IncidentDetail:
    """The incident (``IncidentNotFound`` when missing) with at most the newest ``limit``
    (0 to ``MAX_DETAIL_ITEMS``) timeline events, evidence mentions and deliveries, and the
    count of each: what it reads is bounded however long the incident has run."""
    if not 0 <= limit <= MAX_DETAIL_ITEMS:
        raise ValueError(f"limit must be 0 to {MAX_DETAIL_ITEMS}")
    incident = await session.get(Incident, incident_id)
    if incident is None:
        raise IncidentNotFound(incident_id)
    totals = (
        await session.execute(
            select(
                _count(IncidentEvent, incident_id),
                _count(IncidentEvidence, incident_id),
                _count(Delivery, incident_id),
            )
        )
    ).one()
    timeline = await _newest(
        session,
        select(IncidentEvent).where(IncidentEvent.incident_id == incident_id),
        TIMELINE_ORDER,
        limit,
    )
    evidence = await _newest(
        session,
        select(IncidentEvidence).where(IncidentEvidence.incident_id == incident_id),
        (IncidentEvidence.id,),
        limit,
    )
    deliveries = await _newest(session, _deliveries(incident_id), (Delivery.id,), limit)
    return IncidentDetail(
        incident, timeline, evidence, deliveries, int(totals[0]), int(totals[1]), int(totals[2])
    )


def _deliveries(incident_id: int) -> Any:
    return (
        select(Delivery)
        .where(Delivery.incident_id == incident_id)
        .options(load_only(*_DELIVERY_SHOWN, raiseload=True))
    )


async def _page(
    session: AsyncSession,
    model: type[IncidentEvidence | Delivery],
    query: Any,
    incident_id: int,
    limit: int,
    offset: int,
) -> tuple[list[Any], int]:
    if limit < 1 or offset < 0:
        raise ValueError("limit must be >= 1 and offset >= 0")
    count = await session.scalar(select(_count(model, incident_id)))
    order = (model.id,)
    rows = await session.scalars(query.order_by(*order).limit(limit).offset(offset))
    return list(rows), int(count or 0)


async def evidence_page(
    session: AsyncSession, incident_id: int, *, limit: int = 100, offset: int = 0
) -> tuple[list[IncidentEvidence], int]:
    """A page of the incident's evidence mentions in the order they were kept (oldest
    first), and how many it has. The caller checks that the incident exists."""
    query = select(IncidentEvidence).where(IncidentEvidence.incident_id == incident_id)
    return await _page(session, IncidentEvidence, query, incident_id, limit, offset)


async def deliveries_page(
    session: AsyncSession, incident_id: int, *, limit: int = 100, offset: int = 0
) -> tuple[list[Delivery], int]:
    """A page of the incident's deliveries (outbox rows) in the order they were queued
    (oldest first), and how many it has. The caller checks that the incident exists."""
    return await _page(session, Delivery, _deliveries(incident_id), incident_id, limit, offset)


async def load_for_change(session: AsyncSession, incident_id: int) -> Incident:
    """The incident, locked for this transaction (``IncidentNotFound`` when missing)."""
    return await _load_for_change(session, incident_id)


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
    """Cancel the incident's pending alerts (``escalations_only``: its escalation steps).
    Follow-ups (ack, resolve) are never cancelled: they close what the channels were sent
    (a resolve that closes a superseded page must survive the final resolve)."""
    stmt = (
        update(Delivery)
        .where(
            Delivery.incident_id == incident_id,
            Delivery.status == PENDING,
            Delivery.reason.not_in(FOLLOW_UP_REASONS),
        )
        .values(status=CANCELLED, next_attempt_at=None, last_error=why)
        .execution_options(synchronize_session=False)
    )
    if escalations_only:
        stmt = stmt.where(Delivery.reason.startswith(ESCALATION, autoescape=True))
    result = await session.execute(stmt)
    return rowcount(result)


async def _cancel_failing_alerts(session: AsyncSession, incident_id: int, why: str) -> int:
    """An alert (first, upgrade or re-alert) that keeps failing on its channel is moot once
    somebody acknowledged the incident: stop retrying it (the error is kept). One that has
    not failed yet (held by quiet hours, say) still goes."""
    result = await session.execute(
        update(Delivery)
        .where(
            Delivery.incident_id == incident_id,
            Delivery.status == PENDING,
            or_(
                Delivery.reason.in_(FIRST_ALERT_REASONS),
                Delivery.reason.startswith(REALERT, autoescape=True),
            ),
            Delivery.first_failed_at.is_not(None),
        )
        .values(
            status=CANCELLED,
            next_attempt_at=None,
            last_error=literal(f"{why}; the channel was failing: ").concat(
                func.coalesce(Delivery.last_error, "")
            ),
        )
        .execution_options(synchronize_session=False)
    )
    return rowcount(result)


def _keep_note(
    session: AsyncSession, incident: Incident, note: str | None, actor: str, now: datetime
) -> None:
    """An ack or resolve of an incident already in that state changes nothing, but the
    note it carries is kept (a timeline note, as ``POST /incidents/{id}/notes`` adds),
    not dropped: the second responder's "customer service called back" is the record."""
    if note is None or not note.strip():
        return
    incident.updated_at = now
    add_event(session, incident.id, "note", now, actor=actor, detail={"text": note})


async def acknowledge(
    session: AsyncSession,
    incident_id: int,
    actor: str,
    clock: Clock,
    *,
    metrics: Metrics | None = None,
    note: str | None = None,
) -> Incident:
    """Stop the escalation: someone is on it. Acknowledging twice changes nothing (its
    note, if any, is kept as a timeline note).

    Pending escalation messages are cancelled, and so are alerts still retrying on a
    failing channel (``alerts.outbox``'s retry policy). Pass ``metrics`` to observe
    time-to-ack (``crisiswatch_time_to_ack_seconds``: since ``alerted_at``, the alert this
    ack answers: the open, the upgrade, or a reopen; not the incident's first open) and
    to count a breach: an ack that meets the tier's SLA after its deadline, before the
    tick saw it, records the breach (``sla.missed_at_stop``).
    Raises ``IncidentNotFound``, or ``InvalidTransition`` for a resolved incident.
    """
    incident = await _load_for_change(session, incident_id)
    if incident.status in (ACKNOWLEDGED, MITIGATING):
        _keep_note(session, incident, note, actor, clock.now())
        return incident
    if incident.status in FINISHED:
        raise InvalidTransition(
            f"incident {incident_id} is {incident.status}; there is nothing to acknowledge"
        )
    now = clock.now()
    incident.status = ACKNOWLEDGED
    incident.acked_at = now
    incident.acked_by = actor
    incident.updated_at = now
    escalation.disarm(incident)
    if sla.met(incident, "acknowledged", now):
        await sla.missed_at_stop(session, incident, now, "acknowledged", metrics)
    cancelled = await _cancel_pending(
        session, incident.id, "cancelled: incident acknowledged", escalations_only=True
    )
    detail: dict[str, Any] = {"note": note, "cancelled_escalations": cancelled}
    retries = await _cancel_failing_alerts(session, incident.id, "cancelled: incident acknowledged")
    if retries:
        detail["cancelled_retries"] = retries
    add_event(session, incident.id, "acknowledged", now, actor=actor, detail=detail)
    await enqueue_follow_ups(session, incident, "acknowledge", actor, now)
    if metrics is not None:
        waited = max((now - incident.alerted_at).total_seconds(), 0.0)
        histogram = metrics.time_to_ack.labels(str(incident.tier), drill_label(incident.drill))
        on_commit(session, lambda: histogram.observe(waited))
    return incident


async def resolve(
    session: AsyncSession,
    incident_id: int,
    actor: str,
    clock: Clock,
    *,
    metrics: Metrics | None = None,
    note: str | None = None,
) -> Incident:
    """Close the incident; pending deliveries are cancelled. Resolving twice changes nothing
    (its note, if any, is kept as a timeline note).

    Its SLA clock stops: met, if the resolve is what the tier waits for and in time; a
    deadline passed before the resolve is a breach, recorded now if the tick has not
    recorded it (``sla.missed_at_stop``; ``metrics`` counts it); a clock met or missed
    keeps its deadline for the report; one still in time is cleared."""
    incident = await _load_for_change(session, incident_id)
    if incident.status == RESOLVED:
        _keep_note(session, incident, note, actor, clock.now())
        return incident
    if incident.status == CLOSED:
        raise InvalidTransition(f"incident {incident_id} is closed; it cannot be resolved again")
    now = clock.now()
    incident.status = RESOLVED
    incident.resolved_at = now
    incident.resolved_by = actor
    incident.updated_at = now
    escalation.disarm(incident)
    sla.met(incident, "resolved", now)
    await sla.missed_at_stop(session, incident, now, "resolved", metrics)
    detail: dict[str, Any] = {"note": note}
    if (not_needed := sla.not_needed(incident, now, "resolved")) is not None:
        detail["sla"] = not_needed  # (for the report: the deadline is cleared below)
    if incident.sla_met_at is None and incident.sla_breached_at is None:
        sla.stop(incident)  # (a clock met or missed keeps its deadline, for the report)
    detail["cancelled_deliveries"] = await _cancel_pending(
        session, incident.id, "cancelled: incident resolved", escalations_only=False
    )
    add_event(session, incident.id, "resolved", now, actor=actor, detail=detail)
    await enqueue_follow_ups(session, incident, "resolve", actor, now)
    return incident


RESPONSE_KINDS = ("reply", "statement", "other")


async def record_response(
    session: AsyncSession,
    incident_id: int,
    kind: str,
    actor: str,
    clock: Clock,
    *,
    metrics: Metrics | None = None,
    note: str | None = None,
) -> Incident:
    """Record that the answer the plan asks for went out (a private reply, a statement):
    stops a tier's SLA clock that waits for a response (after its deadline: a breach,
    recorded now if the tick has not, ``sla.missed_at_stop``). Recording twice keeps the
    first."""
    if kind not in RESPONSE_KINDS:
        raise ValueError(f"unknown response kind {kind!r}; one of {', '.join(RESPONSE_KINDS)}")
    incident = await _load_for_change(session, incident_id)
    if incident.status in FINISHED:
        raise InvalidTransition(
            f"incident {incident_id} is {incident.status}; record responses before resolving"
        )
    now = clock.now()
    first = incident.responded_at is None
    if first:
        incident.responded_at = now
    if sla.met(incident, "responded", now):
        await sla.missed_at_stop(session, incident, now, "responded", metrics)
    incident.updated_at = now
    add_event(
        session, incident.id, "responded", now, actor=actor, detail={"kind": kind, "note": note}
    )
    await tasks.complete_by_response(session, incident.id, kind, actor, now)
    if metrics is not None and first:
        waited = max((now - incident.alerted_at).total_seconds(), 0.0)
        histogram = metrics.time_to_statement.labels(
            str(incident.tier), drill_label(incident.drill)
        )
        on_commit(session, lambda: histogram.observe(waited))
    return incident


async def open_counts(session: AsyncSession) -> dict[tuple[int, bool], int]:
    """Unresolved incidents per (tier, drill) (every pair present, 0 when none)."""
    rows = await session.execute(
        select(Incident.tier, Incident.drill, func.count())
        .where(Incident.status.not_in(FINISHED))
        .group_by(Incident.tier, Incident.drill)
    )
    counts = {(tier, drill): 0 for tier in (1, 2, 3) for drill in (False, True)}
    for tier, drill, count in rows:
        key = (int(tier), bool(drill))
        counts[key] = counts.get(key, 0) + int(count)
    return counts
