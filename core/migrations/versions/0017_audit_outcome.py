"""api: the audit log keeps refused attempts (``outcome``, ``detail``) and is append-only

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02

Mirrors ``AuditEntry`` in ``api/audit.py`` (a test compares them). ``outcome``: ``ok`` for a
change made (every row before this revision), ``forbidden`` (403) or ``conflict`` (409) for
an attempt refused; ``detail``: why it was refused. Triggers refuse any UPDATE or DELETE of
a row (and, on PostgreSQL, a TRUNCATE): the log is evidence, nothing the application does
edits or removes it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MESSAGE = "audit_log is append-only: its entries are never updated nor deleted"


def upgrade() -> None:
    op.add_column(
        "audit_log",
        sa.Column("outcome", sa.String(16), nullable=False, server_default="ok"),
    )
    op.add_column("audit_log", sa.Column("detail", sa.String(500), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{_MESSAGE}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log "
                f"BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION audit_log_append_only()")
    else:
        op.execute("DROP TRIGGER audit_log_no_update")
        op.execute("DROP TRIGGER audit_log_no_delete")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("detail")
        batch.drop_column("outcome")
