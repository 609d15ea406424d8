"""alerting: escalation snapshot, SLA clocks, delivery fallbacks/digests, silences, step jobs

Revision ID: 0002
Revises: 0001_alerts
Create Date: 2026-11-26

Mirrors ``alerts/models.py`` (a test compares them). ``alert_step_jobs`` is APScheduler's
SQLAlchemyJobStore table (escalation steps); the job store only creates it when missing.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001_alerts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("escalation_policy", sa.JSON(), nullable=True))
        batch.add_column(_ts("sla_due_at"))
        batch.add_column(sa.Column("sla_met_by", sa.String(16), nullable=True))
        batch.add_column(_ts("sla_met_at"))
        batch.add_column(sa.Column("sla_warned", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(_ts("sla_breached_at"))
        batch.add_column(_ts("responded_at"))
        batch.create_index(batch.f("ix_incidents_sla_due_at"), ["sla_due_at"])
    with op.batch_alter_table("alert_deliveries") as batch:
        batch.add_column(sa.Column("fallbacks", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("digest_group", sa.String(512), nullable=True))
    op.create_table(
        "alert_silences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("matchers", sa.JSON(), nullable=False),
        _ts("starts_at", nullable=False),
        _ts("ends_at", nullable=False),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        _ts("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_silences")),
    )
    op.create_index(op.f("ix_alert_silences_ends_at"), "alert_silences", ["ends_at"])
    op.create_table(
        "alert_step_jobs",
        sa.Column("id", sa.Unicode(191), nullable=False),
        sa.Column("next_run_time", sa.Float(25), nullable=True),
        sa.Column("job_state", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_step_jobs")),
    )
    op.create_index(op.f("ix_alert_step_jobs_next_run_time"), "alert_step_jobs", ["next_run_time"])


def downgrade() -> None:
    op.drop_table("alert_step_jobs")
    op.drop_table("alert_silences")
    with op.batch_alter_table("alert_deliveries") as batch:
        batch.drop_column("digest_group")
        batch.drop_column("fallbacks")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_index(batch.f("ix_incidents_sla_due_at"))
        for column in (
            "responded_at",
            "sla_breached_at",
            "sla_warned",
            "sla_met_at",
            "sla_met_by",
            "sla_due_at",
            "escalation_policy",
        ):
            batch.drop_column(column)
