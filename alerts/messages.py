"""Build the ``AlertMessage`` of one delivery from an incident (snapshotted in the outbox)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta

from alerts.config import AlertsConfig
from alerts.models import Incident, IncidentEvidence
from alerts.notifiers.base import AlertMessage, EvidenceSnippet, Link
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
    )
