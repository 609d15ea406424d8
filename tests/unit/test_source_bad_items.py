"""One bad item must not stall a source: an API item without its time or id, or with a
value of the wrong type (Hacker News, Reddit, YouTube), a Bluesky frame that is not JSON
or is larger than ``max_message_bytes``, a saved cursor that cannot be read (every live
source). Each is skipped, logged (once per item, not a flood) and counted in the source's
errors; the rest is delivered and the cursor moves on as it would without it."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from core.events import MAX_TEXT_CHARS, Mention
from core.metrics import Metrics
from listener.cursors import MemoryCursorStore
from listener.sources.feeds import FeedsConfig, FeedsSource
from listener.sources.hackernews import HackerNewsConfig, HackerNewsSource, map_hit
from listener.sources.jetstream import JetstreamConfig, JetstreamSource
from listener.sources.live import LiveSource
from listener.sources.mastodon import MastodonConfig, MastodonSource
from listener.sources.reddit import RedditConfig, RedditSource, map_thing
from listener.sources.skips import LOGGED_SKIPS
from listener.sources.telegram import TelegramConfig, TelegramSource
from listener.sources.text import fit_text, html_to_text
from listener.sources.youtube import YouTubeConfig, YouTubeSource
from tests.unit.test_source_live import (
    FIXTURES,
    REDDIT,
    T0,
    EndingClock,
    RecordingClock,
    deliver_all,
    fixture,
    gauge,
    hn_poll,
    take,
)

NOW = int(T0.timestamp())


def skip_lines(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING
        and "skipped" in r.getMessage()
        and f"source {name}" in r.getMessage()
    ]


# --- Hacker News ---------------------------------------------------------------------------


def hit(object_id: object, created: object, **extra: object) -> dict[str, object]:
    return {
        "objectID": object_id,
        "created_at_i": created,
        "_tags": ["story"],
        "title": f"Acme story {object_id}",
        "author": "someone",
        **extra,
    }


async def test_hn_a_malformed_hit_is_skipped_and_the_rest_of_the_page_delivered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    clock, metrics = EndingClock(polls=4), Metrics()  # 4 polls of the same page
    bad = [
        {"objectID": "900", "_tags": ["story"], "title": "no time"},  # no created_at_i
        {"created_at_i": NOW - 500, "title": "no id"},  # no objectID
        hit("901", "yesterday"),  # a time of the wrong type
        hit(None, NOW - 450),  # an id of the wrong type
        None,  # not a hit at all
        hit("902", NOW - 420, num_comments=-3),  # placed, but not a valid mention
    ]
    page = {
        "hits": [hit("3", NOW - 300), *bad, hit("2", NOW - 400), hit("1", NOW - 600)],
        "nbPages": 1,
    }
    store = MemoryCursorStore()
    config = HackerNewsConfig(queries=["acme"], poll_seconds=60)
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=page))
    ) as http:
        source = HackerNewsSource(config, http, clock, store, metrics)
        await source.start()
        got = await deliver_all(source)  # was: nothing, the query failing on every poll
        await source.stop()
    assert [m.id for m in got] == ["hackernews:1", "hackernews:2", "hackernews:3"]
    assert source.health.failing_targets == {}
    assert source.health.reconnects == 0
    # each bad hit counted once, though every poll read it again
    assert source.health.errors == len(bad) == source.skips.count
    assert gauge(metrics, "source_errors_total", "hackernews") == len(bad)
    assert "skipped" in (source.health.last_error or "")
    lines = skip_lines(caplog, "hackernews")
    assert len(lines) == len(bad)  # logged once each, not once per poll
    assert any("902" in line and "ValidationError" in line for line in lines)
    # the cursor: the newest hit delivered; a restart asks from it
    mark = json.loads(store.cursors["hackernews"])["acme"]
    assert (mark["t"], mark["ids"]) == (NOW - 300, ["3"])


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        ("Outlook says <![ if mso]> hello <b>bold</b>", "Outlook says hello bold"),
        ("<p>a</p><![ CDATA[ b <script>x()</script>&amp; c", "a\n<![ CDATA[ b & c"),
    ],
)
def test_html_the_stdlib_parser_refuses_is_read_by_the_fallback(markup: str, text: str) -> None:
    """CPython's html.parser raises AssertionError on a marked section (``<![ ...``)."""
    assert html_to_text(markup) == text
    assert html_to_text("<p>fine &amp; <br>well</p>") == "fine &\nwell"


async def test_hn_a_comment_the_html_parser_refuses_is_delivered() -> None:
    """It stalled the query (the same hit failed every poll, the source reconnecting)."""
    comment = hit("2", NOW - 400, _tags=["comment"], comment_text="Acme <![ if mso]> fail")
    page = {"hits": [hit("3", NOW - 300), comment, hit("1", NOW - 600)], "nbPages": 1}
    got, source = await hn_poll(page)
    assert [m.id for m in got] == ["hackernews:1", "hackernews:2", "hackernews:3"]
    assert "Acme fail" in got[1].text
    assert source.health.reconnects == 0 and source.skips.count == 0


async def test_hn_the_cursor_does_not_pass_a_hit_that_was_not_delivered() -> None:
    """Only a malformed hit is passed over; a good hit after it that was not delivered
    (still in flight when the source stopped) is not."""
    page = {"hits": [hit("2", NOW - 300), hit("bad", None), hit("1", NOW - 600)], "nbPages": 1}
    store = MemoryCursorStore()
    config = HackerNewsConfig(queries=["acme"], poll_seconds=60)
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=page))
    ) as http:
        source = HackerNewsSource(config, http, EndingClock(polls=3), store)
        await source.start()
        got = await take(source.mentions(), 2)  # was: EndOfTest, nothing ever came
        source.delivered(got[0])  # "2" yielded, never delivered
        await source.stop()
    assert [m.id for m in got] == ["hackernews:1", "hackernews:2"]
    assert json.loads(store.cursors["hackernews"])["acme"]["t"] == NOW - 600


async def test_a_flood_of_bad_items_is_counted_but_its_log_is_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A platform that breaks every item: each counted, the first few logged, not all."""
    page = {"hits": [hit(str(i), "bad") for i in range(150)], "nbPages": 1}
    config = HackerNewsConfig(queries=["acme"], poll_seconds=60)
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=page))
    ) as http:
        source = HackerNewsSource(config, http, EndingClock(polls=2), MemoryCursorStore())
        await source.start()
        assert await deliver_all(source) == []
    assert source.health.errors == 150
    lines = skip_lines(caplog, "hackernews")
    assert len(lines) == LOGGED_SKIPS + 1  # the first ten, then the 100th
    assert "100 skipped so far" in lines[-1]


async def test_hn_backfill_skips_a_malformed_hit_and_returns_the_rest() -> None:
    page = {"hits": [hit("2", NOW - 300), hit("bad", None), None, hit("1", NOW - 600)]}
    config = HackerNewsConfig(queries=["acme"])
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json={**page, "nbPages": 1}))
    ) as http:
        source = HackerNewsSource(config, http, RecordingClock(), MemoryCursorStore())
        found = await source.search("acme", T0)  # was: KeyError, the whole backfill failed
    assert sorted(m.id for m in found) == ["hackernews:1", "hackernews:2"]
    assert source.health.errors == 2


# --- Reddit --------------------------------------------------------------------------------


def thing(name: object, created: object, **extra: object) -> dict[str, object]:
    return {"kind": "t3", "data": {"name": name, "created_utc": created, "title": "Acme", **extra}}


async def test_reddit_a_malformed_thing_is_skipped_and_the_rest_of_the_listing_delivered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, metrics = EndingClock(polls=3), Metrics()
    token = fixture("reddit/access_token.json")
    bad: list[object] = [
        {"kind": "t3", "data": {"name": "t3_notime", "title": "no time"}},
        thing(None, NOW - 500.0),  # no name
        thing("t3_strtime", "1725913000"),  # a time of the wrong type
        {"kind": "t3"},  # no data
        "junk",
    ]
    children = [thing("t3_c", NOW - 300.0), *bad[:3], thing("t3_b", NOW - 400.0), *bad[3:]]
    children.append(thing("t3_a", NOW - 600.0))
    children.append(thing("t3_last_bad", None))  # the oldest of the page cannot be read
    listing = {"kind": "Listing", "data": {"after": "t3_next", "children": children}}
    pages: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/access_token":
            return httpx.Response(200, json=token)
        pages.append(request.url.params.get("after"))
        if "after" in request.url.params:  # the next page: older than the window
            old = [thing("t3_old", NOW - 9000.0)]
            return httpx.Response(200, json={"kind": "Listing", "data": {"children": old}})
        return httpx.Response(200, json=listing)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        source = RedditSource(
            RedditConfig.model_validate(REDDIT), http, clock, MemoryCursorStore(), metrics
        )
        await source.start()
        got = await deliver_all(source)  # was: nothing (or silently dropped)
    assert [m.id for m in got] == ["reddit:t3_a", "reddit:t3_b", "reddit:t3_c"]
    assert source.health.failing_targets == {} and source.health.reconnects == 0
    assert source.health.errors == len(bad) + 1  # once each over three polls
    assert len(skip_lines(caplog, "reddit")) == len(bad) + 1
    # a bad last child did not stop the walk: the next page said where the window ends
    assert pages == [None, "t3_next"] * 3


# --- YouTube -------------------------------------------------------------------------------


async def test_youtube_a_malformed_thread_is_skipped_and_the_rest_of_the_page_delivered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, metrics = EndingClock(polls=3), Metrics()
    page = fixture("youtube/comment_threads_page.json")
    good: list[Any] = page["items"]  # type: ignore[assignment]
    no_time = json.loads(json.dumps(good[0]))
    no_time["id"] = "UgNoTime"
    del no_time["snippet"]["topLevelComment"]["snippet"]["publishedAt"]
    int_time = json.loads(json.dumps(good[0]))
    int_time["id"] = "UgIntTime"
    int_time["snippet"]["topLevelComment"]["snippet"]["publishedAt"] = NOW
    no_id = json.loads(json.dumps(good[1]))
    del no_id["id"]
    no_snippet = {"kind": "youtube#commentThread", "id": "UgNoSnippet"}
    bad = [no_time, int_time, no_id, no_snippet]
    body = {**page, "items": [good[0], *bad, good[1]], "nextPageToken": None}
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=body))
    ) as http:
        config = YouTubeConfig.model_validate({"api_key": "k", "videos": ["dQw4w9WgXcQ"]})
        source = YouTubeSource(config, http, clock, MemoryCursorStore(), metrics)
        await source.start()
        got = await deliver_all(source)  # was: nothing, the video failing on every poll
    assert [m.id for m in got] == [
        "youtube:UgxOlder456EeFfGgHh4AaABAg",
        "youtube:UgzNewest123AaBbCcDd4AaABAg",
    ]
    assert source.health.failing_targets == {} and source.health.reconnects == 0
    assert source.health.errors == len(bad)
    assert gauge(metrics, "source_errors_total", "youtube") == len(bad)
    assert len(skip_lines(caplog, "youtube")) == len(bad)


# --- Bluesky Jetstream ---------------------------------------------------------------------

T0_US = 1_725_911_000_000_000
GAP_US = 100_000  # 100 ms between frames


def post(i: int, text: str | None = None) -> dict[str, Any]:
    return {
        "did": "did:plc:author",
        "time_us": T0_US + i * GAP_US,
        "kind": "commit",
        "commit": {
            "operation": "create",
            "collection": "app.bsky.feed.post",
            "rkey": f"k{i}",
            "record": {"createdAt": "2024-09-09T19:46:02.102Z", "text": text or f"post {i}"},
        },
    }


class FakeJetstream:
    """Replays ``frames`` (time_us, frame) from the requested cursor, then stays open."""

    def __init__(self, frames: list[tuple[int, str]], *, live_from: int | None = None) -> None:
        self.frames = frames
        self.cursors: list[int | None] = []
        self.live_from = live_from
        """With a value: the instance's clock. A cursor ahead of it gets the live tail, the
        frames from ``live_from`` on (Jetstream's rule for a cursor from the future)."""

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        query = parse_qs(urlsplit(ws.request.path).query)
        cursor = int(query["cursor"][0]) if "cursor" in query else None
        self.cursors.append(cursor)
        if cursor is not None and self.live_from is not None and cursor > self.live_from:
            cursor = self.live_from
        try:
            for time_us, frame in self.frames:
                if cursor is None or time_us >= cursor:
                    await ws.send(frame)
            await ws.wait_closed()
        except ConnectionClosed:
            pass


async def jetstream_run(
    fake: FakeJetstream, n: int, *, cursor: str | None = None
) -> tuple[JetstreamSource, list[str], RecordingClock]:
    clock = RecordingClock()  # the reconnect backoffs pass at once
    store = MemoryCursorStore()
    async with serve(fake.handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        endpoint = f"ws://127.0.0.1:{port}/subscribe"
        if cursor is not None:
            store.cursors["bluesky"] = cursor.replace("ENDPOINT", endpoint)
        config = JetstreamConfig(endpoint=endpoint, max_message_bytes=1024)
        source = JetstreamSource(config, clock, store)
        await source.start()
        stream = cast(AsyncGenerator[Mention, None], source.mentions())
        try:
            got = await asyncio.wait_for(take(stream, n), 10)  # was: a reconnect loop
        finally:
            await stream.aclose()
    return source, [m.text for m in got], clock


async def test_jetstream_a_frame_that_is_not_json_is_skipped_without_reconnecting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    t = [T0_US + i * GAP_US for i in range(6)]
    fake = FakeJetstream(
        [
            (t[0], json.dumps(post(0))),
            (t[1], '{"did": "did:plc:x", "time_us": 17259'),  # cut short
            (t[1], "[1, 2]"),  # JSON, not an event
            (t[1], json.dumps({"kind": "commit", "time_us": "soon"})),  # no usable time_us
            (t[2], json.dumps(post(2))),
            (t[3], json.dumps(post(3))),
        ]
    )
    source, texts, _ = await jetstream_run(fake, 3)
    assert texts == ["post 0", "post 2", "post 3"]
    assert source.health.reconnects == 0 and fake.cursors == [None]
    assert source.health.errors == 3 == source.skips.count
    assert len(skip_lines(caplog, "bluesky")) == 3


async def test_jetstream_a_frame_over_max_message_bytes_is_passed_on_reconnect() -> None:
    """The websocket library closes the connection on such a frame (1009) without reading
    it: the next connection must ask from past it, or it meets it again for ever (the
    cursor rewound 5 s)."""
    frames = [(T0_US + i * GAP_US, json.dumps(post(i))) for i in range(6)]
    big = post(3, text="x" * 2000)  # over max_message_bytes (1024)
    frames[3] = (big["time_us"], json.dumps(big))
    fake = FakeJetstream(frames)
    saved = json.dumps({"endpoint": "ENDPOINT", "time_us": T0_US})  # post 0 delivered
    source, texts, _ = await jetstream_run(fake, 4, cursor=saved)
    assert texts == ["post 1", "post 2", "post 4", "post 5"]  # nothing but the frame lost
    assert source.health.errors == 1 == source.skips.count  # the frame, counted once
    assert "larger than max_message_bytes" in (source.health.last_error or "")
    # asked past post 2 (the last good frame): 1 ms, then doubling until past the frame
    last_good = T0_US + 2 * GAP_US
    jumps = [c - last_good for c in fake.cursors[1:] if c is not None]
    assert jumps == [1_000 * 2**k for k in range(len(jumps))]
    assert jumps[-1] > GAP_US and jumps[-2] < GAP_US  # no further than needed
    assert source.health.reconnects == len(jumps) < 10


async def test_jetstream_a_saved_cursor_ahead_of_the_instance_drops_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A position from the future (a frame stamped ahead of the instance's clock was the
    last delivered, or the instance's clock went back): the instance serves its live tail
    for such a cursor, and every event up to that future time was dropped as "delivered
    before the reconnect", silently, for as long as the clock took to get there."""
    frames = [(T0_US + i * GAP_US, json.dumps(post(i))) for i in range(6)]
    fake = FakeJetstream(frames, live_from=T0_US + 3 * GAP_US)
    future = T0_US + 10 * 3600 * 1_000_000  # ten hours ahead
    saved = json.dumps({"endpoint": "ENDPOINT", "time_us": future})
    source, texts, _ = await jetstream_run(fake, 3, cursor=saved)
    assert texts == ["post 3", "post 4", "post 5"]  # was: none (a 10 s timeout here)
    assert fake.cursors == [future - 5_000_000]
    assert source.health.errors == 1
    assert "live tail" in (source.health.last_error or "")
    assert any("events since the last delivery may be missed" in r.message for r in caplog.records)


async def test_jetstream_a_replay_from_the_cursor_is_not_taken_for_a_live_tail() -> None:
    """The usual reconnect: the instance replays from the rewound cursor, what was
    delivered before is dropped, nothing is counted as an error."""
    frames = [(T0_US + i * GAP_US, json.dumps(post(i))) for i in range(6)]
    fake = FakeJetstream(frames, live_from=T0_US + 5 * GAP_US)
    saved = json.dumps({"endpoint": "ENDPOINT", "time_us": T0_US + 2 * GAP_US})
    source, texts, _ = await jetstream_run(fake, 3, cursor=saved)
    assert texts == ["post 3", "post 4", "post 5"]
    assert fake.cursors == [T0_US + 2 * GAP_US - 5_000_000]
    assert source.health.errors == 0


# --- a saved cursor that cannot be read ----------------------------------------------------


def corrupt_cursor_cases() -> list[tuple[str, str]]:
    return [
        ("not json", "{not json"),
        ("a list", "[1, 2]"),
        ("a number", "42"),
    ]


@pytest.mark.parametrize(("why", "cursor"), corrupt_cursor_cases())
async def test_telegram_an_unreadable_saved_cursor_is_ignored(
    why: str, cursor: str, caplog: pytest.LogCaptureFixture
) -> None:
    await _unreadable_cursor_is_ignored(telegram_source, cursor, caplog)


@pytest.mark.parametrize(
    "cursor", ['{"acmewatch": "1840"}', '{"acmewatch": null}', '{"acmewatch": true}']
)
async def test_telegram_a_saved_cursor_of_the_wrong_shape_is_ignored(
    cursor: str, caplog: pytest.LogCaptureFixture
) -> None:
    await _unreadable_cursor_is_ignored(telegram_source, cursor, caplog)


@pytest.mark.parametrize(("why", "cursor"), corrupt_cursor_cases())
async def test_feeds_an_unreadable_saved_cursor_is_ignored(
    why: str, cursor: str, caplog: pytest.LogCaptureFixture
) -> None:
    await _unreadable_cursor_is_ignored(feeds_source, cursor, caplog)


@pytest.mark.parametrize(
    "cursor",
    [
        '{"https://news.example.com/feed.xml": {"seen": 5}}',
        '{"https://news.example.com/feed.xml": {"seen": [], "colour": "red"}}',
        '{"https://news.example.com/feed.xml": [1]}',
        '{"https://news.example.com/feed.xml": {"etag": 7}}',
    ],
)
async def test_feeds_a_saved_cursor_of_the_wrong_shape_is_ignored(
    cursor: str, caplog: pytest.LogCaptureFixture
) -> None:
    await _unreadable_cursor_is_ignored(feeds_source, cursor, caplog)


@pytest.mark.parametrize("cursor", ["{not json", "ab-c", '{"id": 1}', "-5", "12 a", "9" * 31])
async def test_mastodon_an_unreadable_saved_cursor_is_ignored(
    cursor: str, caplog: pytest.LogCaptureFixture
) -> None:
    await _unreadable_cursor_is_ignored(mastodon_source, cursor, caplog)


@pytest.mark.parametrize(
    "cursor", ["{not json", "[1]", '{"acme": {"ids": []}}', '{"acme": {"t": "x"}}', '{"acme": 5}']
)
async def test_hn_an_unreadable_saved_cursor_is_ignored(
    cursor: str, caplog: pytest.LogCaptureFixture
) -> None:
    await _unreadable_cursor_is_ignored(hn_source, cursor, caplog)


@pytest.mark.parametrize(
    "cursor", ["{not json", "[1]", '{"endpoint": "x"}', '{"time_us": "soon"}', '{"time_us": 1.5}']
)
async def test_jetstream_an_unreadable_saved_cursor_is_ignored(
    cursor: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeJetstream([(T0_US, json.dumps(post(0)))])
    source, texts, _ = await jetstream_run(fake, 1, cursor=cursor)
    assert texts == ["post 0"]
    assert fake.cursors == [None]  # from now, as on a first run
    assert source.health.reconnects == 0 and source.health.errors == 1
    assert_cursor_error_logged_once(caplog, "bluesky")


SourceFactory = Callable[[httpx.AsyncClient, EndingClock, MemoryCursorStore, Metrics], LiveSource]


def telegram_source(
    http: httpx.AsyncClient, clock: EndingClock, store: MemoryCursorStore, metrics: Metrics
) -> LiveSource:
    return TelegramSource(TelegramConfig(channels=["acmewatch"]), http, clock, store, metrics)


def feeds_source(
    http: httpx.AsyncClient, clock: EndingClock, store: MemoryCursorStore, metrics: Metrics
) -> LiveSource:
    config = FeedsConfig(feeds=[{"url": "https://news.example.com/feed.xml"}], poll_seconds=60)
    return FeedsSource(config, http, clock, store, metrics)


def mastodon_source(
    http: httpx.AsyncClient, clock: EndingClock, store: MemoryCursorStore, metrics: Metrics
) -> LiveSource:
    config = MastodonConfig(instance="https://m.example", access_token="tok-123")
    return MastodonSource(config, http, clock, store, metrics)


def hn_source(
    http: httpx.AsyncClient, clock: EndingClock, store: MemoryCursorStore, metrics: Metrics
) -> LiveSource:
    config = HackerNewsConfig(queries=["acme"], poll_seconds=60)
    return HackerNewsSource(config, http, clock, store, metrics)


def serve_all(request: httpx.Request) -> httpx.Response:
    """Every platform's answer at once: the source picks what it asks for."""
    host, path = request.url.host, request.url.path
    if host == "t.me":
        return httpx.Response(200, text=(FIXTURES / "telegram/channel_page.html").read_text())
    if host == "news.example.com":
        return httpx.Response(200, content=(FIXTURES / "rss/news_rss2.xml").read_bytes())
    if host == "hn.algolia.com":
        return httpx.Response(200, json=fixture("hackernews/search_by_date_story.json"))
    if path.startswith("/api/v1/streaming"):
        sse = (FIXTURES / "mastodon/update.sse").read_bytes()
        return httpx.Response(200, content=sse, headers={"content-type": "text/event-stream"})
    return httpx.Response(200, json=[])  # a Mastodon timeline with nothing new


async def _unreadable_cursor_is_ignored(
    make: SourceFactory, cursor: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The source starts as on its first run (its usual lookback) and delivers, instead
    of failing on every reconnect (each failure would count an error)."""
    clock, metrics, store = EndingClock(polls=3), Metrics(), MemoryCursorStore()
    async with httpx.AsyncClient(transport=httpx.MockTransport(serve_all)) as http:
        source = make(http, clock, store, metrics)
        store.cursors[source.name] = cursor
        await source.start()
        got = await deliver_all(source)
        await source.stop()
    assert got, "nothing delivered"
    assert source.health.failing_targets == {}
    assert source.health.errors == 1  # the cursor; no failed connection or poll
    assert gauge(metrics, "source_errors_total", source.name) == 1
    assert "saved cursor cannot be read" in (source.health.last_error or "")
    assert store.cursors[source.name] != cursor  # the next save replaced it
    assert_cursor_error_logged_once(caplog, source.name)


def assert_cursor_error_logged_once(caplog: pytest.LogCaptureFixture, name: str) -> None:
    errors = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.ERROR and "saved cursor cannot be read" in r.getMessage()
    ]
    assert len(errors) == 1 and f"source {name}:" in errors[0]


def test_a_post_longer_than_a_mention_holds_is_cut_not_lost() -> None:
    """A Reddit title + selftext, a Hacker News title + story text over MAX_TEXT_CHARS
    failed validation: the post was skipped (lost)."""
    long = "acme " + "x" * MAX_TEXT_CHARS
    thing = {
        "name": "t3_long",
        "title": "Acme recall",
        "selftext": long,
        "created_utc": NOW - 60,
        "permalink": "/r/acme/comments/long/",
        "author": "someone",
    }
    post = map_thing(thing)
    assert len(post.text) == MAX_TEXT_CHARS and post.text.startswith("Acme recall\nacme x")
    story = map_hit(hit("77", NOW - 60, story_text=f"<p>{long}</p>"))
    assert len(story.text) == MAX_TEXT_CHARS and story.text.startswith("Acme story 77\nacme x")
    assert fit_text("short") == "short"
