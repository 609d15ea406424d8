"""alerts: page generation of an incident (``incidents.page``)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27

Mirrors ``Incident.page`` in ``alerts/models.py``: an upgrade that reopens an acknowledged
or finished incident starts a new page, whose alerts carry a new ``dedup_key``
(``crisiswatch-incident-<id>-<page>``), so that PagerDuty opens a new alert instead of
folding the trigger into the one it holds as acknowledged. Existing incidents get page 0,
whose key is the one they had (``crisiswatch-incident-<id>``): alerts in flight keep it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("page", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("page")
