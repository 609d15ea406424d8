"""Who is on call: a team's rota at a given time (overrides first, then the rotation)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from alerts.config import ROTATION_PERIODS, AlertsConfig, PersonConfig, RotaConfig
from alerts.notifiers.base import Contact

PERIODS = ROTATION_PERIODS


@dataclass(frozen=True)
class OnCall:
    team: str
    person: str | None
    until: datetime | None
    """When the next handoff (or the end of the override) is; None without a rota."""
    override_reason: str | None = None


def on_call(rota: RotaConfig, at: datetime) -> tuple[str, datetime, str | None]:
    """(person, until, override reason or None) for ``rota`` at ``at``. Where overrides
    overlap, the first listed wins: one on call now ends early when an earlier-listed one
    starts before its end."""
    for i, override in enumerate(rota.overrides):
        if override.start <= at < override.end:
            takeover = [o.start for o in rota.overrides[:i] if at < o.start < override.end]
            return override.person, min([override.end, *takeover]), override.reason or "override"
    if rota.timezone is None:
        period = PERIODS[rota.rotation]
        # Whole periods since the first handoff; before it, the first person is on call.
        turns = max(0, (at - rota.start) // period)
        until = rota.start + period * (turns + 1)
    else:
        turns, until = _local_turn(rota, rota.timezone, at)
    person = rota.people[turns % len(rota.people)]
    upcoming = [o.start for o in rota.overrides if at < o.start < until]
    return person, min([until, *upcoming]), None


def _local_turn(rota: RotaConfig, zone_name: str, at: datetime) -> tuple[int, datetime]:
    """(turn, next handoff) for a rota whose handoffs follow ``zone_name``'s wall clock:
    the turn counts local calendar days since ``start``'s local date (in steps of 1 or 7),
    and each handoff is ``start``'s local time of day on its date (see ``RotaConfig`` for
    the skipped and repeated hours). The next handoff is given at its local UTC offset."""
    zone = ZoneInfo(zone_name)
    first = rota.start.astimezone(zone)
    at_time = first.time().replace(fold=0)
    step = PERIODS[rota.rotation].days

    def handoff(turn: int) -> datetime:
        day = first.date() + timedelta(days=turn * step)
        # fold=0: a skipped time takes the offset before the jump, a repeated one its first
        # occurrence. Compared in UTC: same-zone datetimes compare by wall clock only.
        return datetime.combine(day, at_time, tzinfo=zone).astimezone(UTC)

    turn = max(0, (at.astimezone(zone).date() - first.date()).days // step)
    # A resolved handoff can land on a neighbouring local date (a jump at midnight): settle.
    while turn > 0 and at < handoff(turn):
        turn -= 1
    while at >= handoff(turn + 1):
        turn += 1
    local = handoff(turn + 1).astimezone(zone)
    return turn, local.astimezone(timezone(local.utcoffset() or timedelta(0)))


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
