"""alerts: ack_tokens (signed, single-use acknowledge links)

Revision ID: 0003
Revises: 0001_alerts
Create Date: 2026-11-26

Mirrors ``alerts/acklinks.py`` (``tests/integration/test_acklinks.py`` compares them).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ack_tokens",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("recipient", sa.String(255), nullable=False),
        sa.Column("channel", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_by", sa.String(255), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_ack_tokens_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ack_tokens")),
    )
    op.create_index(op.f("ix_ack_tokens_incident_id"), "ack_tokens", ["incident_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_ack_tokens_incident_id"), table_name="ack_tokens")
    op.drop_table("ack_tokens")
