"""alerts: when an ended incident's inhibited ones were alerted (incidents.inhibition_released_at)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-28

Mirrors ``Incident.inhibition_released_at`` in ``alerts/models.py``: once an incident has
ended (resolved, closed, merged), the alerter's tick alerts the lower-tier incidents it
inhibited that are still open and unacknowledged, and sets ``inhibition_released_at``
(compare-and-set: one alerter does it, once; an upgrade that reopens the incident clears
it). Incidents that ended before this migration count as released (at their end): the
incidents they inhibited, maybe long ago, are not all alerted at once by the first tick
after the upgrade. Those still live release theirs when they end.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(
            sa.Column("inhibition_released_at", sa.DateTime(timezone=True), nullable=True)
        )
    op.execute(
        "UPDATE incidents SET inhibition_released_at = COALESCE(resolved_at, closed_at, "
        "updated_at) WHERE status IN ('resolved', 'closed')"
    )


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("inhibition_released_at")
