"""alerts: when an ended silence's muted incidents were alerted (``alert_silences.released_at``)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-27

Mirrors ``Silence.released_at`` in ``alerts/models.py``: once a silence has ended, the
alerter's tick alerts the incidents it muted that are still open and unacknowledged, and
sets ``released_at`` (compare-and-set: one alerter does it, once). Silences that ended
before this migration count as released (at their end): the incidents they muted, maybe
long ago, are not all alerted at once by the first tick after the upgrade. Those still
running release theirs when they end.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alert_silences") as batch:
        batch.add_column(sa.Column("released_at", sa.DateTime(timezone=True), nullable=True))
    now = datetime.now(UTC)
    if op.get_bind().dialect.name == "sqlite":  # stored naive, in UTC (core.db.UtcDateTime)
        now = now.replace(tzinfo=None)
    op.execute(
        sa.text("UPDATE alert_silences SET released_at = ends_at WHERE ends_at <= :now").bindparams(
            now=now
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("alert_silences") as batch:
        batch.drop_column("released_at")
