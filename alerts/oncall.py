"""Who is on call: a team's rota at a given time (overrides first, then the rotation)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from alerts.config import AlertsConfig, PersonConfig, RotaConfig
from alerts.notifiers.base import Contact

PERIODS = {"daily": timedelta(days=1), "weekly": timedelta(weeks=1)}


@dataclass(frozen=True)
class OnCall:
    team: str
    person: str | None
    until: datetime | None
    """When the next handoff (or the end of the override) is; None without a rota."""
    override_reason: str | None = None


def on_call(rota: RotaConfig, at: datetime) -> tuple[str, datetime, str | None]:
    """(person, until, override reason or None) for ``rota`` at ``at``."""
    for override in rota.overrides:
        if override.start <= at < override.end:
            return override.person, override.end, override.reason or "override"
    period = PERIODS[rota.rotation]
    # Whole periods since the first handoff; before it, the first person is on call.
    turns = max(0, (at - rota.start) // period)
    person = rota.people[turns % len(rota.people)]
    until = rota.start + period * (turns + 1)
    upcoming = [o.start for o in rota.overrides if at < o.start < until]
    return person, min([until, *upcoming]), None


def team_on_call(config: AlertsConfig, team: str, at: datetime) -> OnCall:
    rota = config.teams[team].rota
    if rota is None:
        return OnCall(team=team, person=None, until=None)
    person, until, reason = on_call(rota, at)
    return OnCall(team=team, person=person, until=until, override_reason=reason)


def contact(name: str, person: PersonConfig) -> Contact:
    return Contact(
        name=person.name or name,
        email=person.email,
        phone=person.phone,
        chat_ids=dict(person.chat_ids),
    )
