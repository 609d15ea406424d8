"""``crisiswatch templates seed``: load the starter templates into the database (audited)."""

from __future__ import annotations

import asyncio
import getpass
import os

from sqlalchemy import Connection, inspect

from alerts.templates.models import ResponseTemplate, TemplateVersion
from alerts.templates.seeds import seed_templates
from api import audit
from api.auth import Principal
from core.clock import SystemClock
from core.db import make_engine, make_sessionmaker, unit_of_work

COMMAND = "crisiswatch templates seed"


def cli_principal() -> Principal:
    """Who the audit log says ran the command: ``cli:<the operating-system user>``."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (a bare container)
        user = f"uid-{os.getuid()}"
    return Principal(f"cli:{user}", "cli")


NEEDED_TABLES = (
    ResponseTemplate.__tablename__,
    TemplateVersion.__tablename__,
    audit.AuditEntry.__tablename__,
)


class SchemaMissing(RuntimeError):
    """The database has not been migrated (``crisiswatch db upgrade`` has not run)."""


def missing_tables(connection: Connection) -> list[str]:
    inspector = inspect(connection)
    return [table for table in NEEDED_TABLES if not inspector.has_table(table)]


def seed_templates_blocking(url: str) -> list[str]:
    """Add the starter templates; ``SchemaMissing`` when the database was never migrated."""

    async def run() -> list[str]:
        engine = make_engine(url)
        now = SystemClock().now()
        try:
            async with engine.connect() as connection:
                missing = await connection.run_sync(missing_tables)
            if missing:
                raise SchemaMissing(
                    f"the database has no {', '.join(missing)} table(s): create the schema "
                    "first with 'crisiswatch db upgrade' (same --config; 'crisiswatch run' "
                    "also creates it), then seed"
                )
            async with unit_of_work(make_sessionmaker(engine)) as session:
                added = await seed_templates(session, now)
                if added:
                    audit.record(
                        session, cli_principal(), "template.seed", "template",
                        ",".join(added)[:255], at=now, after={"names": added, "command": COMMAND},
                    )  # fmt: skip
                return added
        finally:
            await engine.dispose()

    return asyncio.run(run())
