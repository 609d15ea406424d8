"""The failed-authentication lockout is shared by every API replica (``api.auth_lockouts``,
migration 0016).

The bug: the count lived in each process, so with N replicas behind a load balancer an
address had N times ``max_failures`` guesses, and a lockout on one replica let the
address go on guessing on the others. Now failures and lockouts are rows in the database
every replica uses; a good key only reads (one row by its key), only failures write.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select, text

from api.auth_lockouts import AuthFailure, AuthLockout
from api.runtime import Runtime
from api.settings import ApiConfig, ApiKeyConfig, AuthThrottleConfig, Settings
from core.clock import ManualClock
from core.settings import DatabaseConfig
from tests.access_support import api_app

GOOD = "good-key-0123456789abcdef"
WRONG = {"X-API-Key": "guess-0123456789abcdef"}
OK = {"X-API-Key": GOOD}
THROTTLE = AuthThrottleConfig(max_failures=3, window_s=60, lockout_s=120)


@asynccontextmanager
async def replica(
    db_url: str, clock: ManualClock, peer: str = "203.0.113.7"
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    """One API process on the database at ``db_url``; its requests come from ``peer``."""
    settings = Settings(
        database=DatabaseConfig(url=db_url),  # type: ignore[arg-type]
        api=ApiConfig(
            keys=[ApiKeyConfig(name="ops", key=GOOD, role="admin")],  # type: ignore[arg-type]
            auth_throttle=THROTTLE,
        ),
    )
    runtime, app = api_app(settings, clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(peer, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://cw") as client:
            yield client, runtime


async def status(client: httpx.AsyncClient, headers: dict[str, str], peer: str = "") -> int:
    if peer:  # the same app, another client address
        transport = httpx.ASGITransport(app=client._transport.app, client=(peer, 50001))  # type: ignore[attr-defined]
        async with httpx.AsyncClient(transport=transport, base_url="http://cw") as other:
            return (await other.get("/audit", headers=headers)).status_code
    return (await client.get("/audit", headers=headers)).status_code


async def test_failures_on_two_replicas_add_up_to_one_lockout(
    db_url: str, clock: ManualClock
) -> None:
    async with replica(db_url, clock) as (a, _), replica(db_url, clock) as (b, runtime_b):
        assert await status(a, WRONG) == 401
        assert await status(b, WRONG) == 401
        assert await status(a, OK) == 200
        assert await status(a, WRONG) == 401  # the third in the minute: locked out
        for client in (a, b):  # on every replica, even with a good key
            answer = await client.get("/audit", headers=OK)
            assert answer.status_code == 429
            assert answer.headers["retry-after"] == "120"
        assert runtime_b.metrics.auth_failures.labels("throttled")._value.get() == 1
        clock.advance(121)
        assert await status(b, OK) == 200
        assert await status(a, OK) == 200


async def test_a_lockout_outlives_the_replica_that_counted_it(
    db_url: str, clock: ManualClock
) -> None:
    async with replica(db_url, clock) as (a, _):
        for _ in range(3):
            assert await status(a, WRONG) == 401
        assert await status(a, OK) == 429
    async with replica(db_url, clock) as (restarted, _):
        assert await status(restarted, OK) == 429
        clock.advance(60)
        answer = await restarted.get("/audit", headers=OK)
        assert answer.status_code == 429 and answer.headers["retry-after"] == "60"


async def test_buckets_are_the_same_across_replicas(db_url: str, clock: ManualClock) -> None:
    """An IPv6 /64 is one bucket whichever replica and address; link-local addresses
    count each on their own; other IPv4 addresses are not touched."""
    async with (
        replica(db_url, clock, "2001:db8:1:2::1") as (a, _),
        replica(db_url, clock, "2001:db8:1:2::2") as (b, _),
    ):
        assert await status(a, WRONG) == 401
        assert await status(b, WRONG) == 401
        assert await status(a, WRONG, peer="2001:db8:1:2:ffff::9") == 401
        assert await status(b, OK) == 429
        assert await status(b, OK, peer="2001:db8:1:3::1") == 200  # another /64
        assert await status(b, OK, peer="198.51.100.1") == 200
        for peer in ("fe80::1", "fe80::2", "fe80::3"):
            assert await status(a, WRONG, peer=peer) == 401
            assert await status(b, WRONG, peer=peer) == 401
        assert await status(a, OK, peer="fe80::4") == 200
        assert await status(a, OK, peer="fe80::1") == 200  # two failures: not yet


async def test_a_good_key_does_not_write(db_url: str, clock: ManualClock) -> None:
    async with replica(db_url, clock) as (a, runtime):
        assert runtime.engine is not None
        statements: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement)

        event.listen(runtime.engine.sync_engine, "before_cursor_execute", seen)
        try:
            assert await status(a, OK) == 200
            ours = [s for s in statements if "auth_" in s]
            assert ours and all(s.lstrip().upper().startswith("SELECT") for s in ours), ours
            statements.clear()
            assert await status(a, WRONG) == 401
            assert any(s.lstrip().upper().startswith("INSERT") for s in statements)
        finally:
            event.remove(runtime.engine.sync_engine, "before_cursor_execute", seen)


async def test_the_tables_stay_bounded(db_url: str, clock: ManualClock) -> None:
    async with replica(db_url, clock) as (a, runtime):
        assert runtime.sessions is not None
        for n in range(20):  # two guesses from each of 20 addresses, then one locked out
            assert await status(a, WRONG, peer=f"192.0.2.{n}") == 401
            assert await status(a, WRONG, peer=f"192.0.2.{n}") == 401
        for _ in range(3):
            await status(a, WRONG, peer="198.51.100.9")
        async with runtime.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(AuthFailure)) == 40
            assert await session.scalar(select(func.count()).select_from(AuthLockout)) == 1
        clock.advance(121)  # past the window and the lockout
        assert await status(a, WRONG, peer="192.0.2.200") == 401
        async with runtime.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(AuthFailure)) == 1
            assert await session.scalar(select(func.count()).select_from(AuthLockout)) == 0


async def test_without_its_tables_the_process_counts_on_its_own(
    sqlite_url: str, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The database not answering the lockout's queries (here: its tables gone) is no 500:
    the process's own count applies, the failure is logged once and counted."""
    async with replica(sqlite_url, clock) as (a, runtime):
        assert runtime.engine is not None
        async with runtime.engine.begin() as conn:
            await conn.execute(text("DROP TABLE auth_failures"))
            await conn.execute(text("DROP TABLE auth_lockouts"))
        assert await status(a, OK) == 200
        for _ in range(3):
            assert await status(a, WRONG) == 401
        assert await status(a, OK) == 429
        errors = runtime.metrics.auth_throttle_db_errors
        assert errors.labels("check")._value.get() >= 1
        assert errors.labels("count")._value.get() == 3
        warned = [r for r in caplog.records if "cannot use the database" in r.getMessage()]
        assert len(warned) == 1
