"""Build the ``AlertMessage`` of one delivery from an incident (snapshotted in the outbox).

Besides the English ``reason`` and ``explanation``, a message carries what the channels in
another language render them from: ``why`` (the structured reason) and ``heat`` (the
incident's ``Incident.heat``, the heat behind its explanation). The heat is kept on the
incident, written with the explanation (open, upgrade), because most messages are built
long after the signal: escalation steps, reminders, re-alerts after a silence or an
inhibition. The snapshot then holds the heat of its time, as it holds the explanation."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError

from alerts.config import SELF_WATCH, AlertsConfig
from alerts.models import Incident, IncidentEvidence
from alerts.notifiers.base import (
    AlertHeat,
    AlertMessage,
    Contact,
    DigestItem,
    EvidenceSnippet,
    Link,
)
from alerts.notifiers.i18n import OPEN_INCIDENT
from alerts.notifiers.i18n import TIER_NAMES as TIER_NAMES
from alerts.notifiers.reasons import Reason
from alerts.notifiers.reasons import describe as describe
from core.events import Evidence, Signal

log = logging.getLogger(__name__)

API_INCIDENT_PATH = "/incidents/{id}"
"""The incident in the JSON API (under ``public_url``): ``AlertMessage.api_url``, for
machines. The "Open incident" link people click is ``AlertsConfig.incident_path`` (the
console by default): the API answers a browser without a key 401."""


def incident_title(brand: str, watch_id: str, tier: int) -> str:
    return f"{brand or watch_id}: {TIER_NAMES.get(tier, f'tier {tier}')}"


def snippets_from_signal(evidence: Iterable[Evidence], limit: int) -> list[EvidenceSnippet]:
    return [
        EvidenceSnippet(
            author=ev.author, followers=ev.followers, text=ev.text, url=ev.url, label=ev.label
        )
        for ev in list(evidence)[:limit]
    ]


def snippets_from_rows(rows: Iterable[IncidentEvidence], limit: int) -> list[EvidenceSnippet]:
    return [
        EvidenceSnippet(
            author=row.author, followers=row.followers, text=row.text, url=row.url, label=row.label
        )
        for row in list(rows)[:limit]
    ]


def heat_of(signal: Signal) -> dict[str, Any] | None:
    """What ``Incident.heat`` keeps of the signal whose explanation the incident takes: its
    heat and kind (None for a self-alert: its explanation is about a channel, not heat)."""
    if signal.watch.id == SELF_WATCH:
        return None
    return AlertHeat(**signal.heat.model_dump(), kind=signal.kind).model_dump(mode="json")


def stored_heat(incident: Incident) -> AlertHeat | None:
    """The incident's heat (``Incident.heat``), or None: none kept (an incident from
    before it was kept, a self-alert), or unreadable (logged: the alert goes with its
    English explanation rather than not at all)."""
    if not incident.heat:
        return None
    try:
        return AlertHeat.model_validate(incident.heat)
    except ValidationError as exc:
        log.warning(
            "incident %s: stored heat unreadable (%d errors); alerts show the English explanation",
            incident.id,
            exc.error_count(),
        )
        return None


def build_message(
    incident: Incident,
    *,
    config: AlertsConfig,
    reason: Reason,
    teams: Sequence[str],
    evidence: Sequence[EvidenceSnippet],
    idempotency_key: str,
    mentions: Sequence[Contact] = (),
) -> AlertMessage:
    base = (config.public_url or "").rstrip("/")
    # people click the link (the console, by default); machines read the API's URL
    links = (
        (Link(label=OPEN_INCIDENT, url=base + config.incident_path.format(id=incident.id)),)
        if base
        else ()
    )
    api_url = base + API_INCIDENT_PATH.format(id=incident.id) if base else None
    return AlertMessage(
        incident_id=incident.id,
        tier=incident.tier,
        title=incident.title,
        explanation=incident.explanation,
        watch_id=incident.watch_id,
        brand=incident.brand,
        reason=reason.english(),
        why=reason,
        heat=stored_heat(incident),
        teams=tuple(teams),
        evidence=tuple(evidence),
        links=links,
        api_url=api_url,
        ack_hint=f"POST {base}{config.ack_path.format(id=incident.id)}",
        drill=incident.drill,
        opened_at=incident.opened_at,
        idempotency_key=idempotency_key,
        mentions=tuple(mentions),
        page=incident.page,
    )


def follow_up(
    payload: dict[str, Any], action: str, actor: str, key: str, *, reason: Reason | None = None
) -> dict[str, Any]:
    """The stored payload of a sent alert, turned into its acknowledge/resolve follow-up
    (same incident page, so the same ``dedup_key``: it reaches the alert it follows)."""
    message = AlertMessage.model_validate(payload)
    code = "acknowledged" if action == "acknowledge" else "resolved"
    why = reason or Reason(code=code, actor=actor)
    return message.model_copy(
        update={
            "action": action,
            "actor": actor,
            "reason": why.english(),
            "why": why,
            "mentions": (),
            "idempotency_key": key,
        }
    ).model_dump(mode="json")


def digest_message(payloads: Sequence[dict[str, Any]], why: Reason | str, key: str) -> AlertMessage:
    """Several alerts of one channel merged into one message; each is an item that keeps
    its alert's incident page, action and idempotency key (``key``, the digest's own, names
    this set of alerts: sent again after a crash, a digest may hold another set). ``why``:
    a ``digest_held``/``digest_rate`` reason (or its text alone)."""
    structured = why if isinstance(why, Reason) else None
    said = why.english() if isinstance(why, Reason) else why
    messages = [AlertMessage.model_validate(p) for p in payloads]
    first = messages[0]
    top = max(m.tier for m in messages)
    drill = all(m.drill for m in messages)
    teams: dict[str, None] = {}
    mentions: dict[str, Contact] = {}  # keyed by content: one mention per person
    for m in messages:
        teams.update(dict.fromkeys(m.teams))
        for contact in m.mentions:
            same = json.dumps(contact.model_dump(mode="json"), sort_keys=True)
            mentions.setdefault(same, contact)
    items = tuple(
        DigestItem(
            incident_id=m.incident_id,
            tier=m.tier,
            # a drill merged with real alerts: its own line says so (the headline cannot)
            title=f"[DRILL] {m.title}" if m.drill and not drill else m.title,
            reason=m.reason if m.action == "trigger" else f"{m.reason} ({m.action})",
            url=m.links[0].url if m.links else None,
            api_url=m.api_url,
            action=m.action,
            page=m.page,
            idempotency_key=m.idempotency_key,
            why=m.why,
        )
        for m in messages
    )
    watches = sorted({m.watch_id for m in messages})
    # the digest as a whole keys like its incident page only if it holds one
    one_page = len({(m.incident_id, m.page) for m in messages}) == 1
    return AlertMessage(
        incident_id=first.incident_id,
        tier=top,
        title=f"{len(messages)} alerts (digest)",
        explanation=f"{len(messages)} alerts merged into one message: {said}",
        watch_id=watches[0] if len(watches) == 1 else "several",
        brand=first.brand if len(watches) == 1 else "",
        reason=f"digest: {said}",
        why=structured,
        teams=tuple(teams),
        ack_hint=first.ack_hint if len(messages) == 1 else "",
        drill=drill,
        opened_at=min(m.opened_at for m in messages),
        idempotency_key=key,
        mentions=tuple(mentions.values()),
        digest=items,
        page=first.page if one_page else 0,
    )
