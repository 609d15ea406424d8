"""Inhibition: an open incident of the rule's ``source_tier`` mutes the lower-tier alerts of
its story or watch (``alerts.config.InhibitConfig``).

``inhibitor_of`` is the rule as SQL (an incident is inhibited while such another incident is
live), shared by alerting (``alerts.incidents``: an alert raised then is muted) and by the
playbook task reminders (``alerts.workflow.tasks``: none go while it holds). Once an
inhibiting incident has ended (resolved, closed, merged), the alerter's tick releases it
(``ended``, then ``incidents.release_inhibition``): the incidents it muted that are still
open and unacknowledged are alerted then, as after a silence's end.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.config import InhibitConfig
from alerts.models import FINISHED, Incident


def inhibitor_of(rule: InhibitConfig, other: Any, incident: Any) -> ColumnElement[bool]:
    """``other`` (``Incident`` or an alias of it) inhibits ``incident`` (an ``Incident``
    row, or ``Incident`` itself for a correlated subquery): another live incident of the
    inhibiting tier, of the same story or watch; a drill inhibits only drills (an exercise
    never mutes a real alert). The caller checks that ``incident`` is below
    ``source_tier`` and that the rule is enabled."""
    same = []
    if "story" in rule.equal:
        same.append(other.story_id == incident.story_id)
    if "watch" in rule.equal:
        same.append(other.watch_id == incident.watch_id)
    real = other.drill.is_(False)
    drill = incident.drill  # a row's bool, or a column
    may = (true() if drill else real) if isinstance(drill, bool) else or_(real, drill.is_(True))
    return and_(
        other.id != incident.id,
        other.tier >= rule.source_tier,
        other.status.not_in(FINISHED),
        or_(*same),
        may,
    )


async def ended(session: AsyncSession, rule: InhibitConfig, *, limit: int = 100) -> list[int]:
    """Ids of the incidents of the inhibiting tier (``rule.source_tier`` and above) that
    have ended and whose inhibited incidents were not released (any such ended incident:
    one that inhibited nothing is released at no cost). Those below it inhibit nothing
    (``inhibitor_of``): they are never released, nor read (the partial index
    ``ix_incidents_inhibition_unreleased`` keeps the scan to the unreleased ones)."""
    return list(
        await session.scalars(
            select(Incident.id)
            .where(
                Incident.tier >= rule.source_tier,
                Incident.inhibition_released_at.is_(None),
                Incident.status.in_(FINISHED),
            )
            .order_by(Incident.id)
            .limit(limit)
        )
    )
