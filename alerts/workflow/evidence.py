"""An incident's evidence: representative mentions, the sentiment mix, the heat curve.

Mentions are the ones the detector sent with its Signals (most-followed authors first);
the sentiment mix counts their labels; the heat curve is one point per Signal received
(``HeatSnapshot``), in event time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.models import IncidentEvidence
from alerts.workflow.models import HeatSnapshot
from core.events import LABELS


@dataclass(frozen=True)
class Evidence:
    mentions: list[IncidentEvidence]
    total_mentions: int
    sentiment_mix: dict[str, int]
    heat_curve: list[HeatSnapshot]

    def peak(self) -> dict[str, Any] | None:
        """The heat point with the most mentions in its window."""
        if not self.heat_curve:
            return None
        top = max(self.heat_curve, key=lambda p: int(p.heat.get("mentions_window", 0)))
        return {"at": top.at.isoformat(), "tier": top.tier, **top.heat}


async def collect(session: AsyncSession, incident_id: int, *, limit: int = 10) -> Evidence:
    mentions = (
        await session.scalars(
            select(IncidentEvidence)
            .where(IncidentEvidence.incident_id == incident_id)
            .order_by(IncidentEvidence.followers.desc().nulls_last(), IncidentEvidence.id)
            .limit(limit)
        )
    ).all()
    mix: dict[str, int] = dict.fromkeys(LABELS, 0)
    rows = await session.execute(
        select(IncidentEvidence.label, func.count())
        .where(IncidentEvidence.incident_id == incident_id)
        .group_by(IncidentEvidence.label)
    )
    for label, count in rows:
        mix[str(label)] = int(count)
    curve = (
        await session.scalars(
            select(HeatSnapshot)
            .where(HeatSnapshot.incident_id == incident_id)
            .order_by(HeatSnapshot.at, HeatSnapshot.id)
        )
    ).all()
    return Evidence(list(mentions), sum(mix.values()), mix, list(curve))
