"""The alerts stage's tables: incidents, their timeline and evidence, and the delivery outbox.

The schema is created by ``core/migrations/versions/0001_alerts.py`` and ``0002_alerting.py``
(escalation snapshot, SLA clocks, delivery fallbacks and digests, silences, the escalation
job store); a test compares the two (``tests/integration/test_alerts_migrations.py``).
Relationships are ``lazy="raise"``: load what you need explicitly (``selectinload``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    Unicode,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, UtcDateTime

# incident status
OPEN: Final = "open"
ACKNOWLEDGED: Final = "acknowledged"
MITIGATING: Final = "mitigating"
RESOLVED: Final = "resolved"
CLOSED: Final = "closed"
INCIDENT_STATUSES: Final = (OPEN, ACKNOWLEDGED, MITIGATING, RESOLVED, CLOSED)
FINISHED: Final = (RESOLVED, CLOSED)  # nothing is alerted, escalated or reminded any more

# delivery status
PENDING: Final = "pending"
SENT: Final = "sent"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"  # an escalation made moot by an ack/resolve before it went out
DELIVERY_STATUSES: Final = (PENDING, SENT, FAILED, CANCELLED)

# timeline event kinds
EVENT_KINDS: Final = (
    "opened",
    "upgraded",
    "signal",
    "alert_queued",
    "alert_delivered",
    "alert_failed",
    "acknowledged",
    "escalated",
    "resolved",
    "note",
    "escalation_started",
    "escalation_skipped",
    "inhibited",
    "silenced",
    "unsilenced",  # the silence that muted it ended: alerted then (incidents.release_silence)
    "uninhibited",  # the incident that inhibited it ended: alerted then (release_inhibition)
    "held",
    "alert_fallback",
    "responded",
    "sla_warning",
    "sla_breached",
    # the incident workflow (alerts.workflow)
    "mitigating",
    "closed",
    "tier_changed",
    "role_assigned",
    "role_unassigned",
    "task_created",
    "task_updated",
    "task_reminder",
    "merged_into",
    "merged_from",
    "story_merged",  # the detector found the incident's story part of another
    "template_used",
)

# Reasons of follow-up deliveries (an ack/resolve mirrored to the channels that got it).
ACK_REASON: Final = "ack"
RESOLVE_REASON: Final = "resolve"
FOLLOW_UP_REASONS: Final = (ACK_REASON, RESOLVE_REASON)


class Incident(Base):
    """One crisis story of one watch, from the first tiered signal until it is resolved."""

    __tablename__ = "incidents"
    __table_args__ = (
        UniqueConstraint("watch_id", "story_id"),
        CheckConstraint(
            "status IN ('open', 'acknowledged', 'mitigating', 'resolved', 'closed')",
            name="status",
        ),
        # the ended incidents still to release (``inhibition.ended``, each tick): live
        # ones and those below the inhibiting tier (never released: they inhibit nothing)
        Index(
            "ix_incidents_inhibition_unreleased",
            "tier",
            "id",
            postgresql_where=text("inhibition_released_at IS NULL"),
            sqlite_where=text("inhibition_released_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    watch_id: Mapped[str] = mapped_column(String(255))
    story_id: Mapped[str] = mapped_column(String(255))
    brand: Mapped[str] = mapped_column(String(255), default="")
    tier: Mapped[int] = mapped_column(Integer)
    spread: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default=OPEN, index=True)
    title: Mapped[str] = mapped_column(String(300))
    explanation: Mapped[str] = mapped_column(Text, default="")
    heat: Mapped[dict[str, Any] | None] = mapped_column(
        JSON,
        nullable=True,
        doc="the heat behind ``explanation`` (the Signal's heat features and kind, set with "
        "it at the open and each upgrade): channels in another language render the "
        "explanation from it; None before migration 0018 and for self-alerts (they show "
        "the English explanation)",
    )
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    alerted_at: Mapped[datetime] = mapped_column(
        UtcDateTime, doc="start of the current ack clock: opened, or last upgraded"
    )
    acked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    acked_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    escalation_token: Mapped[str] = mapped_column(String(36))
    next_escalation_at: Mapped[datetime | None] = mapped_column(
        UtcDateTime, nullable=True, index=True
    )
    first_trigger_received_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    drill: Mapped[bool] = mapped_column(Boolean, default=False)
    escalation_policy: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, nullable=True, doc="the policy and routed teams, copied when escalation starts"
    )
    sla_due_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True, index=True)
    sla_met_by: Mapped[str | None] = mapped_column(String(16), nullable=True)
    sla_met_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    sla_warned: Mapped[int] = mapped_column(Integer, default=0, doc="warnings already given")
    sla_breached_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    responded_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    closed_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    page: Mapped[int] = mapped_column(
        Integer,
        default=0,
        server_default="0",
        doc="page generation: bumped when an upgrade reopens an acknowledged or finished "
        "incident, or raises one whose page a channel keyed per incident (PagerDuty) "
        "holds, so that it pages again at the new tier (AlertMessage.dedup_key)",
    )
    merged_into_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"),
        nullable=True,
        doc="set when this incident was merged into another (it is closed then)",
    )
    inhibition_released_at: Mapped[datetime | None] = mapped_column(
        UtcDateTime,
        nullable=True,
        doc="when the alerter, after this incident ended (resolved, closed, merged), alerted "
        "the open incidents it had inhibited (None: not yet, or it is live again); "
        "incidents.release_inhibition",
    )

    timeline: Mapped[list[IncidentEvent]] = relationship(
        back_populates="incident",
        lazy="raise",
        order_by="(IncidentEvent.at, IncidentEvent.id)",
    )
    evidence: Mapped[list[IncidentEvidence]] = relationship(
        back_populates="incident", lazy="raise", order_by="IncidentEvidence.id"
    )
    deliveries: Mapped[list[Delivery]] = relationship(
        back_populates="incident", lazy="raise", order_by="Delivery.id"
    )


class IncidentEvent(Base):
    """One line of an incident's timeline. ``signal_id`` marks a Signal as applied."""

    __tablename__ = "incident_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(255))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    signal_id: Mapped[str | None] = mapped_column(String(255), nullable=True, unique=True)

    incident: Mapped[Incident] = relationship(back_populates="timeline", lazy="raise")


class StoryAlias(Base):
    """A story the detector merged into another (``Signal.merged_into``): a Signal of the
    merged story that comes late (the Signals of two stories travel on two partitions)
    finds the incident of the story it is part of."""

    __tablename__ = "story_aliases"

    watch_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    story_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    into_story_id: Mapped[str] = mapped_column(String(255))
    signal_id: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class IncidentEvidence(Base):
    """A representative mention of the incident's story, as the detector sent it."""

    __tablename__ = "incident_evidence"
    __table_args__ = (UniqueConstraint("incident_id", "mention_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    mention_id: Mapped[str] = mapped_column(String(512))
    url: Mapped[str | None] = mapped_column(Text, nullable=True)
    text: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str | None] = mapped_column(String(255), nullable=True)
    followers: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    label: Mapped[str] = mapped_column(String(16))

    incident: Mapped[Incident] = relationship(back_populates="evidence", lazy="raise")


class Delivery(Base):
    """The outbox: one row per (incident, tier, channel, reason); every attempt updates it.

    ``dedupe_key`` makes queueing idempotent: a redelivered signal or a repeated escalation
    round can never queue the same alert twice. ``last_error`` never contains secrets.
    """

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        Index("ix_alert_deliveries_due", "status", "next_attempt_at"),
        CheckConstraint("status IN ('pending', 'sent', 'failed', 'cancelled')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    tier: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(255))
    channel_type: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    trigger_received_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    dedupe_key: Mapped[str] = mapped_column(String(512), unique=True)
    fallbacks: Mapped[list[str] | None] = mapped_column(
        JSON, nullable=True, doc="the next channels to use when this one keeps failing"
    )
    digest_group: Mapped[str | None] = mapped_column(
        String(512), nullable=True, doc="due rows of one channel and group go as one digest"
    )
    first_failed_at: Mapped[datetime | None] = mapped_column(
        UtcDateTime,
        nullable=True,
        doc="its first failed attempt: alerts.delivery.give_up_after counts from here",
    )

    incident: Mapped[Incident] = relationship(back_populates="deliveries", lazy="raise")


class Silence(Base):
    """Alerts matching ``matchers`` (the routes' matcher fields) are not sent until
    ``ends_at``. Created through the API with an author and a reason. ``released_at``:
    when the alerter, after the end, alerted the open incidents it had muted (None: not
    yet; ``incidents.release_silence``)."""

    __tablename__ = "alert_silences"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    matchers: Mapped[dict[str, Any]] = mapped_column(JSON)
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    author: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    released_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


# APScheduler's SQLAlchemyJobStore table for escalation steps (the job store creates it
# only when missing; declared here so that the migrations create it and the test checks it).
STEP_JOBS_TABLE: Final = "alert_step_jobs"
step_jobs = Table(
    STEP_JOBS_TABLE,
    Base.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)
