"""An unhandled error is logged with the request's path, but never with a credential in it:
on ``/ack/{token}`` the path is the single-use ack token (good for a day), and the log line
handed it to whoever reads the logs. Other paths are logged as they were."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request

from core.clock import ManualClock
from tests.access_support import key_headers, role_app

TOKEN = "17.1767225600.c2VjcmV0LXNpZ25hdHVyZS1vZi10aGUtbGluaw"


async def _answers_500(
    tmp_path: Path, clock: ManualClock, method: str, path: str
) -> httpx.Response:
    _, app = role_app(tmp_path, clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://cw") as client:
            return await client.request(method, path, headers=key_headers("admin"))


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_an_error_on_an_ack_link_logs_the_route_not_the_token(
    method: str,
    tmp_path: Path,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("alerts.acklinks.look_up", broken)
    monkeypatch.setattr("alerts.acklinks.redeem", broken)
    with caplog.at_level(logging.ERROR, logger="api.app"):
        r = await _answers_500(tmp_path, clock, method, f"/ack/{TOKEN}")
    assert r.status_code == 500
    logged = [rec.getMessage() for rec in caplog.records if rec.name == "api.app"]
    assert logged == [f"unhandled error on {method} /ack/{{token}}"]
    assert TOKEN not in caplog.text and TOKEN.split(".")[2] not in caplog.text


async def test_an_error_elsewhere_logs_the_path(
    tmp_path: Path,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("api.audit.incident_state", broken)
    with caplog.at_level(logging.ERROR, logger="api.app"):
        r = await _answers_500(tmp_path, clock, "POST", "/incidents/7/ack")
    assert r.status_code == 500
    logged = [rec.getMessage() for rec in caplog.records if rec.name == "api.app"]
    assert "unhandled error on POST /incidents/7/ack" in logged


def _request(path: str) -> Request:
    return Request(
        {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}
    )


def test_a_path_under_a_secret_route_is_redacted_even_when_no_route_took_it() -> None:
    from api.app import SECRET_PATHS, loggable_path

    assert SECRET_PATHS == ("/ack/{token}",)  # the one route with a credential in its path
    assert loggable_path(_request(f"/ack/{TOKEN}/more")) == "/ack/{token}"
    assert loggable_path(_request(f"/ack/{TOKEN}")) == "/ack/{token}"
    assert loggable_path(_request("/slack/interactions")) == "/slack/interactions"
    assert loggable_path(_request("/acknowledge")) == "/acknowledge"
