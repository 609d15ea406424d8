"""A signed Slack request acts at most once (``api.seen_requests``, migration 0016).

The bug: requests were signed and refused beyond five minutes, but a captured click sent
again within its five minutes acted again: an "Acknowledge" replayed after the incident
was reopened acknowledged the reopened incident. Now every request that acts is
remembered in the database (shared by every API replica, kept across restarts) until its
timestamp is out of the window, and a second one is refused with 401, logged and counted.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from alerts.models import OPEN, Incident
from api.app import create_app
from api.runtime import Role, Runtime
from api.seen_requests import SeenRequest, first_use
from api.settings import Settings, SlackAppConfig
from core.clock import ManualClock
from core.db import make_engine, make_sessionmaker, unit_of_work, upgrade_database
from core.settings import DatabaseConfig
from tests.integration.test_acklinks import (
    SLACK_SECRET,
    click,
    new_incident,
    slack_request,
    status_of,
)
from tests.support import schema_diff

Api = tuple[httpx.AsyncClient, Runtime]


@asynccontextmanager
async def replica(db_url: str, clock: ManualClock) -> AsyncIterator[Api]:
    """One API process with the Slack app set up, on the database at ``db_url``."""
    settings = Settings(
        database=DatabaseConfig(url=db_url),  # type: ignore[arg-type]
        slack_app=SlackAppConfig(signing_secret=SLACK_SECRET),  # type: ignore[arg-type]
    )
    runtime = Runtime(settings, clock=clock, migrate=True, roles=frozenset({Role.API}))
    app = create_app(runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cw") as client:
            yield client, runtime


async def reopen(runtime: Runtime, incident_id: int) -> None:
    """The incident open again, its ack cleared (what a tier upgrade's reopen leaves)."""
    assert runtime.sessions is not None
    async with unit_of_work(runtime.sessions) as session:
        await session.execute(
            update(Incident)
            .where(Incident.id == incident_id)
            .values(status=OPEN, acked_by=None, acked_at=None, resolved_at=None)
        )


async def post(client: httpx.AsyncClient, sent: tuple[bytes, dict[str, str]]) -> httpx.Response:
    body, headers = sent
    return await client.post("/slack/interactions", content=body, headers=headers)


def replays(runtime: Runtime) -> float:
    value: Any = runtime.metrics.inbound_refused.labels("slack", "replay")._value.get()
    return float(value)


async def test_a_replayed_ack_does_not_acknowledge_the_reopened_incident(
    db_url: str, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with replica(db_url, clock) as (client, runtime):
        incident_id = await new_incident(runtime, clock)
        ack = slack_request(click("crisiswatch_ack", incident_id), int(clock.now().timestamp()))
        assert (await post(client, ack)).status_code == 200
        assert await status_of(runtime, incident_id) == ("acknowledged", "slack:alice")
        await reopen(runtime, incident_id)
        clock.advance(120)  # still inside the request's five minutes
        with caplog.at_level(logging.WARNING, logger="api.routers.slack"):
            answer = await post(client, ack)
        assert answer.status_code == 401
        assert "already taken" in answer.json()["detail"]
        assert await status_of(runtime, incident_id) == ("open", None)
        assert replays(runtime) == 1
        assert "sent again" in caplog.text
        # a new click (a new timestamp, a new signature) still acts
        fresh = slack_request(click("crisiswatch_ack", incident_id), int(clock.now().timestamp()))
        assert (await post(client, fresh)).status_code == 200
        assert await status_of(runtime, incident_id) == ("acknowledged", "slack:alice")


async def test_a_click_its_incident_refused_is_spent_too(db_url: str, clock: ManualClock) -> None:
    """An ack refused (409: the incident is resolved) and replayed once the incident is
    open again must not acknowledge it: the request is remembered before it acts."""
    async with replica(db_url, clock) as (client, runtime):
        incident_id = await new_incident(runtime, clock)
        now = int(clock.now().timestamp())
        resolve = slack_request(click("crisiswatch_resolve", incident_id), now)
        assert (await post(client, resolve)).status_code == 200
        late = slack_request(click("crisiswatch_ack", incident_id), now + 1)
        assert (await post(client, late)).status_code == 409
        await reopen(runtime, incident_id)
        assert (await post(client, late)).status_code == 401
        assert await status_of(runtime, incident_id) == ("open", None)


async def test_a_replay_is_refused_by_another_replica_and_after_a_restart(
    db_url: str, clock: ManualClock
) -> None:
    async with replica(db_url, clock) as (first, runtime):
        incident_id = await new_incident(runtime, clock)
        ack = slack_request(click("crisiswatch_ack", incident_id), int(clock.now().timestamp()))
        assert (await post(first, ack)).status_code == 200
        await reopen(runtime, incident_id)
        async with replica(db_url, clock) as (second, other):
            assert (await post(second, ack)).status_code == 401
            assert replays(other) == 1
    async with replica(db_url, clock) as (restarted, runtime):
        assert (await post(restarted, ack)).status_code == 401
        assert await status_of(runtime, incident_id) == ("open", None)


async def test_signatures_are_forgotten_once_their_window_has_passed(
    db_url: str, clock: ManualClock
) -> None:
    async with replica(db_url, clock) as (client, runtime):
        assert runtime.sessions is not None
        incident_id = await new_incident(runtime, clock)
        for _ in range(5):
            now = int(clock.now().timestamp())
            sent = slack_request(click("crisiswatch_ack", incident_id), now)
            assert (await post(client, sent)).status_code in (200, 409)
            clock.advance(10)
        async with runtime.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(SeenRequest)) == 5
        clock.advance(301)  # past the five minutes of every one of them
        now = int(clock.now().timestamp())
        sent = slack_request(click("crisiswatch_resolve", incident_id), now)
        assert (await post(client, sent)).status_code == 200
        async with runtime.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(SeenRequest)) == 1
        # and a request that old is refused by its timestamp, not let through as unseen
        stale = slack_request(click("crisiswatch_ack", incident_id), now - 400)
        assert (await post(client, stale)).status_code == 401


async def test_first_use_remembers_each_signature_once(db_url: str) -> None:
    engine = make_engine(db_url)
    await upgrade_database(engine)
    try:
        sessions = make_sessionmaker(engine)
        t0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
        until = t0 + timedelta(minutes=5)
        assert await first_use(sessions, "slack", "v0=aa", now=t0, expires_at=until)
        assert not await first_use(sessions, "slack", "v0=aa", now=t0, expires_at=until)
        assert await first_use(sessions, "slack", "v0=bb", now=t0, expires_at=until)
        assert await first_use(sessions, "other", "v0=aa", now=t0, expires_at=until)
    finally:
        await engine.dispose()


async def test_schema_matches_the_models(db_url: str) -> None:
    from api.auth_lockouts import AuthFailure, AuthLockout

    tables = {SeenRequest.__tablename__, AuthFailure.__tablename__, AuthLockout.__tablename__}
    diff = await schema_diff(db_url, tables)
    assert diff == [], f"models and migrations disagree: {diff}"


async def test_migration_0016_up_and_down(db_url: str) -> None:
    from sqlalchemy import inspect, text
    from sqlalchemy.engine import Connection

    from core.db import downgrade_database

    ours = {"seen_requests", "auth_failures", "auth_lockouts"}

    def tables(connection: Connection) -> set[str]:
        return set(inspect(connection).get_table_names())

    engine = make_engine(db_url)
    try:
        await upgrade_database(engine, "0015")
        async with engine.connect() as conn:
            assert not ours & await conn.run_sync(tables)
        await upgrade_database(engine, "0016")
        async with engine.connect() as conn:
            assert ours <= await conn.run_sync(tables)
            assert await conn.scalar(text("SELECT version_num FROM alembic_version")) == "0016"
        await downgrade_database(engine, "0015")
        async with engine.connect() as conn:
            assert not ours & await conn.run_sync(tables)
        await upgrade_database(engine)
    finally:
        await engine.dispose()
