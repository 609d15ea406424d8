"""Mastodon instances whose streaming API has a host of its own (``STREAMING_API_BASE_URL``:
mastodon.social, mstdn.jp) answer ``/api/v1/streaming/...`` with a 301 to that host. Was:
the source never followed it ("HTTP 301" on every reconnect, for ever, never polling
either): mastodon.social, the README's example instance, delivered nothing."""

from __future__ import annotations

import json
from typing import Any

import httpx

from core.metrics import Metrics
from listener.cursors import MemoryCursorStore
from listener.sources.mastodon import MastodonConfig, MastodonSource
from tests.unit.test_source_live import EndingClock, deliver_all

SSE = {"content-type": "text/event-stream"}


def status(status_id: str) -> dict[str, Any]:
    return {
        "id": status_id,
        "created_at": "2024-09-09T19:46:02.000Z",
        "content": f"<p>acme {status_id}</p>",
        "account": {"id": "1", "acct": "jane", "url": "https://m.example/@jane"},
    }


def instance(streaming_host: str, seen: list[tuple[str, str, str | None]]) -> httpx.MockTransport:
    """m.example, whose streaming API lives at ``streaming_host`` (which wants the token)."""

    def serve(request: httpx.Request) -> httpx.Response:
        token = request.headers.get("authorization")
        seen.append((request.url.host, request.url.path, token))
        if request.url.host == "m.example" and request.url.path.startswith("/api/v1/streaming"):
            target = request.url.copy_with(scheme=streaming_host.split(":")[0])
            target = target.copy_with(host=streaming_host.split("://")[1])
            return httpx.Response(301, headers={"Location": str(target)})
        if request.url.path.startswith("/api/v1/streaming"):
            if token != "Bearer tok":
                return httpx.Response(401, json={"error": "Error: Missing access token"})
            event = f"event: update\ndata: {json.dumps(status('101'))}\n\n"
            return httpx.Response(200, content=event.encode(), headers=SSE)
        if request.url.params.get("limit") == "1":
            return httpx.Response(200, json=[status("100")])
        return httpx.Response(200, json=[])

    return httpx.MockTransport(serve)


async def test_the_stream_follows_the_instance_to_its_streaming_host_with_the_token() -> None:
    seen: list[tuple[str, str, str | None]] = []
    config = MastodonConfig(instance="https://m.example", access_token="tok")
    transport = instance("https://streaming.m.example", seen)
    async with httpx.AsyncClient(transport=transport, follow_redirects=False) as http:
        source = MastodonSource(config, http, EndingClock(polls=1), MemoryCursorStore(), Metrics())
        await source.start()
        got = await deliver_all(source)
    assert [m.id for m in got] == ["mastodon-m.example:101"]
    assert ("streaming.m.example", "/api/v1/streaming/public", "Bearer tok") in seen
    assert source.health.errors == 0, source.health.last_error


async def test_a_redirect_from_https_to_http_is_not_followed_and_the_timeline_is_polled() -> None:
    """The token never travels in clear: the source polls the timeline instead."""
    seen: list[tuple[str, str, str | None]] = []
    config = MastodonConfig(instance="https://m.example", access_token="tok")
    transport = instance("http://streaming.m.example", seen)
    async with httpx.AsyncClient(transport=transport) as http:
        source = MastodonSource(config, http, EndingClock(polls=2), MemoryCursorStore(), Metrics())
        await source.start()
        await deliver_all(source)
    assert not [s for s in seen if s[0] == "streaming.m.example"]
    assert source.health.last_error is not None
    assert "redirected to http://streaming.m.example/api/v1/streaming/public" in (
        source.health.last_error
    )
    assert source.health.state == "polling"
