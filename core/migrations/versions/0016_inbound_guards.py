"""api: signed requests seen (each acts once) and the shared failed-authentication lockout

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01

Mirrors ``SeenRequest`` in ``api/seen_requests.py`` and ``AuthFailure``/``AuthLockout`` in
``api/auth_lockouts.py`` (a test compares them). ``seen_requests``: the digest of each
signed Slack request taken, kept until its timestamp leaves the accepted window
(``expires_at``, indexed for the pruning). ``auth_failures``: one row per failed
authentication, by client bucket and time; ``auth_lockouts``: one row per locked-out
bucket. Every API replica reads and writes the same rows.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "seen_requests",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("endpoint", sa.String(32), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name="pk_seen_requests"),
    )
    op.create_index("ix_seen_requests_expires_at", "seen_requests", ["expires_at"])
    op.create_table(
        "auth_failures",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("client", sa.String(128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_auth_failures"),
    )
    op.create_index("ix_auth_failures_at", "auth_failures", ["at"])
    op.create_index("ix_auth_failures_client_at", "auth_failures", ["client", "at"])
    op.create_table(
        "auth_lockouts",
        sa.Column("client", sa.String(128), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client", name="pk_auth_lockouts"),
    )
    op.create_index("ix_auth_lockouts_until", "auth_lockouts", ["until"])


def downgrade() -> None:
    op.drop_index("ix_auth_lockouts_until", table_name="auth_lockouts")
    op.drop_table("auth_lockouts")
    op.drop_index("ix_auth_failures_client_at", table_name="auth_failures")
    op.drop_index("ix_auth_failures_at", table_name="auth_failures")
    op.drop_table("auth_failures")
    op.drop_index("ix_seen_requests_expires_at", table_name="seen_requests")
    op.drop_table("seen_requests")
