"""The RSS source's cursor holds only the feeds configured now: the state of a feed
removed from the config (~18 KB a feed) is dropped on load, logged once. An empty entry
(no keys, no validators), saved by an older version for a feed never read, is not a
read: that feed's first success is a first read (only the lookback is published)."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import httpx
import pytest

from listener.cursors import MemoryCursorStore
from listener.sources.feeds import FeedsConfig, FeedsSource, item_key
from tests.source_servers import rss_feed
from tests.unit.test_source_live import T0, EndingClock, deliver_all

URL = "https://news.example.com/feed.xml"
GONE = "https://gone.example.com/feed.xml"
BODY = rss_feed([("new", T0 - timedelta(minutes=1)), ("old", T0 - timedelta(hours=3))])


def source(store: MemoryCursorStore, http: httpx.AsyncClient) -> FeedsSource:
    config = FeedsConfig(feeds=[{"url": URL}], poll_seconds=60)
    return FeedsSource(config, http, EndingClock(polls=2), store)


def transport() -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(200, content=BODY))


async def test_a_feed_removed_from_the_config_leaves_the_cursor(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryCursorStore()
    kept = [item_key(URL, "new"), item_key(URL, "old")]
    store.cursors["rss"] = json.dumps(
        {
            URL: {"etag": None, "modified": None, "seen": kept},
            GONE: {"etag": '"e"', "modified": None, "seen": ["k1", "k2"]},
            "https://gone2.example.com/feed.xml": {"etag": None, "modified": None, "seen": []},
        }
    )
    caplog.set_level(logging.INFO, logger="listener.sources.feeds")
    async with httpx.AsyncClient(transport=transport()) as http:
        rss = source(store, http)
        await rss.start()
        assert await deliver_all(rss) == []  # the configured feed's keys are kept
        await rss.stop()
    assert list(json.loads(store.cursors["rss"])) == [URL]
    dropped = [r.getMessage() for r in caplog.records if "no longer configured" in r.getMessage()]
    assert dropped == ["source rss: the saved states of 2 feeds no longer configured are dropped"]


async def test_an_empty_saved_entry_is_a_first_read() -> None:
    store = MemoryCursorStore()
    store.cursors["rss"] = json.dumps({URL: {"etag": None, "modified": None, "seen": []}})
    async with httpx.AsyncClient(transport=transport()) as http:
        rss = source(store, http)
        await rss.start()
        got = await deliver_all(rss)
    # was: both, the item of 3 hours ago (before the lookback) too
    assert [m.id for m in got] == [f"news:{item_key(URL, 'new')}"]
