"""Whether the database is at the schema this release expects, for the processes that do
not migrate it themselves: the distributed roles, started after ``crisiswatch db upgrade``.

Without this check a role started on a database nobody migrated (``db upgrade`` forgotten)
said it was up, then failed on every table it touched (the alerter: seven tracebacks every
5 s, its Signals dead-lettered); one started on a database a newer release migrated ran
against a schema it does not know. Both now stop the start-up with one line (exit 3).
"""

from __future__ import annotations

from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import MIGRATIONS_DIR, MigratedByANewerRelease, newer_release_text


class DatabaseNotMigrated(RuntimeError):
    """The database is behind this release's schema (or has none): ``db upgrade`` first."""


def _current_revisions(connection: Connection) -> tuple[str, ...]:
    """What Alembic's ``MigrationContext.get_current_heads`` reads, without its INFO lines
    at every start ("Context impl PostgresqlImpl.")."""
    if not inspect(connection).has_table("alembic_version"):
        return ()
    rows = connection.execute(text("SELECT version_num FROM alembic_version"))
    return tuple(str(revision) for revision in rows.scalars())


async def check_database_revision(engine: AsyncEngine) -> None:
    """Raise ``DatabaseNotMigrated`` or ``MigratedByANewerRelease`` unless the database is
    at this release's newest revision. Errors reaching the database propagate."""
    from alembic.script import ScriptDirectory

    async with engine.connect() as conn:
        current = await conn.run_sync(_current_revisions)
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    heads = script.get_heads()
    if sorted(current) == sorted(heads):
        return
    known = {revision.revision for revision in script.walk_revisions()}
    for revision in current:
        if revision not in known:
            raise MigratedByANewerRelease(newer_release_text(revision))
    url = engine.url
    where = f"{url.database} on {url.host}" if url.host else str(url.database)
    found = f"at revision {', '.join(current)}" if current else "not migrated (no revision)"
    raise DatabaseNotMigrated(
        f"the database ({where}) is {found}; this release needs {', '.join(heads)}: run "
        "'crisiswatch db upgrade' with the same database.url (once per release, before the "
        "processes start)"
    )
