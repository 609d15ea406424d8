"""Request bodies are capped while they arrive (``api.bodylimit``): a declared length over
the cap is refused before anything is read; a chunked body (no ``Content-Length``) is
refused as soon as it passes the cap, unread beyond it, before a signature or key is
checked. The webhook's cap is ``listener.webhook.max_body_bytes``; the API's
``api.max_body_bytes``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.bodylimit import _content_length
from api.runtime import Runtime
from api.settings import ApiConfig, ApiKeyConfig, Settings
from core.clock import ManualClock
from core.settings import DatabaseConfig
from listener.config import ListenerConfig, WatchConfig, WebhookConfig
from listener.webhook import signed_headers
from tests.fakes import FakeClassifier

SECRET = "ingest-secret-0123456789abcdef"
KEY = "pr-key-0123456789abcdef"
WEBHOOK_CAP = 64 * 1024
API_CAP = 16 * 1024


@pytest.fixture
async def client(tmp_path: Path, clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        database=DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'cw.db'}"),
        api=ApiConfig(keys=[ApiKeyConfig(name="pat", key=KEY, role="pr")], max_body_bytes=API_CAP),
        listener=ListenerConfig(
            watches=[WatchConfig(id="acme", brand="Acme", terms=["acme"])],
            webhook=WebhookConfig(enabled=True, secret=SECRET, max_body_bytes=WEBHOOK_CAP),
        ),
    )
    runtime = Runtime(settings, clock=clock, classifier=FakeClassifier(), migrate=True)
    app = create_app(runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cw") as c:
            yield c


class Chunks:
    """A chunked body (no Content-Length) that counts what was taken from it."""

    def __init__(self, chunks: int, size: int = 8192) -> None:
        self.chunks, self.size, self.sent = chunks, size, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.sent += self.size
            yield b"x" * self.size


async def test_a_chunked_unsigned_body_over_the_webhook_cap_is_refused_unread(
    client: httpx.AsyncClient,
) -> None:
    body = Chunks(10_000)  # 80 MB offered
    r = await client.post("/ingest/mentions", content=body)
    assert r.status_code == 413, r.text  # was: read whole, then 401
    assert f"at most {WEBHOOK_CAP} bytes" in r.json()["detail"]
    assert body.sent <= WEBHOOK_CAP + 2 * body.size  # not read beyond the cap


async def test_a_declared_length_over_the_cap_is_refused_before_reading(
    client: httpx.AsyncClient,
) -> None:
    body = b"x" * (WEBHOOK_CAP + 1)
    r = await client.post("/ingest/mentions", content=body)
    assert r.status_code == 413 and f"body is {WEBHOOK_CAP + 1} bytes" in r.json()["detail"]
    r = await client.post(
        "/templates", content=b"{" + b" " * API_CAP + b"}", headers={"X-API-Key": KEY}
    )
    assert r.status_code == 413, r.text


async def test_bodies_within_the_caps_are_served(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    mention = {"id": "bluesky:1", "source": "bluesky", "text": "acme " * 7_000}
    mention["created_at"] = clock.now().isoformat()
    body = json.dumps({"mentions": [mention]}).encode()
    assert API_CAP < len(body) <= WEBHOOK_CAP  # the webhook's cap, not the API's
    r = await client.post(
        "/ingest/mentions", content=body, headers=signed_headers(SECRET, body, clock.now())
    )
    assert r.status_code == 200 and r.json()["published"] == 1, r.text
    chunked = Chunks(1, 100)  # a chunked API body under its cap: the route's own answer
    r = await client.post("/templates", content=chunked, headers={"X-API-Key": KEY})
    assert r.status_code in (400, 422), r.text


async def test_an_api_route_refuses_a_chunked_body_over_its_cap(client: httpx.AsyncClient) -> None:
    body = Chunks(1_000)
    r = await client.post("/templates", content=body, headers={"X-API-Key": KEY})
    assert r.status_code == 413, r.text
    assert body.sent <= API_CAP + 2 * body.size


def test_a_content_length_that_is_not_a_plain_number_is_no_declared_length() -> None:
    for value in (b"\xb2", b"9" * 5000, b"-1", b""):  # int() failed on the first two
        scope = {"type": "http", "headers": [(b"content-length", value)]}
        assert _content_length(scope) is None, value
    assert _content_length({"type": "http", "headers": [(b"content-length", b"12")]}) == 12
