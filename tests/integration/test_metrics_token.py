"""``api.metrics_token``: every process's ``GET /metrics`` behind a bearer token of its own.

Unset (the default), ``/metrics`` is open as before; set, it answers 401 without the token
or with a wrong one (a wrong one counts toward the address's lockout, like an unknown API
key), while ``/healthz`` and ``/readyz`` stay open for the probes. The role processes
(``crisiswatch scorer``, ``detector``...) serve the same routes: checked in process for
each role and as real processes reading the token from the environment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from alerts.config import AlertsConfig
from api.app import create_app
from api.runtime import Role, Runtime
from api.settings import (
    ApiConfig,
    ApiKeyConfig,
    AuthThrottleConfig,
    ConfigError,
    Settings,
    load_settings,
)
from core.clock import ManualClock
from core.db import upgrade_database_blocking
from core.settings import BusConfig, DatabaseConfig
from tests.access_support import api_app, served
from tests.fakes import FakeClassifier
from tests.fixtures.tansu import free_port
from tests.process_support import Processes, RoleProcess, child_env, write_config

TOKEN = "metrics-token-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"
ENV = "CRISISWATCH_API__METRICS_TOKEN"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def settings(tmp_path: Path, token: str | None, **api: object) -> Settings:
    return Settings(
        database=DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'metrics.db'}"),
        api=ApiConfig.model_validate(
            {
                "keys": [ApiKeyConfig(name="boss", key=ADMIN_KEY, role="admin")],
                "metrics_token": token,
                **api,
            }
        ),
        alerts=AlertsConfig(),
    )


@asynccontextmanager
async def api_process(
    tmp_path: Path, clock: ManualClock, token: str | None, **api: object
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    """The API role, started (database migrated), behind an in-process client."""
    async with served(*api_app(settings(tmp_path, token, **api), clock)) as both:
        yield both


def failures(runtime: Runtime, reason: str) -> float:
    value = runtime.metrics.registry.get_sample_value(
        "crisiswatch_auth_failures_total", {"reason": reason}
    )
    return value or 0.0


async def test_unset_metrics_are_open_as_before(tmp_path: Path, clock: ManualClock) -> None:
    async with api_process(tmp_path, clock, None) as (client, runtime):
        assert runtime.settings.api.metrics_token is None
        r = await client.get("/metrics")
        assert r.status_code == 200 and "crisiswatch_incidents_open" in r.text
        # a token nobody asked for is not checked
        assert (await client.get("/metrics", headers=bearer("anything"))).status_code == 200
        assert failures(runtime, "missing") == failures(runtime, "wrong_metrics_token") == 0


async def test_set_token_is_needed_and_probes_stay_open(tmp_path: Path, clock: ManualClock) -> None:
    async with api_process(tmp_path, clock, TOKEN) as (client, runtime):
        r = await client.get("/metrics")
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["detail"] == (
            "/metrics needs the metrics token (api.metrics_token): "
            "send 'Authorization: Bearer <token>'"
        )
        for wrong in (
            bearer("not-the-metrics-token-0123"),
            bearer(TOKEN[:-1]),
            bearer(TOKEN + "x"),
            bearer(ADMIN_KEY),  # an API key, even an admin's, is not the metrics token
            {"X-API-Key": TOKEN},  # only the Authorization header carries it
            {"Authorization": f"Basic {TOKEN}"},
        ):
            r = await client.get("/metrics", headers=wrong)
            assert r.status_code == 401, wrong
            assert r.headers["www-authenticate"] == "Bearer"
            assert "metrics token" in r.json()["detail"]
            assert TOKEN not in r.text
        r = await client.get("/metrics", headers=bearer(TOKEN))
        assert r.status_code == 200 and "crisiswatch_incidents_open" in r.text
        assert r.headers["content-type"].startswith("text/plain")
        r = await client.get("/metrics", headers={"authorization": f"bearer  {TOKEN} "})
        assert r.status_code == 200  # the scheme's case and surrounding spaces do not matter
        assert 'crisiswatch_auth_failures_total{reason="wrong_metrics_token"} 4.0' in r.text
        assert failures(runtime, "missing") == 3  # none, X-API-Key only, Basic
        # the probes and the API's own keys are untouched
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert (await client.get("/readyz")).status_code == 200
        r = await client.get("/incidents", headers=bearer(ADMIN_KEY))
        assert r.status_code == 200
        assert (await client.get("/incidents", headers=bearer(TOKEN))).status_code == 401


async def test_wrong_tokens_share_the_api_keys_lockout(tmp_path: Path, clock: ManualClock) -> None:
    throttle = {"auth_throttle": AuthThrottleConfig(max_failures=3, window_s=60, lockout_s=120)}
    async with api_process(tmp_path, clock, TOKEN, **throttle) as (client, runtime):
        for _ in range(5):  # missing is not a guess: never locks out
            assert (await client.get("/metrics")).status_code == 401
        assert (
            await client.get("/incidents", headers=bearer("guess-0123456789abcdef"))
        ).status_code == 401
        for _ in range(2):
            r = await client.get("/metrics", headers=bearer("guess-0123456789abcdef"))
            assert r.status_code == 401
        # the third failure from this address: locked out, even with the right token
        r = await client.get("/metrics", headers=bearer(TOKEN))
        assert r.status_code == 429 and r.headers["retry-after"] == "120"
        assert "too many failed authentications" in r.json()["detail"]
        assert (await client.get("/incidents", headers=bearer(ADMIN_KEY))).status_code == 429
        assert (await client.get("/healthz")).status_code == 200  # probes are never locked
        assert (await client.get("/readyz")).status_code == 200
        clock.advance(121)
        assert (await client.get("/metrics", headers=bearer(TOKEN))).status_code == 200
        assert failures(runtime, "throttled") == 2
        assert failures(runtime, "wrong_metrics_token") == 2
        assert failures(runtime, "unknown_key") == 1


@pytest.mark.parametrize("role", [Role.LISTENER, Role.SCORER, Role.DETECTOR, Role.ALERTER])
async def test_each_role_process_serves_metrics_behind_the_token(
    role: Role, tmp_path: Path
) -> None:
    """The app a role process serves (``crisiswatch <role>``), not started: its routes."""
    for token in (TOKEN, None):
        runtime = Runtime(
            settings(tmp_path, token), roles=frozenset({role}), classifier=FakeClassifier()
        )
        app = create_app(runtime)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cw") as client:
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).status_code == 503  # not started: open
            if token is None:
                assert (await client.get("/metrics")).status_code == 200
                continue
            r = await client.get("/metrics")
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            r = await client.get("/metrics", headers=bearer("wrong-token-0123456789"))
            assert r.status_code == 401 and r.json()["detail"] == "wrong metrics token"
            r = await client.get("/metrics", headers=bearer(TOKEN))
            assert r.status_code == 200 and "crisiswatch_auth_failures_total" in r.text


@pytest.mark.parametrize("role", ["detector", "alerter"])
def test_a_role_process_reads_the_token_from_its_environment(
    role: str, procs: Processes, tmp_path: Path, kafka_config: BusConfig
) -> None:
    """``crisiswatch <role>`` as deploy/ runs it (on Kafka: a role command refuses the
    in-process bus): the token only in the environment (with the trailing newline a
    Secret made from a file may carry)."""
    bus = {
        "kind": "kafka",
        "bootstrap_servers": kafka_config.bootstrap_servers,
        "topic_prefix": kafka_config.topic_prefix,
        "partitions": kafka_config.partitions,
    }
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'role.db'}"
    upgrade_database_blocking(db_url)  # `crisiswatch db upgrade`, before the processes
    config = write_config(tmp_path / "crisiswatch.yaml", {"database": {"url": db_url}, "bus": bus})
    port = free_port()
    argv = [sys.executable, "-m", "api.cli", role, "--config", str(config), "--port", str(port)]
    process = RoleProcess(procs.add(role, argv, child_env({ENV: f"{TOKEN}\n"})), port)
    process.start()  # waits for /readyz 200: open
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    r = httpx.get(f"{base}/metrics", timeout=5)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{base}/metrics", headers=bearer("x" * 20), timeout=5).status_code == 401
    r = httpx.get(f"{base}/metrics", headers=bearer(TOKEN), timeout=5)
    assert r.status_code == 200 and "crisiswatch_auth_failures_total" in r.text


def _no_crisiswatch_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("CRISISWATCH_")]:
        monkeypatch.delenv(key)


def test_the_token_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_crisiswatch_env(monkeypatch)
    assert load_settings().api.metrics_token is None  # the default: /metrics open
    monkeypatch.setenv(ENV, f"  {TOKEN}\n")
    token = load_settings().api.metrics_token
    assert token is not None and token.get_secret_value() == TOKEN  # whitespace dropped
    assert TOKEN not in repr(load_settings().api)
    for bad, why in (
        ("short-token", "at least 16 characters"),
        ("metrics token with spaces", "printable ASCII without spaces"),
        ("metrics-token-é-0123456789", "printable ASCII without spaces"),
    ):
        monkeypatch.setenv(ENV, bad)
        with pytest.raises(ConfigError, match=r"api\.metrics_token") as refused:
            load_settings()
        assert why in str(refused.value) and bad not in str(refused.value)


def test_the_token_is_read_from_the_config_file_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_crisiswatch_env(monkeypatch)
    config = write_config(tmp_path / "c.yaml", {"api": {"metrics_token": TOKEN}})
    token = load_settings(config).api.metrics_token
    assert token is not None and token.get_secret_value() == TOKEN
