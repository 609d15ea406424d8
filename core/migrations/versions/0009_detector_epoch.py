"""sentiment: detector state ownership epoch (fences a detector that lost its watches)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27

Mirrors ``DetectorStateRow.epoch`` in ``sentiment/detector/statestore.py``: every load
of a watch claims it (epoch + 1); a save writes only while its epoch is still the one
stored. Rows written before the upgrade start at 0 (their next load claims them).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("detector_state") as batch:
        batch.add_column(sa.Column("epoch", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("detector_state") as batch:
        batch.drop_column("epoch")
