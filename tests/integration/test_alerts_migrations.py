"""The migrations build exactly the tables alerts/models.py declares (SQLite, PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

import alerts.acklinks
import alerts.templates.models
import alerts.workflow.drills
import alerts.workflow.models
import api.audit
from core.db import Base, make_engine, upgrade_database

# the modules declaring the tables compared (so that this file also runs on its own)
MODEL_MODULES = (
    alerts.acklinks,
    alerts.templates.models,
    alerts.workflow.drills,
    alerts.workflow.models,
    api.audit,
)

ALERT_TABLES = {
    "incidents",
    "incident_events",
    "incident_evidence",
    "alert_deliveries",
    "ack_tokens",
    "alert_silences",
    "alert_step_jobs",
    "response_templates",
    "template_versions",
    "template_usages",
    "audit_log",
    "incident_tier_history",
    "incident_heat",
    "incident_roles",
    "incident_tasks",
    "drills",
    "story_aliases",
}


def _diff(connection: Connection) -> tuple[list[Any], set[str]]:
    def include_object(
        obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        # Other stages' tables (in the database and on Base.metadata) are checked by their
        # own tests; compare ours completely.
        return type_ != "table" or name in ALERT_TABLES

    context = MigrationContext.configure(
        connection,
        opts={"compare_type": True, "include_object": include_object},
    )
    diff = compare_metadata(context, Base.metadata)
    return diff, set(inspect(connection).get_table_names())


async def _check(url: str) -> None:
    engine = make_engine(url)
    try:
        await upgrade_database(engine)
        async with engine.connect() as conn:
            diff, tables = await conn.run_sync(_diff)
    finally:
        await engine.dispose()
    assert tables >= ALERT_TABLES
    assert diff == [], f"models and migrations disagree: {diff}"


async def test_sqlite_schema_matches_models(sqlite_url: str) -> None:
    await _check(sqlite_url)


@pytest.mark.postgres
async def test_postgres_schema_matches_models(pg_url: str) -> None:
    await _check(pg_url)


def test_models_declare_the_alert_tables() -> None:
    assert set(Base.metadata.tables) >= ALERT_TABLES


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_silences_ended_before_0012_count_as_released(
    database: str, sqlite_url: str, pg_url: str
) -> None:
    """The first tick after the upgrade must not alert every incident an old, long-ended
    silence muted; a silence still running releases its incidents when it ends."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select

    from alerts.models import Silence
    from core.db import make_engine, make_sessionmaker, unit_of_work, upgrade_database

    engine = make_engine(sqlite_url if database == "sqlite" else pg_url)
    try:
        await upgrade_database(engine, "0011")
        now = datetime.now(UTC)
        ends = {"ended": now - timedelta(days=3), "running": now + timedelta(hours=2)}
        async with engine.begin() as conn:
            for reason, end in ends.items():
                if database == "sqlite":
                    end = end.replace(tzinfo=None)
                await conn.execute(
                    text(
                        "INSERT INTO alert_silences (matchers, starts_at, ends_at, author, "
                        "reason, created_at) VALUES ('{}', :s, :e, 'ops', :r, :s)"
                    ),
                    {"s": end - timedelta(hours=4), "e": end, "r": reason},
                )
        await upgrade_database(engine)
        async with unit_of_work(make_sessionmaker(engine)) as session:
            rows = {s.reason: s for s in await session.scalars(select(Silence))}
        assert rows["ended"].released_at == rows["ended"].ends_at
        assert rows["running"].released_at is None
    finally:
        await engine.dispose()
