"""Crisis drills: the record of a drill and its measurement against the response plan.

A drill's synthetic mentions (``api.drills``) go through the real pipeline marked as a
drill, so the detector opens a drill incident (its own story, never mixed with real ones;
alerts say DRILL). ``measure`` reads what happened to it: detection time (event time from
the scenario's first post to the signal that opened the incident), time to the first alert
delivered (wall time from the drill's start: the posts are dated in the past, so detection
cannot show a backed-up pipeline or channels that deliver nothing), time to acknowledge
(from the open, or from its last reopen for an incident reopened, as the incident report
counts it: ``incidents.episode_start``) and time to the first approved statement (a
template use: only approved versions can be used), each against its target, and lists the
gaps.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Integer, String, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from alerts import incidents
from alerts.config import AlertsConfig
from alerts.models import Incident, IncidentEvent
from alerts.workflow.models import HeatSnapshot
from core.db import Base, UtcDateTime

# the plan: a detected risk reaches the responsible people within 10 minutes
DETECTION_TARGET: Final = timedelta(minutes=10)


class Drill(Base):
    __tablename__ = "drills"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scenario: Mapped[str] = mapped_column(String(64))
    watch_id: Mapped[str] = mapped_column(String(255))
    story_root: Mapped[str] = mapped_column(String(512), doc="the scenario's first post")
    mentions: Mapped[int] = mapped_column(Integer)
    first_mention_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_by: Mapped[str] = mapped_column(String(255))


class DrillNotFound(LookupError):
    def __init__(self, drill_id: int) -> None:
        super().__init__(f"drill {drill_id} does not exist")
        self.drill_id = drill_id
        """The id looked up (the API's answer names it, not the request's text)."""


async def get_drill(session: AsyncSession, drill_id: int) -> Drill:
    drill = await session.get(Drill, drill_id)
    if drill is None:
        raise DrillNotFound(drill_id)
    return drill


async def list_drills(
    session: AsyncSession,
    *,
    watches: Collection[str] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Drill], int]:
    """A page of drills, newest first, and the total (``watches``: only theirs)."""
    scope = [] if watches is None else [Drill.watch_id.in_(sorted(watches))]
    total = await session.scalar(select(func.count()).select_from(Drill).where(*scope))
    items = await session.scalars(
        select(Drill).where(*scope).order_by(Drill.id.desc()).limit(limit).offset(offset)
    )
    return list(items), int(total or 0)


async def _survivor(session: AsyncSession, incident: Incident) -> Incident:
    """The incident the drill was worked on: a merged one's heat curve and timeline moved
    to its survivor, and the ack and statements happened there."""
    seen = {incident.id}
    while incident.merged_into_id is not None and incident.merged_into_id not in seen:
        survivor = await session.get(Incident, incident.merged_into_id)
        if survivor is None:
            break
        seen.add(survivor.id)
        incident = survivor
    return incident


def _measured(name: str, took: timedelta | None, target: timedelta | None) -> dict[str, Any]:
    seconds = round(took.total_seconds(), 1) if took is not None else None
    limit = target.total_seconds() if target is not None else None
    if took is None:
        verdict = "not done"
    elif target is None:
        verdict = "no target"
    else:
        verdict = "met" if took <= target else "missed"
    return {"what": name, "seconds": seconds, "target_seconds": limit, "verdict": verdict}


async def measure(
    session: AsyncSession, drill: Drill, config: AlertsConfig, now: datetime
) -> dict[str, Any]:
    """The drill report (JSON-ready): measurements, targets, gaps."""
    incident = await session.scalar(
        select(Incident)
        .where(
            Incident.drill.is_(True),
            Incident.watch_id == drill.watch_id,
            Incident.story_id.endswith(drill.story_root),
        )
        .order_by(Incident.id)
        .limit(1)
    )
    report: dict[str, Any] = {
        "drill": {
            "id": drill.id,
            "scenario": drill.scenario,
            "watch_id": drill.watch_id,
            "mentions": drill.mentions,
            "started_at": drill.started_at.isoformat(),
            "started_by": drill.started_by,
        },
        "incident_id": None,
        "tier": None,
        "measurements": [],
        "gaps": [],
    }
    if incident is None:
        report["gaps"] = [f"not detected: no drill incident for the scenario at {now.isoformat()}"]
        return report
    # the drill's own incident, and the one it was worked on (a merge's survivor): a
    # survivor can be an older incident (another drill's), whose heat, ack and statements
    # came before this drill; only this drill's story and what followed its open count
    own = incident
    incident = await _survivor(session, own)
    detected_at = await session.scalar(
        select(func.min(HeatSnapshot.at)).where(
            HeatSnapshot.incident_id.in_({own.id, incident.id}),
            HeatSnapshot.story_id == own.story_id,
        )
    )
    statement_at = await session.scalar(
        select(func.min(IncidentEvent.at)).where(
            IncidentEvent.incident_id.in_({own.id, incident.id}),
            IncidentEvent.kind == "template_used",
            IncidentEvent.at >= own.opened_at,
        )
    )
    # wall time, from the drill's start: its posts are dated in the past, so detection (in
    # event time) cannot show a pipeline that is backed up, nor channels that deliver nothing
    delivered_at = await session.scalar(
        select(func.min(IncidentEvent.at)).where(
            IncidentEvent.incident_id.in_({own.id, incident.id}),
            IncidentEvent.kind == "alert_delivered",
            IncidentEvent.at >= own.opened_at,
        )
    )
    acked: timedelta | None = None
    if own.acked_at is not None:
        acked = own.acked_at - await incidents.episode_start(session, own)
    elif incident.acked_at is not None and incident.acked_at >= own.opened_at:
        acked = incident.acked_at - own.opened_at
    sla = config.sla.get(incident.tier)
    ack_target = sla.target if sla is not None and sla.met_by == "acknowledged" else None
    statement_target = sla.target if sla is not None else None
    measurements = [
        _measured(
            "detection (first post to the signal)",
            detected_at - drill.first_mention_at if detected_at else None,
            DETECTION_TARGET,
        ),
        _measured(
            "alert delivered (drill start to the first alert sent)",
            delivered_at - drill.started_at if delivered_at else None,
            DETECTION_TARGET,
        ),
        _measured(
            "acknowledgement",
            acked,
            ack_target,
        ),
        _measured(
            "approved statement (first template use)",
            statement_at - own.opened_at if statement_at else None,
            statement_target,
        ),
    ]
    report.update(
        incident_id=incident.id,
        tier=incident.tier,
        measurements=measurements,
        gaps=[
            f"{m['what']}: {m['verdict']}"
            + (f" ({m['seconds']:g} s, target {m['target_seconds']:g} s)" if m["seconds"] else "")
            for m in measurements
            if m["verdict"] in ("missed", "not done")
        ],
    )
    return report


def markdown(report: dict[str, Any]) -> str:
    drill = report["drill"]
    out = [
        f"# DRILL report {drill['id']}: {drill['scenario']}",
        "",
        f"Watch {drill['watch_id']}, {drill['mentions']} synthetic mentions, started "
        f"{drill['started_at']} by {drill['started_by']}; incident "
        f"{report['incident_id'] or '-'} (tier {report['tier'] or '-'}).",
        "",
        "| measurement | took (s) | target (s) | verdict |",
        "|---|---|---|---|",
    ]
    out += [
        f"| {m['what']} | {m['seconds'] if m['seconds'] is not None else '-'} "
        f"| {m['target_seconds'] if m['target_seconds'] is not None else '-'} "
        f"| **{m['verdict']}** |"
        for m in report["measurements"]
    ]
    out += ["", "## Gaps", ""]
    out += [f"- {gap}" for gap in report["gaps"]] or ["- none"]
    return "\n".join(out) + "\n"
