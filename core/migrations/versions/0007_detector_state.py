"""sentiment: detector state (per watch and per story, so a restart or rebalance resumes)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26

Mirrors ``sentiment/detector/statestore.py`` (``tests/unit/test_detector_state.py``
compares them).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "detector_state",
        sa.Column("watch_id", sa.String(255), nullable=False),
        sa.Column("drill", sa.Boolean(), nullable=False),
        sa.Column("format", sa.Integer(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("watch_id", "drill", name="pk_detector_state"),
    )
    op.create_table(
        "detector_story_state",
        sa.Column("watch_id", sa.String(255), nullable=False),
        sa.Column("drill", sa.Boolean(), nullable=False),
        sa.Column("story_id", sa.String(255), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("watch_id", "drill", "story_id", name="pk_detector_story_state"),
    )


def downgrade() -> None:
    op.drop_table("detector_story_state")
    op.drop_table("detector_state")
