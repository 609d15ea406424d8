"""A feed that answers 429 (an RSSHub instance or a site limiting its readers) is counted
as rate-limited, as every other source's 429 is. Was: the feed waited its ``Retry-After``
and counted an error, but ``rate_limited`` (``GET /sources``) and
``crisiswatch_source_rate_limited_total`` stayed at 0: the rate limit did not show."""

from __future__ import annotations

import httpx

from core.metrics import Metrics
from listener.cursors import MemoryCursorStore
from listener.sources.feeds import FeedsConfig, FeedsSource
from tests.unit.test_source_live import FIXTURES, EndingClock, deliver_all


async def test_a_feeds_429_is_counted_as_rate_limited() -> None:
    body = (FIXTURES / "rss/news_rss2.xml").read_bytes()

    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.host == "limited.example":
            return httpx.Response(429, headers={"Retry-After": "900"})
        return httpx.Response(200, content=body, headers={"content-type": "application/rss+xml"})

    config = FeedsConfig.model_validate(
        {
            "feeds": [
                {"url": "https://limited.example/feed.xml"},
                {"url": "https://news.example/feed.xml"},
            ],
            "initial_lookback_minutes": float("inf"),
        }
    )
    metrics = Metrics()
    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
        source = FeedsSource(config, http, EndingClock(polls=2), MemoryCursorStore(), metrics)
        await source.start()
        got = await deliver_all(source)
    assert got  # the other feed goes on
    assert "limited.example/feed.xml" in source.health.failing_targets
    assert source.health.rate_limited == 1
    assert (
        metrics.registry.get_sample_value(
            "crisiswatch_source_rate_limited_total", {"source": "rss"}
        )
        == 1
    )
