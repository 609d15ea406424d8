"""Mastodon across reconnects and rate limits: a first run's stream that drops before its
first status still catches up the gap on the next connection (and leaves a cursor for a
restart); a 429, which Mastodon sends without ``Retry-After``, waits for the end of its
window (``X-RateLimit-Reset``, an ISO 8601 time)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from core.metrics import Metrics
from listener.backoff import MIN_SERVER_WAIT_S
from listener.cursors import MemoryCursorStore
from listener.sources.mastodon import MastodonConfig, MastodonSource
from tests.unit.test_source_live import T0, EndingClock, deliver_all

SSE = {"content-type": "text/event-stream"}
PREFIX = "mastodon-m.example"


def status(status_id: str) -> dict[str, Any]:
    return {
        "id": status_id,
        "created_at": "2024-09-09T19:46:02.000Z",
        "content": f"<p>acme {status_id}</p>",
        "account": {"id": "1", "acct": "jane", "url": "https://m.example/@jane"},
    }


async def test_a_first_runs_stream_dropped_before_its_first_status_catches_up_the_gap() -> None:
    """A quiet hashtag on a first run: the stream dropped (a heartbeat timeout) before any
    status came, and status 101 was posted while it reconnected. Was: the source had no
    status id to catch up from, so 101 was never delivered (nor anything posted while the
    listener was down: the cursor stayed empty)."""
    timeline: list[dict[str, str]] = []

    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/api/v1/streaming"):
            return httpx.Response(200, content=b":thump\n\n", headers=SSE)  # then dropped
        params = dict(request.url.params)
        timeline.append(params)
        if params.get("limit") == "1":  # the newest status when the first stream opened
            return httpx.Response(200, json=[status("100")])
        if params.get("min_id") == "100":  # posted while the stream reconnected
            return httpx.Response(200, json=[status("101")])
        return httpx.Response(200, json=[])

    store = MemoryCursorStore()
    config = MastodonConfig(
        instance="https://m.example", access_token="tok", timeline="hashtag", hashtag="acme"
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
        source = MastodonSource(config, http, EndingClock(polls=2), store, Metrics())
        await source.start()
        got = await deliver_all(source)  # two connections, one backoff wait between them
        await source.stop()
    assert [(m.id, m.change) for m in got] == [(f"{PREFIX}:101", "created")]
    assert {"min_id": "100", "limit": "40"} in timeline
    assert store.cursors["mastodon"] == "101"


async def test_a_first_run_leaves_a_cursor_for_a_restart_even_before_its_first_status() -> None:
    """Stopped before any status came: the next start catches up from the newest status
    of the first run's start, instead of starting from now again."""

    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/api/v1/streaming"):
            return httpx.Response(200, content=b":thump\n\n", headers=SSE)
        if request.url.params.get("limit") == "1":
            return httpx.Response(200, json=[status("100")])
        return httpx.Response(200, json=[])

    store = MemoryCursorStore()
    config = MastodonConfig(instance="https://m.example", access_token="tok")
    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
        source = MastodonSource(config, http, EndingClock(polls=1), store, Metrics())
        await source.start()
        assert await deliver_all(source) == []
        await source.stop()
    assert store.cursors["mastodon"] == "100"


RESET = (T0 + timedelta(seconds=240)).isoformat().replace("+00:00", ".019685Z")


@pytest.mark.parametrize("mode", ["stream", "poll"])
@pytest.mark.parametrize(
    ("reset", "wait"),
    [(RESET, 240.0), ("2020-01-01T00:00:00Z", MIN_SERVER_WAIT_S), ("soon", 60.0)],
)
async def test_a_429_waits_for_the_end_of_mastodons_rate_limit_window(
    mode: str, reset: str, wait: float
) -> None:
    """Mastodon answers a used-up limit (300 requests per 5 minutes) with 429 and
    ``X-RateLimit-Reset`` (when the window ends), never ``Retry-After``. Was: a fixed
    60 s wait, which hit the limit again (another 429) until the window ended."""

    def serve(request: httpx.Request) -> httpx.Response:
        headers = {"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0"}
        return httpx.Response(
            429,
            json={"error": "Too many requests"},
            headers={**headers, "X-RateLimit-Reset": reset},
        )

    clock = EndingClock(polls=2)
    config = MastodonConfig(instance="https://m.example", access_token="tok", mode=mode)
    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
        source = MastodonSource(config, http, clock, MemoryCursorStore(), Metrics())
        await source.start()
        assert await deliver_all(source) == []
    assert clock.sleeps == [pytest.approx(wait, abs=0.5)]
    assert source.health.rate_limited >= 1
