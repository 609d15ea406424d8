"""The sources against what the platforms document of their limits and feeds' edge cases.

* YouTube (Google's ``usageLimits`` errors): a 403 ``rateLimitExceeded`` or
  ``userRateLimitExceeded`` is a rate limit (too many requests in a short span), and a 403
  ``dailyLimitExceeded`` a spent daily quota; both stopped the source for good, as if the
  key had been refused.
* Feeds: a relative link (RSS, or Atom with or without ``xml:base``) is resolved.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from core.events import Mention
from listener.cursors import MemoryCursorStore
from listener.sources.base import SourceFatalError
from listener.sources.feeds import FeedConfig, map_item, parse_feed
from listener.sources.youtube import YouTubeConfig, YouTubeSource
from tests.support import RecordingClock

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"

T0 = datetime(2024, 9, 9, 20, 30, tzinfo=UTC)
"""13:30 in Los Angeles: the next YouTube API day starts 10.5 hours later."""


def fixture(path: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((FIXTURES / path).read_text("utf-8"))
    return loaded


def usage_limit(reason: str) -> dict[str, object]:
    """A Google API error body of the ``usageLimits`` domain."""
    message = {"rateLimitExceeded": "Rate Limit Exceeded"}.get(reason, reason)
    return {
        "error": {
            "code": 403,
            "message": message,
            "errors": [{"message": message, "domain": "usageLimits", "reason": reason}],
        }
    }


async def youtube_after(first: httpx.Response) -> tuple[RecordingClock, list[Mention]]:
    """A YouTube source whose first request is answered ``first``, the second a page of
    two threads; the third ends the test (a refused key)."""
    clock = RecordingClock(T0)
    page = fixture("youtube/comment_threads_page.json")
    answers = [first, httpx.Response(200, json={**page, "nextPageToken": None})]

    def handler(request: httpx.Request) -> httpx.Response:
        if answers:
            return answers.pop(0)
        return httpx.Response(400, json=fixture("youtube/error_key_invalid.json"))

    config = YouTubeConfig.model_validate({"api_key": "k", "videos": ["dQw4w9WgXcQ"]})
    got: list[Mention] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        source = YouTubeSource(config, http, clock, MemoryCursorStore())
        await source.start()
        with pytest.raises(SourceFatalError, match="API key was refused"):
            async for m in source.mentions():
                got.append(m)
                source.delivered(m)
    return clock, got


@pytest.mark.parametrize("reason", ["rateLimitExceeded", "userRateLimitExceeded"])
async def test_youtube_a_403_rate_limit_waits_and_goes_on(reason: str) -> None:
    clock, got = await youtube_after(httpx.Response(403, json=usage_limit(reason)))
    assert clock.sleeps[0] == 60.0  # no Retry-After: a minute
    assert len(got) == 2


async def test_youtube_a_403_rate_limit_waits_its_retry_after() -> None:
    answer = httpx.Response(
        403, json=usage_limit("rateLimitExceeded"), headers={"Retry-After": "17"}
    )
    clock, got = await youtube_after(answer)
    assert clock.sleeps[0] == 17.0 and len(got) == 2


async def test_youtube_daily_limit_exceeded_waits_for_the_next_api_day() -> None:
    clock, got = await youtube_after(httpx.Response(403, json=usage_limit("dailyLimitExceeded")))
    assert clock.sleeps[0] == 10.5 * 3600  # midnight Pacific, not a hot retry
    assert len(got) == 2


# --- feeds: relative links --------------------------------------------------------------

FEED_URL = "https://news.example.com/feeds/main.xml"
RSS_RELATIVE = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
<item><guid>a1</guid><title>Acme recall</title><link>/2024/09/acme-recall</link>
<pubDate>Mon, 09 Sep 2024 19:00:00 GMT</pubDate></item>
<item><guid>a2</guid><title>Acme fire</title><link>fire.html</link></item>
<item><guid>a3</guid><title>Acme elsewhere</title><link>https://other.example.org/x</link></item>
<item><guid>a4</guid><title>Acme odd</title><link>http://[::1/x</link></item>
</channel></rss>"""
ATOM_BASE = b"""<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"
 xml:base="https://blog.example.net/acme/"><title>t</title>
<entry><id>e1</id><title>Acme recall</title><link href="posts/1"/>
<updated>2024-09-09T19:00:00Z</updated></entry>
<entry xml:base="/archive/"><id>e2</id><title>Acme fire</title><link href="2"/>
<updated>2024-09-09T19:00:00Z</updated></entry>
</feed>"""


def test_a_relative_feed_link_is_resolved_against_the_feed() -> None:
    """RSS and Atom items may carry relative links (RFC 4287 allows them, resolved against
    ``xml:base`` or the feed's URL); they were kept as they were, and the alert's link
    (``/2024/09/acme-recall``) led nowhere."""
    feed = FeedConfig(url=FEED_URL)
    now = datetime(2024, 9, 10, tzinfo=UTC)
    urls = [map_item(item, feed, now).url for item in parse_feed(RSS_RELATIVE)]
    assert urls == [
        "https://news.example.com/2024/09/acme-recall",
        "https://news.example.com/feeds/fire.html",
        "https://other.example.org/x",
        "http://[::1/x",  # not a URL: kept as it is, the item not lost
    ]
    urls = [map_item(item, feed, now).url for item in parse_feed(ATOM_BASE)]
    assert urls == ["https://blog.example.net/acme/posts/1", "https://blog.example.net/archive/2"]
