"""listener: source cursors (where each live source resumes after a restart)

Revision ID: 0004
Revises: 0001_alerts
Create Date: 2026-11-26

Mirrors ``listener/cursors.py`` (a test compares them).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "source_cursors",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_source_cursors"),
    )


def downgrade() -> None:
    op.drop_table("source_cursors")
