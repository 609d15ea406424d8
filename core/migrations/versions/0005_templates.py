"""alerts: response templates, versions, usages; api: audit log

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-26

Mirrors ``alerts/templates/models.py`` and ``api/audit.py``
(``tests/integration/test_alerts_migrations.py`` compares them).
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _who(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.String(255), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "response_templates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("lang", sa.String(16), nullable=False),
        sa.Column("min_tier", sa.Integer(), nullable=False),
        sa.Column("max_tier", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        _who("created_by"),
        _ts("created_at"),
        sa.CheckConstraint("min_tier <= max_tier", name=op.f("ck_response_templates_tiers")),
        sa.CheckConstraint(
            "kind IN ('holding_statement', 'apology', 'fact_clarification', "
            "'rectification', 'private_reply')",
            name=op.f("ck_response_templates_kind"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_response_templates")),
        sa.UniqueConstraint("name", name=op.f("uq_response_templates_name")),
    )
    op.create_index(op.f("ix_response_templates_kind"), "response_templates", ["kind"])
    op.create_table(
        "template_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        _who("created_by"),
        _who("updated_by"),
        _ts("created_at"),
        _ts("updated_at"),
        _who("submitted_by", nullable=True),
        _ts("submitted_at", nullable=True),
        _who("reviewed_by", nullable=True),
        _ts("reviewed_at", nullable=True),
        sa.Column("review_note", sa.Text(), nullable=True),
        _who("retired_by", nullable=True),
        _ts("retired_at", nullable=True),
        sa.CheckConstraint(
            "status IN ('draft', 'in_review', 'approved', 'retired')",
            name=op.f("ck_template_versions_status"),
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["response_templates.id"],
            name=op.f("fk_template_versions_template_id_response_templates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_template_versions")),
        sa.UniqueConstraint(
            "template_id", "number", name=op.f("uq_template_versions_template_id_number")
        ),
    )
    op.create_index(op.f("ix_template_versions_template_id"), "template_versions", ["template_id"])
    op.create_table(
        "template_usages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("version_number", sa.Integer(), nullable=False),
        _who("used_by"),
        _ts("used_at"),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["response_templates.id"],
            name=op.f("fk_template_usages_template_id_response_templates"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["template_versions.id"],
            name=op.f("fk_template_usages_version_id_template_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_template_usages")),
    )
    op.create_index(op.f("ix_template_usages_incident_id"), "template_usages", ["incident_id"])
    op.create_index(op.f("ix_template_usages_template_id"), "template_usages", ["template_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        _ts("at"),
        _who("actor"),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target_type", sa.String(64), nullable=False),
        sa.Column("target_id", sa.String(255), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"])
    op.create_index(op.f("ix_audit_log_actor"), "audit_log", ["actor"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("template_usages")
    op.drop_table("template_versions")
    op.drop_table("response_templates")
