"""Alembic environment: runs on the connection handed in by ``core.db.upgrade_database``
(or ``downgrade_database``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from core.db import Base

config = context.config
handed = config.attributes.get("connection")
if not isinstance(handed, Connection):
    raise RuntimeError("run migrations through `crisiswatch db upgrade` (core.db.upgrade_database)")
connection: Connection = handed

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
sqlite = connection.dialect.name == "sqlite"
if sqlite and connection.exec_driver_sql("PRAGMA foreign_keys").scalar() != 0:
    raise RuntimeError(
        "SQLite migrations need foreign keys off (a table rebuild would cascade its drop "
        "into the tables that refer to it): run them through core.db.upgrade_database "
        "or downgrade_database"
    )


def _broken_references() -> set[tuple[object, ...]]:
    return {tuple(row) for row in connection.exec_driver_sql("PRAGMA foreign_key_check")}


before = _broken_references() if sqlite else set()
with context.begin_transaction():
    context.run_migrations()
    if sqlite:  # core.db rolls every revision of this run back when this raises
        new = _broken_references() - before
        if new:
            raise RuntimeError(
                f"the migration would leave {len(new)} broken reference(s) "
                f"(table, rowid, parent, constraint): {sorted(new, key=str)[:10]}"
            )
