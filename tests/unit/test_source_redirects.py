"""Redirects a user meets when setting sources up. A feed that moved (http to https, a new
path) was reported as "HTTP 301" for ever and never read; the API sources, which follow no
redirect, said "HTTP 301" without where to; a subreddit Reddit does not know (it sends
the name to its subreddit search with a 302) was retried as an outage every poll."""

from __future__ import annotations

import logging

import httpx
import pytest

from core.metrics import Metrics
from listener.backoff import TargetUnavailable, TransientError, check_response
from listener.cursors import MemoryCursorStore
from listener.sources.feeds import FeedsConfig, FeedsSource
from listener.sources.reddit import RedditClient, RedditConfig
from tests.unit.test_source_live import T0, EndingClock, RecordingClock, deliver_all

FEED = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><item><guid>g1</guid>'
    b"<title>acme recall</title><pubDate>Mon, 09 Sep 2024 20:00:00 GMT</pubDate></item>"
    b"</channel></rss>"
)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_feed_that_redirects_is_read_where_it_points(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "http":
            target = request.url.copy_with(scheme="https", path="/rss/feed.xml")
            return httpx.Response(status, headers={"Location": str(target)})
        return httpx.Response(200, content=FEED)

    config = FeedsConfig(feeds=[{"url": "http://news.example.com/feed.xml"}], poll_seconds=60)
    caplog.set_level(logging.WARNING)
    # the HTTP client the runtime gives the sources follows no redirect
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(serve), follow_redirects=False
    ) as http:
        source = FeedsSource(config, http, EndingClock(polls=3), MemoryCursorStore(), Metrics())
        await source.start()
        got = await deliver_all(source)
    assert [m.text for m in got] == ["acme recall"]  # once, over two polls
    assert source.health.failing_targets == {}
    moved = [r.getMessage() for r in caplog.records if "moved permanently" in r.getMessage()]
    if status in (301, 308):  # said once, with the new address, for the config
        assert len(moved) == 1 and "https://news.example.com/rss/feed.xml" in moved[0]
    else:
        assert moved == []


def test_a_redirect_an_api_answers_names_where_it_points_never_the_query() -> None:
    request = httpx.Request("GET", "https://hn.algolia.com/api/v1/search_by_date?query=x")
    response = httpx.Response(
        301,
        headers={"Location": "https://hn.example.org/api/v2/search?key=secret"},
        request=request,
    )
    with pytest.raises(TransientError) as caught:
        check_response(response, T0, what="hn.algolia.com search_by_date")
    assert "redirected to https://hn.example.org/api/v2/search" in str(caught.value)
    assert "secret" not in str(caught.value)


REDDIT = {"client_id": "id", "client_secret": "s", "user_agent": "ua", "searches": ["x"]}


async def test_a_subreddit_reddit_does_not_know_is_that_listings_error() -> None:
    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/access_token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        location = "https://oauth.reddit.com/subreddits/search?q=gadgetz"
        return httpx.Response(302, headers={"Location": location})

    config = RedditConfig.model_validate(REDDIT)
    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
        client = RedditClient(config, http, RecordingClock(T0))
        with pytest.raises(TargetUnavailable) as caught:
            await client.since("/r/gadgetz/new", {}, 0)
    assert "no such subreddit" in str(caught.value)
    assert "/subreddits/search" in str(caught.value)
