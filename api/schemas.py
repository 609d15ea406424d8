"""Response bodies of the incidents API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from alerts.models import IncidentEvent
from alerts.timeline import category

T = TypeVar("T")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class IncidentOut(_Out):
    id: int
    story_id: str
    watch_id: str
    brand: str
    tier: int
    spread: int
    status: str
    title: str
    explanation: str
    opened_at: datetime
    updated_at: datetime
    acked_at: datetime | None
    acked_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    escalation_level: int
    next_escalation_at: datetime | None
    drill: bool
    sla_due_at: datetime | None = Field(
        None, description="the tier's response deadline (SLA); null when it has no SLA"
    )
    sla_met_by: str | None = Field(
        None, description="what stops the SLA clock: acknowledged, responded or resolved"
    )
    sla_met_at: datetime | None = Field(None, description="when the deadline was met")
    sla_breached_at: datetime | None = Field(None, description="when the deadline was missed")
    closed_at: datetime | None = None
    closed_by: str | None = None
    merged_into_id: int | None = None


class MutedByInhibition(BaseModel):
    """The incident's alerts are held by an inhibition: an open incident of the
    inhibiting tier (``alerts.inhibit``) for the same story or watch."""

    by: Literal["inhibition"] = "inhibition"
    since: datetime = Field(description="when its alert was muted (the `inhibited` event)")
    incident_id: int | None = Field(description="the inhibiting incident")
    incident_tier: int | None = Field(description="its tier (null: it no longer exists)")
    incident_status: str | None = Field(description="its status (null: it no longer exists)")
    ended: bool = Field(
        description="the inhibiting incident has ended (resolved, closed, merged): the "
        "alerter's next tick sends the held alerts (`uninhibited`)"
    )


class MutedBySilence(BaseModel):
    """The incident's alerts are held by a silence (``POST /silences``)."""

    by: Literal["silence"] = "silence"
    since: datetime = Field(description="when its alert was muted (the `silenced` event)")
    silence_id: int | None = Field(description="the silence")
    reason: str | None = Field(description="the silence's reason (null: it no longer exists)")
    author: str | None = Field(description="who created it")
    until: datetime | None = Field(description="when it ends (`ends_at`)")
    ended: bool = Field(
        description="the silence is over (or was expired): the alerter's next tick sends "
        "the held alerts (`unsilenced`)"
    )


class MutedByQuietHours(BaseModel):
    """The incident's alert waits for the end of the quiet hours (``alerts.quiet_hours``;
    the `held` event): it goes out then, as one digest per channel. Unlike an inhibition
    or a silence this keeps the incident's deadline: its escalation and SLA clock start at
    ``until`` (``sla_due_at`` counts from then), and an ack does not stop the held alerts
    (the teams still learn what happened)."""

    by: Literal["quiet_hours"] = "quiet_hours"
    since: datetime = Field(description="when its alert was held (the `held` event)")
    until: datetime = Field(description="when the quiet hours end and the held alerts go out")
    teams: list[str] = Field(description="the teams the held alerts are for")
    channels: list[str] = Field(description="the channels whose alerts wait")
    ended: bool = Field(
        description="the quiet hours are over: the alerter's next run sends the held alerts"
    )


Muted = Annotated[MutedByInhibition | MutedBySilence | MutedByQuietHours, Field(discriminator="by")]


class IncidentView(IncidentOut):
    """An incident as ``GET /incidents`` lists it and ``GET /incidents/{id}`` reads it:
    its fields and, read-only, why its alerts are held back (``muted``)."""

    muted: Muted | None = Field(
        None,
        description="what holds the incident's alerts (and with them its escalation and, "
        "when muted as it was raised, its SLA clock) back now: an inhibition by another "
        "incident, a silence, or quiet hours (its alerts, escalation and SLA clock start "
        "when they end); null when nothing does",
    )


class TimelineEventOut(_Out):
    """One timeline event: the same fields whether ``GET /incidents/{id}`` embeds it or
    ``GET /incidents/{id}/timeline`` pages it (``TimelineItemOut``), both made by ``of``,
    so a client that pages back and merges the two lists sees one shape."""

    id: int = Field(description="the event's id (a page and the embedded list share it)")
    at: datetime
    kind: str
    category: str = Field(description="the kind's category (`?category=` of the timeline)")
    actor: str
    detail: dict[str, Any]

    @classmethod
    def of(cls, event: IncidentEvent) -> Self:
        return cls(
            id=event.id,
            at=event.at,
            kind=event.kind,
            category=category(event.kind),
            actor=event.actor,
            detail=event.detail,
        )


class EvidenceOut(_Out):
    mention_id: str
    url: str | None
    text: str
    author: str | None
    followers: int | None
    created_at: datetime
    label: str


class DeliveryOut(_Out):
    id: int
    channel: str
    channel_type: str
    reason: str
    status: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    last_error: str | None


class IncidentPages(BaseModel):
    """Where each list is paged in full (``Page``: ``?limit=`` up to 500, ``?offset=``),
    in the order the incident embeds it: its embedded items are the last
    ``<list>_total - len(<list>)`` onwards."""

    timeline: str = Field(description="GET: the whole timeline, in time order")
    evidence: str = Field(description="GET: every evidence mention, oldest first")
    deliveries: str = Field(description="GET: every delivery, oldest first")


class IncidentDetail(IncidentView):
    """The incident with the newest items of its timeline, evidence and deliveries (at
    most ``?limit=`` of each, oldest first), the count of each and where to page the rest:
    a days-long incident has tens of thousands of each."""

    timeline: list[TimelineEventOut] = Field(description="the newest events, in time order")
    evidence: list[EvidenceOut] = Field(description="the newest mentions kept, oldest first")
    deliveries: list[DeliveryOut] = Field(description="the newest deliveries, oldest first")
    timeline_total: int = Field(description="events in the whole timeline")
    evidence_total: int = Field(description="evidence mentions in all")
    deliveries_total: int = Field(description="deliveries in all")
    pages: IncidentPages


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # the length constraint also makes pydantic refuse a lone surrogate (422): stored, it
    # made the incident's timeline unreadable (every GET a 500)
    note: str | None = Field(None, max_length=4000)
