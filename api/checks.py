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
    plain = [k.name for k in settings.api.keys if k.key is not None]
    if plain:
        lines.append(f"    in plain text (prefer key_sha256): {', '.join(plain)}")
    known = {w.id for w in watches}
    for k in settings.api.keys:
        unknown = sorted(set(k.watches or ()) - known)
        if unknown:
            lines.append(f"    key {k.name!r} is scoped to unknown watches: {', '.join(unknown)}")
    lines.append(
        f"  alert channels: {len(settings.alerts.channels)} "
        f"({', '.join(sorted(settings.alerts.channels))})"
    )
    lines.append(
        "  webhook ingest: " + ("enabled" if settings.listener.webhook.enabled else "disabled")
    )
    return "\n".join(lines)
