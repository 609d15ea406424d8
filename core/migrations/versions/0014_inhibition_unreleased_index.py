"""alerts: a partial index of the incidents whose inhibition was not released

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29

Mirrors ``ix_incidents_inhibition_unreleased`` in ``alerts/models.py``: the alerter's tick
looks for the ended incidents of the inhibiting tier (``InhibitConfig.source_tier`` and
above) whose inhibited incidents were not released yet (``alerts.inhibition.ended``). Once
released, an incident leaves the index, so the scan reads the live incidents and the few
ended ones still to release, not every incident that ever ended. ``tier`` leads: ended
incidents below the inhibiting tier are never released (they inhibit nothing) and stay in
the index, skipped by the range on ``tier``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNRELEASED = sa.text("inhibition_released_at IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_incidents_inhibition_unreleased",
        "incidents",
        ["tier", "id"],
        postgresql_where=UNRELEASED,
        sqlite_where=UNRELEASED,
    )


def downgrade() -> None:
    op.drop_index("ix_incidents_inhibition_unreleased", table_name="incidents")
