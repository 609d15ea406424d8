"""alerts: when a delivery first failed (``alerts.delivery.give_up_after`` counts from it)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27

The age of a failing delivery cannot be taken from ``created_at``: a row held by quiet
hours or a group wait is created hours before its first attempt.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alert_deliveries") as batch:
        batch.add_column(sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=True))
    # a row already failing at the upgrade gets it at its next failure


def downgrade() -> None:
    with op.batch_alter_table("alert_deliveries") as batch:
        batch.drop_column("first_failed_at")
