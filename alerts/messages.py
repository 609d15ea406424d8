"""Build the ``AlertMessage`` of one delivery from an incident (snapshotted in the outbox)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from alerts.config import AlertsConfig
from alerts.models import Incident, IncidentEvidence
from alerts.notifiers.base import AlertMessage, Contact, DigestItem, EvidenceSnippet, Link
from core.events import Evidence

TIER_NAMES = {1: "minor complaint", 2: "local spread", 3: "network-wide crisis"}


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


def describe(delta: timedelta) -> str:
    minutes = round(delta.total_seconds() / 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes / 60:.1f} h"


def build_message(
    incident: Incident,
    *,
    config: AlertsConfig,
    reason: str,
    teams: Sequence[str],
    evidence: Sequence[EvidenceSnippet],
    idempotency_key: str,
    mentions: Sequence[Contact] = (),
) -> AlertMessage:
    base = (config.public_url or "").rstrip("/")
    links = (
        (Link(label="Open incident", url=base + config.incident_path.format(id=incident.id)),)
        if base
        else ()
    )
    return AlertMessage(
        incident_id=incident.id,
        tier=incident.tier,
        title=incident.title,
        explanation=incident.explanation,
        watch_id=incident.watch_id,
        brand=incident.brand,
        reason=reason,
        teams=tuple(teams),
        evidence=tuple(evidence),
        links=links,
        ack_hint=f"POST {base}{config.ack_path.format(id=incident.id)}",
        drill=incident.drill,
        opened_at=incident.opened_at,
        idempotency_key=idempotency_key,
        mentions=tuple(mentions),
        page=incident.page,
    )


def follow_up(
    payload: dict[str, Any], action: str, actor: str, key: str, *, reason: str | None = None
) -> dict[str, Any]:
    """The stored payload of a sent alert, turned into its acknowledge/resolve follow-up
    (same incident page, so the same ``dedup_key``: it reaches the alert it follows)."""
    message = AlertMessage.model_validate(payload)
    verb = "acknowledged" if action == "acknowledge" else "resolved"
    return message.model_copy(
        update={
            "action": action,
            "actor": actor,
            "reason": reason or f"{verb} by {actor}",
            "mentions": (),
            "idempotency_key": key,
        }
    ).model_dump(mode="json")


def digest_message(payloads: Sequence[dict[str, Any]], why: str, key: str) -> AlertMessage:
    """Several alerts of one channel merged into one message; each is an item that keeps
    its alert's incident page, action and idempotency key (``key``, the digest's own, names
    this set of alerts: sent again after a crash, a digest may hold another set)."""
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
            action=m.action,
            page=m.page,
            idempotency_key=m.idempotency_key,
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
        explanation=f"{len(messages)} alerts merged into one message: {why}",
        watch_id=watches[0] if len(watches) == 1 else "several",
        brand=first.brand if len(watches) == 1 else "",
        reason=f"digest: {why}",
        teams=tuple(teams),
        ack_hint=first.ack_hint if len(messages) == 1 else "",
        drill=drill,
        opened_at=min(m.opened_at for m in messages),
        idempotency_key=key,
        mentions=tuple(mentions.values()),
        digest=items,
        page=first.page if one_page else 0,
    )
