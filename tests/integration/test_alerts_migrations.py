"""The migrations build exactly the tables alerts/models.py declares (SQLite, PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
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
