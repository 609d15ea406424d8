"""alerts: story aliases (a story the detector merged into another)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27

Mirrors ``StoryAlias`` in ``alerts/models.py``: when the detector merges story X into S,
the alerter records X -> S, so that a Signal of X that comes after the merge (another
partition) lands on the incident of S instead of opening one of its own.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "story_aliases",
        sa.Column("watch_id", sa.String(255), primary_key=True),
        sa.Column("story_id", sa.String(255), primary_key=True),
        sa.Column("into_story_id", sa.String(255), nullable=False),
        sa.Column("signal_id", sa.String(255), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("story_aliases")
