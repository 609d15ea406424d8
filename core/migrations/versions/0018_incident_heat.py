"""alerts: the heat behind an incident's explanation (``incidents.heat``)

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-29

Mirrors ``Incident.heat`` in ``alerts/models.py``: the heat features (and the kind of
signal) behind ``incidents.explanation``, written with it when the incident opens and at
each upgrade. Channels set to another language (``language: zh``) render the explanation
from it, also for the escalations, re-alerts and reminders built long after the signal.
Existing incidents get NULL: their alerts show the stored English explanation. Nullable,
no default: adding it rewrites nothing on PostgreSQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("incidents", sa.Column("heat", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("heat")
