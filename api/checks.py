"""``crisiswatch check-config``: what a valid config file sets up, in words."""

from __future__ import annotations

from pathlib import Path

from api.settings import Settings


def describe(settings: Settings, path: Path) -> str:
    lines = [f"{path}: OK"]
    lines.append(f"  bus: {settings.bus.kind}")
    lines.append(f"  database: {settings.database.url.get_secret_value().split(':', 1)[0]}")
    watches = settings.listener.watches
    lines.append(
        f"  watches: {len(watches)}"
        + (
            " (" + ", ".join(w.id for w in watches) + ")"
            if watches
            else " (none: nothing will match; add listener.watches)"
        )
    )
    lines.append(
        f"  API keys: {len(settings.api.keys)}"
        + ("" if settings.api.keys else " (none: incident endpoints will answer 401)")
    )
    lines.append(
        f"  alert channels: {len(settings.alerts.channels)} "
        f"({', '.join(sorted(settings.alerts.channels))})"
    )
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
