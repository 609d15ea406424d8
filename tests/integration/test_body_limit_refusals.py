"""A body refused for its size (``api.bodylimit``, a 413) is counted as other refusals are,
``crisiswatch_inbound_refused_total{endpoint, reason="too_large"}`` by route family (never
the raw path), and logged at a rate an operator can read."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.bodylimit import RefusalLog, route_families
from api.runtime import Runtime
from api.settings import ApiConfig, ApiKeyConfig, Settings
from core.clock import ManualClock
from core.settings import DatabaseConfig
from listener.config import ListenerConfig, WatchConfig, WebhookConfig
from tests.fakes import FakeClassifier

KEY = "pr-key-0123456789abcdef"
CAP = 4096


@pytest.fixture
async def runtime(tmp_path: Path, clock: ManualClock) -> Runtime:
    settings = Settings(
        database=DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'cw.db'}"),
        api=ApiConfig(keys=[ApiKeyConfig(name="pat", key=KEY, role="pr")], max_body_bytes=CAP),
        listener=ListenerConfig(
            watches=[WatchConfig(id="acme", brand="Acme", terms=["acme"])],
            webhook=WebhookConfig(
                enabled=True, secret="ingest-secret-0123456789abcdef", max_body_bytes=CAP
            ),
        ),
    )
    return Runtime(settings, clock=clock, classifier=FakeClassifier(), migrate=True)


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cw") as c:
            yield c


async def chunks(n: int, size: int = 1024) -> AsyncIterator[bytes]:
    for _ in range(n):
        yield b"x" * size


def refused(runtime: Runtime, endpoint: str) -> float:
    value = runtime.metrics.registry.get_sample_value(
        "crisiswatch_inbound_refused_total", {"endpoint": endpoint, "reason": "too_large"}
    )
    return value or 0.0


async def test_a_refused_body_is_counted_by_route_family(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    big = b"x" * (CAP + 1)
    assert (await client.post("/ingest/mentions", content=big)).status_code == 413
    r = await client.post("/templates", content=chunks(10), headers={"X-API-Key": KEY})
    assert r.status_code == 413  # sent past the cap, no Content-Length
    r = await client.post("/incidents/7/notes", content=big, headers={"X-API-Key": KEY})
    assert r.status_code == 413
    for n in range(3):  # made-up paths: one label value for all of them
        assert (await client.post(f"/x{n}/{'y' * 300}", content=big)).status_code == 413
    assert refused(runtime, "ingest") == 1
    assert refused(runtime, "templates") == 1
    assert refused(runtime, "incidents") == 1
    assert refused(runtime, "other") == 3
    exposed = (await client.get("/metrics")).text
    assert "yyyy" not in exposed and 'endpoint="x0"' not in exposed


async def test_a_flood_of_refused_bodies_is_one_log_line(
    client: httpx.AsyncClient, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="api.bodylimit")
    for _ in range(40):
        assert (await client.post("/ingest/mentions", content=b"x" * CAP * 2)).status_code == 413
    assert refused(runtime, "ingest") == 40
    lines = [r.getMessage() for r in caplog.records if r.name == "api.bodylimit"]
    assert len(lines) == 1, lines
    assert "413" in lines[0] and "ingest" in lines[0] and f"{CAP * 2} bytes" in lines[0]


def test_refusals_are_summed_up_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="api.bodylimit")
    now = [0.0]
    refusals = RefusalLog(interval_s=60, monotonic=lambda: now[0])
    refusals.refused("ingest", CAP, "9000", "10.0.0.1")
    for second in range(1, 60):
        now[0] = second
        refusals.refused("ingest" if second % 2 else "templates", CAP, None, "10.0.0.2")
    assert len(caplog.records) == 1
    now[0] = 61
    refusals.refused("slack", CAP, None, "10.0.0.3")
    assert len(caplog.records) == 2
    summary = caplog.records[1].getMessage()
    assert "60 request(s)" in summary and "in the last 61 s" in summary
    assert "ingest: 30, slack: 1, templates: 29" in summary


def test_route_families_are_the_apps_first_segments() -> None:
    endpoint_of = route_families(["/incidents/{incident_id}/ack", "/ingest/mentions", "/", "/{x}"])
    assert endpoint_of("/incidents/7/ack") == "incidents"
    assert endpoint_of("/ingest/mentions") == "ingest"
    assert endpoint_of("/") == endpoint_of("/7") == endpoint_of("/%7B") == "other"
