"""alerts: incident workflow (mitigating/closed, merge, tier history, heat, roles, tasks, drills)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26

Mirrors ``alerts/models.py`` and ``alerts/workflow/models.py``
(``tests/integration/test_alerts_migrations.py`` compares them).
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = "status IN ('open', 'acknowledged', 'resolved')"
NEW_STATUSES = "status IN ('open', 'acknowledged', 'mitigating', 'resolved', 'closed')"


def _ts(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _incident_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["incident_id"],
        ["incidents.id"],
        name=op.f(f"fk_{table}_incident_id_incidents"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_constraint(op.f("ck_incidents_status"), type_="check")
        batch.create_check_constraint(op.f("ck_incidents_status"), NEW_STATUSES)
        batch.add_column(_ts("closed_at", nullable=True))
        batch.add_column(sa.Column("closed_by", sa.String(255), nullable=True))
        batch.add_column(sa.Column("merged_into_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_incidents_merged_into_id_incidents"),
            "incidents",
            ["merged_into_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.create_table(
        "incident_tier_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        _ts("at"),
        sa.Column("from_tier", sa.Integer(), nullable=False),
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("signal_id", sa.String(255), nullable=True),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_tier_history")),
        _incident_fk("incident_tier_history"),
    )
    op.create_index(
        op.f("ix_incident_tier_history_incident_id"), "incident_tier_history", ["incident_id"]
    )
    op.create_table(
        "incident_heat",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("story_id", sa.String(255), nullable=False),
        sa.Column("signal_id", sa.String(255), nullable=False),
        _ts("at"),
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("heat", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_heat")),
        _incident_fk("incident_heat"),
    )
    op.create_index(op.f("ix_incident_heat_incident_id"), "incident_heat", ["incident_id"])
    op.create_table(
        "incident_roles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("person", sa.String(255), nullable=False),
        sa.Column("assigned_by", sa.String(255), nullable=False),
        _ts("assigned_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_roles")),
        _incident_fk("incident_roles"),
        sa.UniqueConstraint("incident_id", "role", name=op.f("uq_incident_roles_incident_id_role")),
    )
    op.create_table(
        "incident_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("team", sa.String(255), nullable=False),
        sa.Column("owner_role", sa.String(32), nullable=True),
        sa.Column("completed_by_response", sa.String(16), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("created_at"),
        _ts("due_at"),
        sa.Column("reminders", sa.JSON(), nullable=False),
        sa.Column("reminders_sent", sa.Integer(), nullable=False),
        _ts("next_reminder_at", nullable=True),
        _ts("finished_at", nullable=True),
        sa.Column("finished_by", sa.String(255), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_tasks")),
        _incident_fk("incident_tasks"),
        sa.UniqueConstraint("incident_id", "key", name=op.f("uq_incident_tasks_incident_id_key")),
        sa.CheckConstraint(
            "status IN ('open', 'done', 'skipped', 'cancelled')",
            name=op.f("ck_incident_tasks_status"),
        ),
    )
    op.create_index("ix_incident_tasks_reminders", "incident_tasks", ["status", "next_reminder_at"])
    op.create_table(
        "drills",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scenario", sa.String(64), nullable=False),
        sa.Column("watch_id", sa.String(255), nullable=False),
        sa.Column("story_root", sa.String(512), nullable=False),
        sa.Column("mentions", sa.Integer(), nullable=False),
        _ts("first_mention_at"),
        _ts("started_at"),
        sa.Column("started_by", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drills")),
    )


def downgrade() -> None:
    op.drop_table("drills")
    op.drop_table("incident_tasks")
    op.drop_table("incident_roles")
    op.drop_table("incident_heat")
    op.drop_table("incident_tier_history")
    # the old status check refuses the new statuses: each becomes its nearest old one
    op.execute("UPDATE incidents SET status = 'acknowledged' WHERE status = 'mitigating'")
    op.execute(
        "UPDATE incidents SET status = 'resolved', resolved_at = COALESCE(resolved_at, "
        "closed_at), resolved_by = COALESCE(resolved_by, closed_by) WHERE status = 'closed'"
    )
    with op.batch_alter_table("incidents") as batch:
        batch.drop_constraint(op.f("fk_incidents_merged_into_id_incidents"), type_="foreignkey")
        batch.drop_column("merged_into_id")
        batch.drop_column("closed_by")
        batch.drop_column("closed_at")
        batch.drop_constraint(op.f("ck_incidents_status"), type_="check")
        batch.create_check_constraint(op.f("ck_incidents_status"), OLD_STATUSES)
