"""Reddit: a wait for ``X-Ratelimit-Reset`` (the budget used up) is logged and counted.

The client waited silently (up to the reset, minutes): a backfill's progress or the live
listener paused with nothing said."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from core.clock import ManualClock
from core.metrics import Metrics
from listener.cursors import MemoryCursorStore
from listener.sources.reddit import RedditConfig, RedditSource

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources" / "reddit"
CONFIG = {
    "client_id": "cid",
    "client_secret": "csecret-123",
    "user_agent": "server:crisiswatch-test:1.0 (by /u/tester)",
    "searches": ["acme"],
}


class SleepRecorder(ManualClock):
    def __init__(self) -> None:
        super().__init__(datetime(2024, 9, 9, 20, 30, tzinfo=UTC))
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)


async def test_a_wait_for_the_rate_limit_reset_is_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/access_token":
            return httpx.Response(
                200, json=json.loads((FIXTURES / "access_token.json").read_text("utf-8"))
            )
        if "after" in request.url.params:  # page 2: nothing older
            return httpx.Response(200, json={"kind": "Listing", "data": {"children": []}})
        listing = json.loads((FIXTURES / "listing_search_new.json").read_text("utf-8"))
        spent = {"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "42", "X-Ratelimit-Used": "100"}
        return httpx.Response(200, json=listing, headers=spent)

    clock, metrics = SleepRecorder(), Metrics()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
        reddit = RedditSource(
            RedditConfig.model_validate(CONFIG), http, clock, MemoryCursorStore(), metrics
        )
        with caplog.at_level(logging.INFO, logger="listener.sources.reddit"):
            got = await reddit.search("acme", datetime(2024, 9, 1, tzinfo=UTC))
    assert [m.id for m in got] == ["reddit:t3_1fcz0aa", "reddit:t3_1fcz1bb"]  # oldest first
    assert clock.sleeps == [42]
    waits = [r for r in caplog.records if "rate limit used up" in r.getMessage()]
    assert len(waits) == 1
    assert waits[0].levelno >= logging.INFO
    assert waits[0].getMessage() == (
        "source reddit: rate limit used up (X-Ratelimit-Remaining 0); waiting 42 s for its "
        "reset (X-Ratelimit-Reset) before the next request"
    )
    assert (
        metrics.registry.get_sample_value(
            "crisiswatch_source_rate_limited_total", {"source": "reddit"}
        )
        == 1
    )
