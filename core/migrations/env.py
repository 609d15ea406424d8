"""Alembic environment: runs on the connection handed in by ``core.db.upgrade_database``
(or ``downgrade_database``)."""

from __future__ import annotations

from alembic import context

from core.db import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `crisiswatch db upgrade` (core.db.upgrade_database)")

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
with context.begin_transaction():
    context.run_migrations()
    if sqlite:
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:  # raising here rolls the whole migration back
            raise RuntimeError(f"the migration left broken references: {broken[:10]}")
