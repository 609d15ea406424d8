"""Silences: alerts matching a silence's matchers are not sent until it ends.

Created through the API with matchers (the routes' matcher fields), an end time, an
author and a reason; expiring one sets its end to now (the record stays). A silence is
evaluated whenever something would page: when an incident is alerted (opened, upgraded,
released) and when one of its escalation steps or reminders is due (``silencing``,
``alerts.escalation``), as Alertmanager evaluates silences at notification time: a silence
created after the alert stops the escalation at its next step. Once one has ended, the
alerter's tick releases it (``ended``, then ``incidents.release_silence``): the incidents
it muted that are still open and unacknowledged are alerted then, and escalate again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.config import AlertsConfig, Matchers
from alerts.models import Incident, IncidentEvidence, Silence
from alerts.routing import AlertAttrs, matches, sources_of


class SilenceNotFound(LookupError):
    def __init__(self, silence_id: int) -> None:
        super().__init__(f"silence {silence_id} does not exist")
        self.silence_id = silence_id


class InvalidSilence(ValueError):
    """A silence that cannot be created (the API answers 422)."""


def create(
    session: AsyncSession,
    *,
    matchers: Matchers,
    ends_at: datetime,
    author: str,
    reason: str,
    now: datetime,
    starts_at: datetime | None = None,
) -> Silence:
    starts = starts_at or now
    if ends_at <= max(starts, now):
        raise InvalidSilence("ends_at must be in the future and after starts_at")
    if matchers == Matchers():
        raise InvalidSilence("a silence needs at least one matcher (it would mute everything)")
    empty = [
        name for name in ("tier", "watch", "source", "language") if getattr(matchers, name) == []
    ]
    if empty:  # an empty list matches nothing: the silence would mute nothing
        raise InvalidSilence(f"matcher {empty[0]} lists no value: it would match nothing")
    if not reason.strip():
        raise InvalidSilence("a silence needs a reason")
    silence = Silence(
        matchers=matchers.model_dump(mode="json", exclude_defaults=True),
        starts_at=starts,
        ends_at=ends_at,
        author=author,
        reason=reason,
        created_at=now,
    )
    session.add(silence)
    return silence


async def list_silences(
    session: AsyncSession, now: datetime, *, active_only: bool = True
) -> list[Silence]:
    stmt = select(Silence).order_by(Silence.id.desc())
    if active_only:
        stmt = stmt.where(Silence.ends_at > now)
    return list(await session.scalars(stmt))


async def get(session: AsyncSession, silence_id: int) -> Silence:
    silence = await session.get(Silence, silence_id)
    if silence is None:
        raise SilenceNotFound(silence_id)
    return silence


async def expire(session: AsyncSession, silence_id: int, now: datetime) -> Silence:
    silence = await get(session, silence_id)
    if silence.ends_at > now:
        silence.ends_at = now
    return silence


async def ended(session: AsyncSession, now: datetime, *, limit: int = 100) -> list[int]:
    """Ids of the silences that have ended and whose muted incidents were not released."""
    return list(
        await session.scalars(
            select(Silence.id)
            .where(Silence.released_at.is_(None), Silence.ends_at <= now)
            .order_by(Silence.ends_at, Silence.id)
            .limit(limit)
        )
    )


async def matching(session: AsyncSession, attrs: AlertAttrs, now: datetime) -> Silence | None:
    """The first active silence whose matchers match ``attrs``."""
    active = await session.scalars(
        select(Silence).where(Silence.starts_at <= now, Silence.ends_at > now).order_by(Silence.id)
    )
    for silence in active:
        if matches(Matchers.model_validate(silence.matchers), attrs):
            return silence
    return None


def incident_attrs(
    incident: Incident, mention_ids: Iterable[str], config: AlertsConfig
) -> AlertAttrs:
    """What routes and silences match on for ``incident`` (``mention_ids``: its evidence,
    whose platforms are its sources)."""
    labels = dict(config.watch_labels.get(incident.watch_id, {}))
    labels.setdefault("drill", "true" if incident.drill else "false")
    return AlertAttrs(
        tier=incident.tier,
        watch=incident.watch_id,
        story=incident.story_id,
        sources=sources_of(mention_ids),
        labels=labels,
    )


async def silencing(
    session: AsyncSession, incident: Incident, config: AlertsConfig, now: datetime
) -> Silence | None:
    """The first active silence that matches the incident as it stands (its tier, watch,
    story, labels and the sources of all its evidence)."""
    mention_ids = await session.scalars(
        select(IncidentEvidence.mention_id).where(IncidentEvidence.incident_id == incident.id)
    )
    return await matching(session, incident_attrs(incident, mention_ids, config), now)
