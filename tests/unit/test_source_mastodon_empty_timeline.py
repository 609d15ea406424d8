"""Mastodon on a first run whose timeline is empty (a campaign hashtag nobody used yet):
the first statuses posted after the start are delivered. Was: the source had no status id
to catch up from, so the next read took the newest status as its position without
delivering it: every status posted before that read was lost (in poll mode at every
first poll interval; in stream mode those posted while a first connection reconnected)."""

from __future__ import annotations

from typing import Any

import httpx

from core.metrics import Metrics
from listener.cursors import MemoryCursorStore
from listener.sources.mastodon import MastodonConfig, MastodonSource
from tests.unit.test_source_live import EndingClock, deliver_all

SSE = {"content-type": "text/event-stream"}
PREFIX = "mastodon-m.example"


def status(status_id: str) -> dict[str, Any]:
    return {
        "id": status_id,
        "created_at": "2024-09-09T20:29:02.000Z",
        "content": f"<p>acme recall {status_id}</p>",
        "account": {"id": "1", "acct": "jane", "url": "https://m.example/@jane"},
    }


def timeline(posted: list[list[str]]) -> Any:
    """A hashtag timeline that is empty at the first read and then holds the statuses
    of ``posted[n]`` (all of them, oldest first) from the n+1-th read on."""
    reads = 0

    def serve(request: httpx.Request) -> httpx.Response:
        nonlocal reads
        if request.url.path.startswith("/api/v1/streaming"):
            return httpx.Response(200, content=b":thump\n\n", headers=SSE)  # then dropped
        now = posted[min(reads, len(posted) - 1)]
        reads += 1
        params = request.url.params
        if "min_id" in params:
            after = [s for s in now if (len(s), s) > (len(params["min_id"]), params["min_id"])]
            return httpx.Response(200, json=[status(s) for s in reversed(after[:40])])
        return httpx.Response(200, json=[status(s) for s in reversed(now)][:1])

    return serve


async def test_a_first_poll_of_an_empty_timeline_misses_none_of_the_statuses_after_it() -> None:
    posted = [[], ["101", "102", "103"]]
    config = MastodonConfig(
        instance="https://m.example",
        access_token="tok",
        timeline="hashtag",
        hashtag="acme",
        mode="poll",
    )
    store = MemoryCursorStore()
    async with httpx.AsyncClient(transport=httpx.MockTransport(timeline(posted))) as http:
        source = MastodonSource(config, http, EndingClock(polls=3), store, Metrics())
        await source.start()
        got = await deliver_all(source)
        await source.stop()
    assert [m.id for m in got] == [f"{PREFIX}:101", f"{PREFIX}:102", f"{PREFIX}:103"]
    assert store.cursors["mastodon"] == "103"


async def test_a_stream_of_an_empty_timeline_dropped_before_its_first_status() -> None:
    posted = [[], ["101", "102"]]
    config = MastodonConfig(
        instance="https://m.example", access_token="tok", timeline="hashtag", hashtag="acme"
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(timeline(posted))) as http:
        source = MastodonSource(config, http, EndingClock(polls=2), MemoryCursorStore(), Metrics())
        await source.start()
        got = await deliver_all(source)  # two connections, one backoff wait between them
        await source.stop()
    assert [m.id for m in got] == [f"{PREFIX}:101", f"{PREFIX}:102"]


async def test_a_first_read_of_a_timeline_with_statuses_still_starts_after_them() -> None:
    """Only an empty timeline is read from its start: one that holds statuses at the first
    read starts after its newest, as before (they are the backlog, not new)."""
    posted = [["90", "91"], ["90", "91", "101"]]
    config = MastodonConfig(
        instance="https://m.example",
        access_token="tok",
        timeline="hashtag",
        hashtag="acme",
        mode="poll",
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(timeline(posted))) as http:
        source = MastodonSource(config, http, EndingClock(polls=3), MemoryCursorStore(), Metrics())
        await source.start()
        got = await deliver_all(source)
        await source.stop()
    assert [m.id for m in got] == [f"{PREFIX}:101"]
