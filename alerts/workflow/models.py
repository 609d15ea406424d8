"""Tables of the incident workflow (created by ``core/migrations/versions/0006_workflow.py``;
``tests/integration/test_alerts_migrations.py`` compares the two)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, get_args

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from alerts.config import IncidentRoleName
from core.db import Base, UtcDateTime

# roles people take on an incident
INCIDENT_ROLES: Final[tuple[str, ...]] = get_args(IncidentRoleName)

# task status
TASK_OPEN: Final = "open"
TASK_DONE: Final = "done"
TASK_SKIPPED: Final = "skipped"
TASK_CANCELLED: Final = "cancelled"  # its incident was merged into another
TASK_STATUSES: Final = (TASK_OPEN, TASK_DONE, TASK_SKIPPED, TASK_CANCELLED)


class TierChange(Base):
    """One line of an incident's tier history: opened at a tier, or raised to one."""

    __tablename__ = "incident_tier_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    from_tier: Mapped[int] = mapped_column(Integer)
    tier: Mapped[int] = mapped_column(Integer)
    signal_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    actor: Mapped[str] = mapped_column(String(255))


class HeatSnapshot(Base):
    """The heat features of one Signal the incident received (the heat curve's points).

    ``story_id`` says whose story it measured: after a merge the survivor holds both."""

    __tablename__ = "incident_heat"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    story_id: Mapped[str] = mapped_column(String(255))
    signal_id: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(UtcDateTime, doc="the signal's event time")
    tier: Mapped[int] = mapped_column(Integer)
    heat: Mapped[dict[str, Any]] = mapped_column(JSON)


class IncidentRole(Base):
    """Who holds a role on an incident (one person per role)."""

    __tablename__ = "incident_roles"
    __table_args__ = (UniqueConstraint("incident_id", "role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(32))
    person: Mapped[str] = mapped_column(String(255))
    assigned_by: Mapped[str] = mapped_column(String(255))
    assigned_at: Mapped[datetime] = mapped_column(UtcDateTime)


class IncidentTask(Base):
    """A task of the tier's playbook, due by the tier's SLA; ``next_reminder_at`` is when
    the owning team is reminded next (None: no reminder left)."""

    __tablename__ = "incident_tasks"
    __table_args__ = (
        UniqueConstraint("incident_id", "key"),
        Index("ix_incident_tasks_reminders", "status", "next_reminder_at"),
        CheckConstraint("status IN ('open', 'done', 'skipped', 'cancelled')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(300))
    tier: Mapped[int] = mapped_column(Integer)
    team: Mapped[str] = mapped_column(String(255), doc="the team reminded")
    owner_role: Mapped[str | None] = mapped_column(String(32), nullable=True)
    completed_by_response: Mapped[str | None] = mapped_column(String(16), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=TASK_OPEN)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    reminders: Mapped[list[float]] = mapped_column(
        JSON, doc="seconds before the due time to remind at (0: at the due time)"
    )
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0)
    next_reminder_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    finished_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
