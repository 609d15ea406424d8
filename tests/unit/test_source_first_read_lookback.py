"""The first read of a feed or a Telegram channel (the source's first run, or a target
added to the config later) publishes only items dated ``initial_lookback_minutes`` before
the source started or later, as Hacker News, Reddit and YouTube start their time marks.
Older and undated items are marked seen (they never come later either), counted in
``skips.backlog`` (not as errors) and logged once per target. Was: a first read published
everything the feed or page listed, items years old among them."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx
import pytest
from pydantic import ValidationError

from listener.cursors import MemoryCursorStore
from listener.sources.feeds import FeedsConfig, FeedsSource
from listener.sources.hackernews import HackerNewsConfig, HackerNewsSource
from listener.sources.telegram import TelegramConfig, TelegramSource
from tests.source_servers import rss_feed, telegram_preview
from tests.unit.test_source_live import T0, EndingClock, deliver_all

URL = "https://news.example.com/feed.xml"
OTHER = "https://other.example.com/feed.xml"
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)

# newest first, as feeds list them: 3 to publish on a first read, 4 not
LISTED = [
    ("future", T0 + MINUTE),  # ahead of the clock: new (re-dated to now by the base)
    ("new", T0 - 5 * MINUTE),
    ("edge", T0 - 60 * MINUTE),  # exactly at the lookback's start: published
    ("undated", None),
    ("old", T0 - 61 * MINUTE),
    ("older", datetime(2024, 1, 2, tzinfo=T0.tzinfo)),
]
FIRST = {"future", "new", "edge"}


def misdated() -> bytes:
    """``LISTED`` plus one item dated 1970 (a date not trusted: no date)."""
    return rss_feed(LISTED).replace(
        b"</channel>",
        b"<item><guid>epoch</guid><title>acme epoch</title>"
        b"<pubDate>Thu, 01 Jan 1970 00:00:00 GMT</pubDate></item></channel>",
    )


def texts(got: list[object]) -> list[str]:
    return [m.text.removeprefix("acme ") for m in got]  # type: ignore[attr-defined]


async def read_feeds(
    answer: Callable[[httpx.Request, int], httpx.Response],
    polls: int,
    *,
    feeds: tuple[str, ...] = (URL,),
    store: MemoryCursorStore | None = None,
    **config: object,
) -> tuple[FeedsSource, list[str]]:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return answer(request, calls)

    settings = FeedsConfig.model_validate(
        {"feeds": [{"url": url} for url in feeds], "poll_seconds": 60, **config}
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        source = FeedsSource(settings, http, EndingClock(polls), store or MemoryCursorStore())
        await source.start()
        got = await deliver_all(source)
        await source.stop()
    return source, texts(got)


def serving(body: bytes) -> Callable[[httpx.Request, int], httpx.Response]:
    return lambda request, n: httpx.Response(200, content=body)


# --- feeds ---------------------------------------------------------------------------


def test_the_setting_has_the_shape_of_the_other_sources() -> None:
    hn = HackerNewsConfig(queries=["acme"]).initial_lookback_minutes
    assert FeedsConfig(feeds=[{"url": URL}]).initial_lookback_minutes == hn == 60
    assert TelegramConfig(channels=["acmewatch"]).initial_lookback_minutes == hn
    for config in ({"feeds": [{"url": URL}]}, {"channels": ["acmewatch"]}):
        kind = FeedsConfig if "feeds" in config else TelegramConfig
        assert kind.model_validate({**config, "initial_lookback_minutes": 0})
        with pytest.raises(ValidationError, match="initial_lookback_minutes"):
            kind.model_validate({**config, "initial_lookback_minutes": -1})


async def test_a_first_read_publishes_only_what_is_newer_than_the_lookback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="listener.sources.skips"):
        source, got = await read_feeds(serving(misdated()), polls=3)
    assert sorted(got) == sorted(FIRST)  # once each, over three polls
    assert source.skips.backlog == 4  # old, older, undated, epoch
    assert source.health.errors == 1  # only the feed's 1970 date (as before), not the backlog
    logged = [r.getMessage() for r in caplog.records if "first read of" in r.getMessage()]
    assert logged == [
        "source rss: first read of feed news.example.com/feed.xml: 4 item(s) marked seen, "
        "not published (2 dated before 2024-09-09 19:30 UTC, the start of "
        "initial_lookback_minutes; 2 without a date); 3 newer published"
    ]
    saved = json.loads(source.cursors.cursors["rss"])  # type: ignore[attr-defined]
    assert len(saved[URL]["seen"]) == 7  # the skipped ones too: they never come later


async def test_after_the_first_read_keys_tell_what_is_new_whatever_its_date() -> None:
    later = [("late", datetime(2023, 5, 1, tzinfo=T0.tzinfo)), ("undated-2", None), *LISTED]

    def answer(request: httpx.Request, n: int) -> httpx.Response:
        return httpx.Response(200, content=rss_feed(LISTED if n == 1 else later))

    source, got = await read_feeds(answer, polls=2)
    assert sorted(got) == sorted([*FIRST, "late", "undated-2"])
    assert source.skips.backlog == 3


async def test_a_lookback_of_zero_starts_from_now() -> None:
    _, got = await read_feeds(serving(rss_feed(LISTED)), polls=1, initial_lookback_minutes=0)
    assert got == ["future"]


async def test_a_long_lookback_publishes_every_dated_item_but_no_undated_one() -> None:
    _, got = await read_feeds(serving(rss_feed(LISTED)), polls=1, initial_lookback_minutes=10**12)
    assert got == ["older", "old", "edge", "new", "future"]  # oldest first


async def test_a_feed_added_to_the_config_later_is_read_as_a_first_read() -> None:
    store = MemoryCursorStore()
    store.cursors["rss"] = json.dumps({URL: {"etag": None, "modified": None, "seen": ["-"]}})
    source, got = await read_feeds(
        serving(rss_feed(LISTED)), polls=1, feeds=(URL, OTHER), store=store
    )
    # the feed read before: every item not seen (keys tell); the new feed: its first read
    assert sorted(got) == sorted([name for name, _ in LISTED] + list(FIRST))
    assert source.skips.backlog == 3


async def test_a_first_read_that_failed_is_a_first_read_when_it_succeeds() -> None:
    def answer(request: httpx.Request, n: int) -> httpx.Response:
        return httpx.Response(503) if n == 1 else httpx.Response(200, content=rss_feed(LISTED))

    source, got = await read_feeds(answer, polls=3)
    assert sorted(got) == sorted(FIRST)  # was: every item, the feed's state made at the 503
    assert source.skips.backlog == 3


async def test_a_restart_after_a_first_read_brings_back_no_old_item() -> None:
    store = MemoryCursorStore()
    body = serving(rss_feed(LISTED))
    _, first = await read_feeds(body, polls=1, store=store)
    _, second = await read_feeds(body, polls=1, store=store)
    assert sorted(first) == sorted(FIRST) and second == []


# --- Telegram ------------------------------------------------------------------------

POSTS = [
    (7, datetime(2024, 1, 2, tzinfo=T0.tzinfo)),
    (8, None),
    (9, T0 - 2 * HOUR),
    (10, T0 - 59 * MINUTE),
    (11, T0 - MINUTE),
]


async def read_channels(
    pages: Callable[[str, int], str],
    polls: int,
    channels: tuple[str, ...] = ("acmewatch",),
    store: MemoryCursorStore | None = None,
    **config: object,
) -> tuple[TelegramSource, list[str]]:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(200, text=pages(request.url.path.rsplit("/", 1)[1], calls))

    settings = TelegramConfig.model_validate({"channels": list(channels), **config})
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        source = TelegramSource(settings, http, EndingClock(polls), store or MemoryCursorStore())
        await source.start()
        got = await deliver_all(source)
        await source.stop()
    return source, [m.id.removeprefix("telegram:") for m in got]


async def test_telegram_a_first_read_publishes_only_what_is_newer_than_the_lookback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    newer = [*POSTS, (12, datetime(2024, 1, 3, tzinfo=T0.tzinfo))]  # misdated, but new

    def page(channel: str, n: int) -> str:
        return telegram_preview(channel, POSTS if n == 1 else newer)

    store = MemoryCursorStore()
    with caplog.at_level(logging.INFO, logger="listener.sources.skips"):
        source, got = await read_channels(page, polls=3, store=store)
    assert got == ["acmewatch/10", "acmewatch/11", "acmewatch/12"]
    assert source.skips.backlog == 3 and source.health.errors == 0
    assert json.loads(store.cursors["telegram"]) == {"acmewatch": 12}
    logged = [r.getMessage() for r in caplog.records if "first read of" in r.getMessage()]
    assert logged == [
        "source telegram: first read of channel t.me/s/acmewatch: 3 item(s) marked seen, not "
        "published (2 dated before 2024-09-09 19:30 UTC, the start of "
        "initial_lookback_minutes; 1 without a date); 2 newer published"
    ]


async def test_telegram_a_channel_added_later_is_read_as_a_first_read() -> None:
    store = MemoryCursorStore()
    store.cursors["telegram"] = json.dumps({"acmewatch": 6})

    def page(channel: str, n: int) -> str:
        return telegram_preview(channel, POSTS)

    _, got = await read_channels(page, 1, ("acmewatch", "acmenews"), store)
    # the channel read before: every post after its last (dates do not matter)
    assert got == [f"acmewatch/{n}" for n in range(7, 12)] + ["acmenews/10", "acmenews/11"]
    assert json.loads(store.cursors["telegram"]) == {"acmewatch": 11, "acmenews": 11}


async def test_telegram_a_first_read_that_failed_is_a_first_read_when_it_succeeds() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(502)
        return httpx.Response(200, text=telegram_preview("acmewatch", POSTS))

    config = TelegramConfig(channels=["acmewatch"])
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        source = TelegramSource(config, http, EndingClock(4), MemoryCursorStore())
        await source.start()
        got = await deliver_all(source)
    assert [m.id for m in got] == ["telegram:acmewatch/10", "telegram:acmewatch/11"]


async def test_an_endless_lookback_means_everything_not_an_error() -> None:
    """``initial_lookback_minutes: .inf`` (YAML's infinity) is read as "all history": the
    feeds publish every dated item; Hacker News asks from 1970 (was: an OverflowError at
    every reconnect, the source never polling)."""
    _, got = await read_feeds(serving(rss_feed(LISTED)), polls=1, initial_lookback_minutes="inf")
    assert len(got) == 5
    asked: list[str] = []

    def algolia(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params["numericFilters"])
        return httpx.Response(200, json={"hits": [], "nbPages": 0, "page": 0})

    config = HackerNewsConfig(queries=["acme"], initial_lookback_minutes=float("inf"))
    async with httpx.AsyncClient(transport=httpx.MockTransport(algolia)) as http:
        hn = HackerNewsSource(config, http, EndingClock(polls=1), MemoryCursorStore())
        await hn.start()
        await deliver_all(hn)
    assert asked == ["created_at_i>=0"] and hn.health.errors == 0
