"""listener: the cascade index (which watches a recent mention matched), kept across restarts

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30

Mirrors ``CascadeEntry`` in ``listener/cascade_store.py`` (a test compares them). One row
per matched mention: the watches it matched (JSON) and when it was last used; the index on
``(used_at, mention_id)`` serves the start-up load (most recent first) and the pruning
(least recent first).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "listener_cascade",
        sa.Column("mention_id", sa.String(512), nullable=False),
        sa.Column("watches", sa.Text(), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("mention_id", name="pk_listener_cascade"),
    )
    op.create_index("ix_listener_cascade_used_at", "listener_cascade", ["used_at", "mention_id"])


def downgrade() -> None:
    op.drop_index("ix_listener_cascade_used_at", table_name="listener_cascade")
    op.drop_table("listener_cascade")
