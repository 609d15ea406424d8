"""alerts: incidents, incident timeline and evidence, delivery outbox

Revision ID: 0001_alerts
Revises:
Create Date: 2026-01-05

Mirrors ``alerts/models.py`` (a test compares them). Constraint names are spelled out so
they are identical on SQLite and PostgreSQL and match ``core.db.NAMING_CONVENTION``.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001_alerts"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("watch_id", sa.String(255), nullable=False),
        sa.Column("story_id", sa.String(255), nullable=False),
        sa.Column("brand", sa.String(255), nullable=False),
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("spread", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=False),
        _ts("opened_at"),
        _ts("updated_at"),
        _ts("alerted_at"),
        _ts("acked_at", nullable=True),
        sa.Column("acked_by", sa.String(255), nullable=True),
        _ts("resolved_at", nullable=True),
        sa.Column("resolved_by", sa.String(255), nullable=True),
        sa.Column("escalation_level", sa.Integer(), nullable=False),
        sa.Column("escalation_token", sa.String(36), nullable=False),
        _ts("next_escalation_at", nullable=True),
        _ts("first_trigger_received_at", nullable=True),
        sa.Column("drill", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
        sa.UniqueConstraint("watch_id", "story_id", name=op.f("uq_incidents_watch_id_story_id")),
        sa.CheckConstraint(
            "status IN ('open', 'acknowledged', 'resolved')", name=op.f("ck_incidents_status")
        ),
    )
    op.create_index(op.f("ix_incidents_status"), "incidents", ["status"])
    op.create_index(op.f("ix_incidents_next_escalation_at"), "incidents", ["next_escalation_at"])

    op.create_table(
        "incident_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        _ts("at"),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("signal_id", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_events")),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_events_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("signal_id", name=op.f("uq_incident_events_signal_id")),
    )
    op.create_index(op.f("ix_incident_events_incident_id"), "incident_events", ["incident_id"])

    op.create_table(
        "incident_evidence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("mention_id", sa.String(512), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("author", sa.String(255), nullable=True),
        sa.Column("followers", sa.BigInteger(), nullable=True),
        _ts("created_at"),
        sa.Column("label", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_evidence")),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_evidence_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "incident_id", "mention_id", name=op.f("uq_incident_evidence_incident_id_mention_id")
        ),
    )

    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(255), nullable=False),
        sa.Column("channel_type", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("next_attempt_at", nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _ts("created_at"),
        _ts("sent_at", nullable=True),
        _ts("trigger_received_at", nullable=True),
        sa.Column("dedupe_key", sa.String(512), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_deliveries")),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_alert_deliveries_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_alert_deliveries_dedupe_key")),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'failed', 'cancelled')",
            name=op.f("ck_alert_deliveries_status"),
        ),
    )
    op.create_index(op.f("ix_alert_deliveries_incident_id"), "alert_deliveries", ["incident_id"])
    op.create_index(
        op.f("ix_alert_deliveries_due"), "alert_deliveries", ["status", "next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_table("alert_deliveries")
    op.drop_table("incident_evidence")
    op.drop_table("incident_events")
    op.drop_index(op.f("ix_incidents_next_escalation_at"), table_name="incidents")
    op.drop_index(op.f("ix_incidents_status"), table_name="incidents")
    op.drop_table("incidents")
