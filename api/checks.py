"""``crisiswatch check-config``: what a valid config file sets up, in words."""

from __future__ import annotations

from pathlib import Path

from api.settings import SQLITE_WITH_KAFKA, Settings
from core.db import sqlite_file


def describe(settings: Settings, path: Path) -> str:
    lines = [f"{path}: OK"]
    lines.append(f"  bus: {settings.bus.kind}")
    url = settings.database.url.get_secret_value()
    lines.append(f"  database: {url.split(':', 1)[0]}")
    if settings.bus.kind == "kafka" and sqlite_file(url) is not None:
        lines.append(f"    warning: {SQLITE_WITH_KAFKA}")
    watches = settings.listener.watches
    lines.append(
        f"  watches: {len(watches)}"
        + (
            " (" + ", ".join(w.id for w in watches) + ")"
            if watches
            else " (none: a running service matches nothing, add listener.watches; "
            "replay and bench detection need none)"
        )
    )
    lines.append(
        f"  API keys: {len(settings.api.keys)}"
        + ("" if settings.api.keys else " (none: incident endpoints will answer 401)")
    )
    plain = [k.name for k in settings.api.keys if k.key is not None]
    if plain:
        lines.append(f"    in plain text (prefer key_sha256): {', '.join(plain)}")
    known = {w.id for w in watches}
    lines.extend(f"    {warning}" for warning in settings.api.scope_warnings(known))
    lines.append(
        "  /metrics: "
        + (
            "behind api.metrics_token"
            if settings.api.metrics_token is not None
            else "open (set api.metrics_token where the API is reachable from outside)"
        )
    )
    lines.append(
        f"  alert channels: {len(settings.alerts.channels)} "
        f"({', '.join(sorted(settings.alerts.channels))})"
    )
    alerts = settings.alerts
    rotas = sorted(name for name, team in alerts.teams.items() if team.rota is not None)
    lines.append(
        f"  alert people: {len(alerts.people)}; teams: {len(alerts.teams)} "
        f"(on-call rotas: {', '.join(rotas) or 'none'})"
    )
    lines.extend(f"    warning: {warning}" for warning in alerts.membership_warnings())
    lines.extend(f"    warning: {warning}" for warning in alerts.route_warnings(known))
    lines.append(
        "  escalation: "
        + ", ".join(f"tier {t} -> {alerts.escalation.get(t) or 'none'}" for t in (1, 2, 3))
    )
    lines.extend(f"    warning: {warning}" for warning in alerts.escalation_warnings())
    lines.append(
        "  SLA: "
        + (
            ", ".join(
                f"tier {t} {sla.description or sla.met_by} in {sla.target}"
                for t, sla in sorted(alerts.sla.items())
            )
            or "none"
        )
    )
    lines.extend(f"    warning: {warning}" for warning in alerts.sla_warnings())
    if alerts.quiet_hours is not None:
        q = alerts.quiet_hours
        lines.append(f"  quiet hours: {q.start}-{q.end} {q.timezone} for tiers {q.tiers}")
    lines.append(
        "  webhook ingest: " + ("enabled" if settings.listener.webhook.enabled else "disabled")
    )
    lines.extend(describe_sources(settings))
    return "\n".join(lines)


def describe_sources(settings: Settings) -> list[str]:
    """One line per configured source kind: what it needs and covers."""
    from listener.sources.catalogue import CATALOGUE

    sources = settings.listener.sources
    configured = [e for e in CATALOGUE if e.configured_in(sources)]
    lines = [f"  sources: {len(configured)}" + ("" if configured else " (none)")]
    for entry in configured:
        label = "rss (RSSHub routes)" if entry.kind == "rsshub" else entry.config_key
        lines.append(f"    {label}: needs {entry.coverage.needs}; covers {entry.coverage.covers}")
    return lines
