"""The RSS/Atom source against hostile or odd feeds: a body larger than the limit (read
only up to it), RSS items with nothing but a description, Atom's xhtml text, a feed
listing more items than the source remembers, and dates before any feed existed."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from listener.backoff import TargetUnavailable
from listener.cursors import MemoryCursorStore
from listener.sources import feeds
from listener.sources.feeds import (
    FeedClient,
    FeedConfig,
    FeedsConfig,
    FeedsSource,
    FeedState,
    item_key,
    map_item,
    parse_feed,
)
from listener.sources.text import html_to_text
from tests.unit.test_source_live import T0, EndingClock, RecordingClock, deliver_all

URL = "https://news.example.com/feed.xml"
CHUNK = 64 * 1024


def rss(items: str) -> bytes:
    return f'<?xml version="1.0"?><rss version="2.0"><channel>{items}</channel></rss>'.encode()


def described(*descriptions: str) -> bytes:
    return rss("".join(f"<item><description>{d}</description></item>" for d in descriptions))


def guids(numbers: range, *, dated: bool = True) -> bytes:
    def date(i: int) -> str:
        return f"<pubDate>Mon, 09 Sep 2024 {i // 60 % 24:02d}:{i % 60:02d}:00 GMT</pubDate>"

    # newest first, as feeds list them
    return rss(
        "".join(
            f"<item><guid>g{i}</guid><title>acme {i}</title>{date(i) if dated else ''}</item>"
            for i in reversed(numbers)
        )
    )


async def poll(
    bodies: Callable[[int], bytes],
    polls: int,
    config: FeedsConfig | None = None,
    not_modified: set[int] | None = None,
) -> tuple[FeedsSource, list[str]]:
    """The ids delivered by ``polls`` polls of one feed whose n-th answer is ``bodies(n)``
    (304 for the polls in ``not_modified``)."""
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls - 1 in (not_modified or set()):
            return httpx.Response(304)
        return httpx.Response(200, content=bodies(calls - 1))

    config = config or FeedsConfig(feeds=[{"url": URL}], poll_seconds=60)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        source = FeedsSource(config, http, EndingClock(polls=polls), MemoryCursorStore())
        await source.start()
        got = await deliver_all(source)
    assert calls == polls
    return source, [m.id for m in got]


# --- 1. the body is read only up to max_bytes ------------------------------------------


class Endless(httpx.AsyncByteStream):
    """A body of ``chunks`` chunks, counting how many were read."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.read = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.read += 1
            yield b"x" * CHUNK


async def fetch_streamed(body: Endless, headers: dict[str, str]) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, headers=headers, stream=body))
    async with httpx.AsyncClient(transport=transport) as http:
        await FeedClient(http, RecordingClock(), max_bytes=100_000).fetch(URL, FeedState())


async def test_a_body_without_a_length_is_read_only_up_to_the_limit() -> None:
    body = Endless(chunks=200)  # 12.8 MB, no Content-Length (chunked)
    with pytest.raises(TargetUnavailable, match="larger than 100000 bytes"):
        await fetch_streamed(body, {})
    assert body.read <= 2  # 100,000 bytes: the second 64 KiB chunk passes the limit


async def test_a_body_whose_length_is_too_large_is_not_read() -> None:
    body = Endless(chunks=200)
    with pytest.raises(TargetUnavailable, match="larger than 100000 bytes"):
        await fetch_streamed(body, {"Content-Length": str(200 * CHUNK)})
    assert body.read == 0


async def test_a_feed_too_large_is_a_failing_target_and_the_source_goes_on() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Endless(chunks=200))

    config = FeedsConfig(feeds=[{"url": URL}], poll_seconds=60, max_bytes=100_000)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        source = FeedsSource(config, http, EndingClock(polls=2), MemoryCursorStore())
        await source.start()
        assert await deliver_all(source) == []
    assert "larger than 100000 bytes" in source.health.failing_targets["news.example.com/feed.xml"]


async def test_a_body_within_the_limit_is_read_whole() -> None:
    _, ids = await poll(lambda n: guids(range(3)), polls=1)
    assert len(ids) == 3


# --- 2. RSS items with only a description ----------------------------------------------


def test_items_with_only_a_description_have_distinct_stable_keys() -> None:
    first = parse_feed(described("a: acme one", "b: acme two"))
    again = parse_feed(described("a: acme one", "b: acme two"))
    assert first[0].key and first[0].key != first[1].key
    assert [i.key for i in first] == [i.key for i in again]
    dated = parse_feed(
        rss("<item><description>same</description><pubDate>Mon, 09 Sep 2024</pubDate></item>")
    )
    assert dated[0].key != parse_feed(described("same"))[0].key  # the date is part of it
    mention = map_item(first[0], FeedConfig(url=URL), T0)
    assert mention.text == "a: acme one"  # no empty title line before it


async def test_items_with_only_a_description_are_each_delivered_once() -> None:
    polls = [
        described("first alert: acme recall"),
        described("second alert: acme fire", "first alert: acme recall"),
        described("third alert: acme lawsuit", "second alert: acme fire", "first"),
    ]
    _, ids = await poll(lambda n: polls[min(n, 2)], polls=4)
    assert len(ids) == len(set(ids)) == 4  # "first" (third poll) is another item


# --- 3. Atom xhtml text ---------------------------------------------------------------

XHTML = b"""<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>
<entry><id>urn:1</id>
<title type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">Acme <b>recall</b></div></title>
<updated>2024-09-09T19:00:00Z</updated>
<content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><p>Acme batteries catch fire
&amp; injure 3</p><p>a &lt;b&gt; is not a tag<br/>here</p><script>no()</script>end</div></content>
</entry>
<entry><id>urn:2</id><title type="html">Acme &lt;b&gt;sued&lt;/b&gt;</title>
<summary type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">in <i>court</i></div></summary>
</entry></feed>"""


def test_atom_xhtml_title_and_content_are_read_whole() -> None:
    first, second = parse_feed(XHTML)
    assert first.title == "Acme recall"
    # read as the same markup sent as type="html" is: lines kept, entities decoded once
    assert first.text == html_to_text(
        "<p>Acme batteries catch fire\n&amp; injure 3</p><p>a &lt;b&gt; is not a tag<br/>"
        "here</p><script>no()</script>end"
    )
    assert first.text.startswith("Acme batteries catch fire\n& injure 3\n\na <b> is not a")
    assert "no()" not in first.text
    assert second.title == "Acme sued"  # type="html": as before
    assert second.text == "in court"


# --- 4. a feed listing more items than remember_items ----------------------------------


async def test_a_feed_larger_than_remember_items_is_delivered_once() -> None:
    source, ids = await poll(lambda n: guids(range(1000)), polls=4)
    assert len(ids) == len(set(ids)) == 1000
    assert source.health.page_caps == 0


@pytest.mark.parametrize("dated", [True, False])
async def test_a_sliding_feed_larger_than_remember_items_repeats_nothing(dated: bool) -> None:
    # 30 items listed, 10 remembered, 5 new ones a poll; dates or none
    config = FeedsConfig(feeds=[{"url": URL}], poll_seconds=60, remember_items=10)
    _, ids = await poll(lambda n: guids(range(5 * n, 5 * n + 30), dated=dated), 6, config)
    assert len(ids) == len(set(ids)) == 55


async def test_an_unchanged_answer_forgets_nothing_of_a_large_feed() -> None:
    body = guids(range(1000))
    _, ids = await poll(lambda n: body, polls=3, not_modified={1})
    assert len(ids) == 1000


async def test_a_restart_repeats_nothing_of_a_large_feed() -> None:
    store = MemoryCursorStore()
    config = FeedsConfig(feeds=[{"url": URL}], poll_seconds=60)
    body = guids(range(800))
    got: list[str] = []
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=body))
    ) as http:
        for _ in range(2):  # two processes, one database
            source = FeedsSource(config, http, EndingClock(polls=2), store)
            await source.start()
            got += [m.id for m in await deliver_all(source)]
            await source.stop()
    assert len(got) == 800


async def test_a_feed_over_the_ceiling_is_read_to_it_logged_and_counted(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(feeds, "MAX_ITEMS", 40)
    config = FeedsConfig(feeds=[{"url": URL}], poll_seconds=60, remember_items=10)
    with caplog.at_level(logging.WARNING):
        source, ids = await poll(lambda n: guids(range(n, n + 100)), 3, config)
    # the newest 40 (dated: newest by date), then the one new item of each poll
    assert sorted(ids) == sorted(f"news:{item_key(URL, f'g{i}')}" for i in range(60, 102))
    assert source.health.page_caps == 1  # once per feed, not once per poll
    capped = [r for r in caplog.records if "items" in r.getMessage() and "40" in r.getMessage()]
    assert len(capped) == 1


async def test_the_same_key_twice_in_one_poll_is_delivered_once() -> None:
    body = rss("<item><guid>g1</guid><title>a</title></item>" * 2)
    _, ids = await poll(lambda n: body, polls=1)
    assert len(ids) == 1


# --- 5. dates before any feed ----------------------------------------------------------


async def test_dates_before_2000_are_not_trusted(caplog: pytest.LogCaptureFixture) -> None:
    body = rss(
        "<item><guid>a</guid><title>acme a</title><pubDate>0001-01-02T00:00:00Z</pubDate></item>"
        "<item><guid>b</guid><title>acme b</title>"
        "<pubDate>Thu, 01 Jan 1970 00:00:00 GMT</pubDate></item>"
        "<item><guid>c</guid><title>acme c</title>"
        "<pubDate>Mon, 09 Sep 2024 19:00:00 GMT</pubDate></item>"
    )
    config = FeedsConfig(feeds=[{"url": URL}], poll_seconds=60)
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=body))
    ) as http:
        source = FeedsSource(config, http, EndingClock(polls=2), MemoryCursorStore())
        await source.start()
        with caplog.at_level(logging.WARNING):
            got = await deliver_all(source)
    dates = sorted(m.created_at for m in got)
    assert dates[0].year == 2024 and dates[1:] == [T0, T0]  # when first seen
    assert source.health.errors == 1  # once for the feed
    assert len([r for r in caplog.records if "before 2000" in r.getMessage()]) == 1
