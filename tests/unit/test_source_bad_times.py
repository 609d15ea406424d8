"""Items with times or ids out of range must not stall a source, nor blind it for good:
a time no datetime holds (``datetime.fromtimestamp(1e18)`` raises ``OSError``), a time
years ahead (it moved a "since" mark past every real item, in the saved cursor too), a
year-1 date with an offset (``astimezone`` overflows), a Mastodon id longer than
``int()`` reads; an API answer that is not JSON in any charset (a target's own error
before, backed off for an hour); and backfill's contract (oldest first)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest

from core.events import Mention
from listener.backoff import TransientError
from listener.cursors import MemoryCursorStore
from listener.sources.hackernews import HackerNewsConfig, HackerNewsSource
from listener.sources.jetstream import map_event
from listener.sources.live import MAX_FUTURE
from listener.sources.mastodon import MastodonConfig, MastodonSource, id_order
from listener.sources.reddit import RedditConfig, RedditSource
from listener.sources.skips import UNREADABLE
from listener.sources.telegram import parse_page
from listener.sources.timemark import TimeMark
from listener.sources.youtube import YouTubeConfig, YouTubeSource
from tests.unit.test_source_bad_items import hit, thing
from tests.unit.test_source_live import (
    FIXTURES,
    REDDIT,
    T0,
    EndingClock,
    EndOfTest,
    RecordingClock,
    deliver_all,
    fixture,
)

NOW = int(T0.timestamp())
YEARS_AHEAD = NOW + 10 * 365 * 86_400


def hn_pages(pages: dict[str, list[Any]], asked: dict[str, list[str]]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        query = request.url.params["query"]
        asked.setdefault(query, []).append(request.url.params["numericFilters"])
        return httpx.Response(200, json={"nbPages": 1, "hits": pages[query]})

    return httpx.MockTransport(handler)


def latest(clock: RecordingClock) -> int:
    return int((clock.now() + MAX_FUTURE).timestamp())


# --- a time no datetime holds --------------------------------------------------------------


@pytest.mark.parametrize("bad_time", [10**18, 1e18, 10**40])
async def test_hn_a_hit_dated_beyond_any_datetime_is_skipped_and_the_other_queries_go_on(
    bad_time: float,
) -> None:
    """``datetime.fromtimestamp(1e18)`` raises ``OSError`` (Errno 75): it escaped the
    skip handling, the source reconnected on every poll and its later queries were never
    asked again."""
    pages = {
        "acme": [hit("2", NOW - 10), hit("bad", bad_time), hit("1", NOW - 100)],
        "other": [hit("3", NOW - 20)],
    }
    asked: dict[str, list[str]] = {}
    store, clock = MemoryCursorStore(), EndingClock(polls=4)
    config = HackerNewsConfig(queries=["acme", "other"], poll_seconds=60)
    async with httpx.AsyncClient(transport=hn_pages(pages, asked)) as http:
        source = HackerNewsSource(config, http, clock, store)
        await source.start()
        got = await deliver_all(source)
        await source.stop()
    assert [m.id for m in got] == ["hackernews:1", "hackernews:2", "hackernews:3"]
    assert source.health.reconnects == 0
    assert len(asked["other"]) == len(asked["acme"]) == 4  # every poll, both queries
    assert source.skips.count == 1  # counted once over four polls
    marks = json.loads(store.cursors["hackernews"])
    assert (marks["acme"]["t"], marks["acme"]["ids"]) == (NOW - 10, ["2"])
    assert (marks["other"]["t"], marks["other"]["ids"]) == (NOW - 20, ["3"])


async def test_reddit_a_thing_dated_beyond_any_datetime_is_skipped_not_a_reconnect() -> None:
    token = fixture("reddit/access_token.json")
    children = [thing("t3_b", NOW - 10.0), thing("t3_bad", 1e18), thing("t3_a", NOW - 100.0)]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/access_token":
            return httpx.Response(200, json=token)
        return httpx.Response(200, json={"kind": "Listing", "data": {"children": children}})

    store = MemoryCursorStore()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        config = RedditConfig.model_validate(REDDIT)
        source = RedditSource(config, http, EndingClock(polls=3), store)
        await source.start()
        got = await deliver_all(source)
        await source.stop()
    assert [m.id for m in got] == ["reddit:t3_a", "reddit:t3_b"]
    assert source.health.reconnects == 0 and source.skips.count == 1
    assert json.loads(store.cursors["reddit"])["search:acme"]["t"] == NOW - 10


# --- a time years ahead --------------------------------------------------------------------


async def test_hn_a_hit_dated_years_ahead_does_not_move_the_mark_past_later_hits() -> None:
    """The hit is delivered once, re-dated to now; the mark stays within ``MAX_FUTURE``
    of the clock, so a hit posted later is still asked for and delivered (it was not:
    the mark sat ten years ahead, in the saved cursor too)."""
    pages: dict[str, list[Any]] = {
        "acme": [hit("ahead", YEARS_AHEAD), hit("2", NOW - 10), hit("1", NOW - 100)]
    }
    asked: dict[str, list[str]] = {}
    store, clock = MemoryCursorStore(), EndingClock(polls=5)
    config = HackerNewsConfig(queries=["acme"], poll_seconds=60)
    got: list[Mention] = []
    async with httpx.AsyncClient(transport=hn_pages(pages, asked)) as http:
        source = HackerNewsSource(config, http, clock, store)
        await source.start()
        with pytest.raises(EndOfTest):
            async for m in source.mentions():
                got.append(m)
                source.delivered(m)
                if m.id == "hackernews:2":  # posted after the first poll
                    pages["acme"].insert(0, hit("3", NOW + 100))
        await source.stop()
    assert [m.id for m in got] == [
        "hackernews:1",
        "hackernews:2",
        "hackernews:ahead",
        "hackernews:3",
    ]
    ahead = got[2]
    assert ahead.created_at <= clock.now() and source.health.future_dated == 1
    assert source.skips.count == 0 and source.health.reconnects == 0
    mark = json.loads(store.cursors["hackernews"])["acme"]
    assert (mark["t"], mark["ids"]) == (NOW + 100, ["3"])
    assert mark["earlier"]["ahead"] == YEARS_AHEAD  # remembered: not delivered again
    assert all(int(f.split(">=")[1]) <= latest(clock) for f in asked["acme"])


async def test_a_saved_mark_ahead_of_the_clock_is_brought_back() -> None:
    """A cursor saved while one far-future hit held the mark: the hits after it were
    never asked for. The mark goes back to the first-run start (logged and counted); the
    far-future hit, remembered, is not delivered again."""
    pages: dict[str, list[Any]] = {"acme": [hit("2", NOW - 10), hit("1", NOW - 100)]}
    asked: dict[str, list[str]] = {}
    store = MemoryCursorStore()
    store.cursors["hackernews"] = json.dumps(
        {"acme": {"t": 10**18, "ids": ["bad"], "floor": NOW - 3600}}
    )
    config = HackerNewsConfig(queries=["acme"], poll_seconds=60, initial_lookback_minutes=60)
    async with httpx.AsyncClient(transport=hn_pages(pages, asked)) as http:
        source = HackerNewsSource(config, http, EndingClock(polls=3), store)
        await source.start()
        got = await deliver_all(source)  # was: nothing, asked from 10**18 - 300 for ever
        await source.stop()
    assert [m.id for m in got] == ["hackernews:1", "hackernews:2"]
    assert asked["acme"][0] == f"created_at_i>={NOW - 3600}"
    assert "ahead of the clock" in (source.health.last_error or "")
    assert source.health.errors == 1
    mark = json.loads(store.cursors["hackernews"])["acme"]
    assert (mark["t"], mark["ids"], mark["earlier"]["bad"]) == (NOW - 10, ["2"], 10**18)


async def test_youtube_a_thread_dated_in_the_year_9999_does_not_move_the_mark() -> None:
    page = fixture("youtube/comment_threads_page.json")
    good: list[Any] = page["items"]  # type: ignore[assignment]
    ahead = json.loads(json.dumps(good[0]))
    ahead["id"] = "UgAhead"
    ahead["snippet"]["topLevelComment"]["snippet"]["publishedAt"] = "9999-12-31T23:59:59Z"
    body = {**page, "items": [ahead, *good], "nextPageToken": None}
    store = MemoryCursorStore()
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=body))
    ) as http:
        config = YouTubeConfig.model_validate({"api_key": "k", "videos": ["dQw4w9WgXcQ"]})
        source = YouTubeSource(config, http, EndingClock(polls=3), store)
        await source.start()
        got = await deliver_all(source)
        await source.stop()
    assert [m.id for m in got][-1] == "youtube:UgAhead"  # once, though read on every poll
    assert len(got) == 1 + len(good) and source.health.future_dated == 1
    mark = json.loads(store.cursors["youtube"])["video:dQw4w9WgXcQ"]
    assert mark["t"] < NOW + 3600 and "UgAhead" in mark["earlier"]


def test_a_time_mark_is_not_moved_by_an_item_ahead_of_latest() -> None:
    mark = TimeMark(1_000, ["a"], floor=500)
    assert mark.admits(10**12, "far", 300)
    mark.advance(10**12, "far", 300, latest=1_300)
    assert (mark.t, mark.ids, mark.since(300)) == (1_000, ["a"], 700)
    assert not mark.admits(10**12, "far", 300)  # read again: not taken again
    mark.advance(1_200, "b", 300, latest=1_300)  # a real item moves it, keeps "far"
    assert (mark.t, mark.ids, mark.earlier) == (1_200, ["b"], {"far": 10**12, "a": 1_000})
    mark.passed(1_250, "unreadable")  # a skipped item: remembered, the mark stays
    assert mark.t == 1_200 and not mark.admits(1_250, "unreadable", 300)
    back = TimeMark(10**18, ["bad"], floor=5).rewound(900)
    assert (back.t, back.ids, back.floor, back.earlier) == (900, [], 900, {"bad": 10**18})


# --- a year-1 date with an offset ----------------------------------------------------------


def test_jetstream_a_created_at_that_overflows_or_is_before_2000_is_the_seen_time() -> None:
    """``astimezone(UTC)`` of 0001-01-01T00:00:00+01:00 overflows: the post was skipped,
    so anyone could make theirs invisible. It is dated when seen, as an unparseable
    date is."""
    event = json.loads((FIXTURES / "jetstream/commit_create_post.json").read_text("utf-8"))
    for value in (
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "1970-01-01T00:00:00Z",  # a client's "no date": its story would be decades old
        "1999-12-31T23:59:59Z",
    ):
        event["commit"]["record"]["createdAt"] = value
        mention = map_event(event)
        assert mention is not None
        assert mention.created_at.timestamp() == event["time_us"] / 1_000_000


def test_telegram_a_post_time_that_overflows_is_no_time_not_an_unreadable_page() -> None:
    html = (FIXTURES / "telegram/channel_page.html").read_text("utf-8")
    broken = html.replace("2024-09-09T19:46:02+00:00", "0001-01-01T00:00:00+01:00", 1)
    assert broken != html
    posts = parse_page(broken)  # was: OverflowError, the channel failing as a target
    assert len(posts) == len(parse_page(html)) and posts[0].published is None


# --- a Mastodon id longer than int() reads -------------------------------------------------

MASTODON_PAGE = json.loads((FIXTURES / "mastodon/timeline_public.json").read_text("utf-8"))
MASTODON_CURSOR = "113107745413932185"  # just before the fixture page


async def _poll_mastodon(
    cursor: str, page: list[object]
) -> tuple[list[Mention], MastodonSource, MemoryCursorStore]:
    """A polling Mastodon source resuming at ``cursor``; the timeline after it is ``page``."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("min_id") == cursor:
            return httpx.Response(200, json=page)
        return httpx.Response(200, json=[])

    store = MemoryCursorStore()
    store.cursors["acme"] = cursor
    config = MastodonConfig.model_validate(
        {"instance": "https://m.example", "access_token": "t", "name": "acme", "mode": "poll"}
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        source = MastodonSource(config, http, EndingClock(polls=3), store)
        await source.start()
        got = await deliver_all(source)
        await source.stop()
    return got, source, store


async def test_mastodon_a_status_id_of_thousands_of_digits_is_skipped_not_a_stall() -> None:
    """``int()`` of an id over 4,300 digits raised outside the skip handling: the
    timeline reconnected for ever and delivered nothing."""
    long_ids: list[object] = [
        {**MASTODON_PAGE[0], "id": "9" * 5000},
        {**MASTODON_PAGE[0], "id": "9" * 31},
        {**MASTODON_PAGE[0], "id": 10**40},
    ]

    got, source, store = await _poll_mastodon(MASTODON_CURSOR, [*long_ids, *MASTODON_PAGE])
    assert [m.id for m in got] == [
        "mastodon-m.example:113107745413932190",
        "mastodon-m.example:113107745413932201",
    ]
    assert source.health.reconnects == 0 and source.skips.count == 1
    assert store.cursors["acme"] == "113107745413932201"


@pytest.mark.parametrize(
    ("cursor", "ids"),
    [  # GoToSocial (ULIDs) and Akkoma (flake ids): served newest first, as Mastodon does
        (
            "01JDQ8Z0000000000000000000",
            ["01JDQ9B7HX4S2N7ZK3ZQ0W5V9B", "01JDQ9B7HX4S2N7ZK3ZQ0W5V9A"],
        ),
        ("AoOxK1g9TYOqwX2ZHc", ["AoOxK1g9TYOqwX2ZHz", "AoOxK1g9TYOqwX2ZHd"]),
    ],
)
async def test_mastodon_api_servers_with_string_ids_are_read_in_id_order(
    cursor: str, ids: list[str]
) -> None:
    """GoToSocial, Akkoma and Pleroma speak the Mastodon API with ids that are not numbers;
    their statuses were skipped as unreadable. The API defines ids as strings ordered by
    length, then lexically."""
    page = [{**MASTODON_PAGE[0], "id": i, "url": f"https://m.example/@a/{i}"} for i in ids]
    got, source, store = await _poll_mastodon(cursor, page)
    assert [m.id for m in got] == [f"mastodon-m.example:{i}" for i in reversed(ids)]
    assert source.skips.count == 0
    assert store.cursors["acme"] == ids[0]


def test_mastodon_ids_order_by_length_then_lexically() -> None:
    ordered = ["9", "10", "99", "113107745413932185", "113107745413932190", "1131077454139321850"]
    assert sorted(reversed(ordered), key=id_order) == ordered


async def test_mastodon_a_saved_cursor_of_more_than_30_digits_is_not_a_status_id() -> None:
    config = MastodonConfig.model_validate(
        {"instance": "https://m.example", "access_token": "t", "name": "acme"}
    )
    async with httpx.AsyncClient() as http:
        source = MastodonSource(config, http, RecordingClock(), MemoryCursorStore())
    source.check_cursor("9" * 30)
    with pytest.raises(ValueError, match="not a status id"):
        source.check_cursor("9" * 31)
    with pytest.raises(ValueError, match="not a status id"):
        source.check_cursor("9" * 5000)


# --- an answer that is not JSON, in any charset --------------------------------------------

NOT_JSON = {
    "latin-1 html": "<html>Wartung: Server \u00fcberlastet</html>".encode("latin-1"),
    "utf-16 garbage": b"\xff\xfe<\x00h\x00",
    "a number too long": b'{"hits": [' + b"9" * 5000 + b"]}",
}


def serving(body: bytes) -> httpx.MockTransport:
    token = fixture("reddit/access_token.json")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/access_token":
            return httpx.Response(200, json=token)
        return httpx.Response(200, content=body, headers={"content-type": "text/html"})

    return httpx.MockTransport(handler)


@pytest.mark.parametrize("body", NOT_JSON.values(), ids=NOT_JSON.keys())
async def test_an_api_answer_that_is_not_json_is_a_transient_error(body: bytes) -> None:
    """``Response.json()`` of a non-UTF-8 page raises ``UnicodeDecodeError`` (a
    ``ValueError``, not a ``JSONDecodeError``): it counted as the target's own error."""
    async with httpx.AsyncClient(transport=serving(body)) as http:
        store, clock = MemoryCursorStore(), RecordingClock()
        hn = HackerNewsSource(HackerNewsConfig(queries=["acme"]), http, clock, store)
        with pytest.raises(TransientError, match="not JSON"):
            await hn.client.since("acme", NOW)
        reddit = RedditSource(RedditConfig.model_validate(REDDIT), http, clock, store)
        with pytest.raises(TransientError, match="not JSON"):
            await reddit.client.since("/search", {"q": "acme"}, NOW)
        youtube_config = YouTubeConfig.model_validate({"api_key": "k", "videos": ["v"]})
        youtube = YouTubeSource(youtube_config, http, clock, store)
        with pytest.raises(TransientError, match="not JSON"):
            await youtube.client.since({"videoId": "v"}, NOW)


async def test_a_latin_1_error_page_is_retried_as_an_outage_not_backed_off_for_an_hour() -> None:
    async with httpx.AsyncClient(transport=serving(NOT_JSON["latin-1 html"])) as http:
        clock = EndingClock(polls=12)
        config = HackerNewsConfig(queries=["acme"], poll_seconds=60)
        source = HackerNewsSource(config, http, clock, MemoryCursorStore())
        await source.start()
        assert await deliver_all(source) == []
    assert source.health.errors >= 4
    assert source.failing.wait("acme") <= 120  # was: doubling up to 3600 s
    assert "not JSON" in source.health.failing_targets["hn.algolia.com query 'acme'"]


# --- backfill: oldest first ----------------------------------------------------------------


async def test_hn_and_reddit_backfill_return_the_oldest_first() -> None:
    """``Searchable.search`` returns mentions oldest first; the APIs list newest first."""
    hits = [hit("30", NOW - 10), hit("20", NOW - 20), hit("21", NOW - 20), hit("10", NOW - 30)]
    hits.append(hit("bad", 10**18))  # fromtimestamp raises OSError: skipped, not a failure
    children = [thing("t3_c", NOW - 10.0), thing("t3_b", NOW - 20.0), thing("t3_a", NOW - 30.0)]
    token = fixture("reddit/access_token.json")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/access_token":
            return httpx.Response(200, json=token)
        if request.url.host == "hn.algolia.com":
            return httpx.Response(200, json={"nbPages": 1, "hits": hits})
        return httpx.Response(200, json={"kind": "Listing", "data": {"children": children}})

    since = T0 - timedelta(hours=1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        store, clock = MemoryCursorStore(), RecordingClock()
        hn = HackerNewsSource(HackerNewsConfig(queries=["acme"]), http, clock, store)
        reddit = RedditSource(RedditConfig.model_validate(REDDIT), http, clock, store)
        found_hn = await hn.search("acme", since)
        found_reddit = await reddit.search("acme", since)
    assert [m.id for m in found_hn] == [
        "hackernews:10",
        "hackernews:20",
        "hackernews:21",
        "hackernews:30",
    ]
    assert [m.id for m in found_reddit] == ["reddit:t3_a", "reddit:t3_b", "reddit:t3_c"]
    assert hn.skips.count == 1


def test_jetstream_an_event_time_beyond_any_datetime_is_unreadable_not_a_reconnect() -> None:
    """``map_event`` of a ``time_us`` no datetime holds raises ``OSError``: what the
    stream skips and counts (``UNREADABLE``), not an error that reconnects."""
    event = json.loads((FIXTURES / "jetstream/commit_create_post.json").read_text("utf-8"))
    event["time_us"] = 10**24  # 1e18 s
    with pytest.raises(UNREADABLE):
        map_event(event)
