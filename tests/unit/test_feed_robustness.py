"""The RSS/Atom source against hostile or odd feeds: a body larger than the limit (read
only up to it), RSS items with nothing but a description, Atom's xhtml text, a feed
listing more items than the source remembers, dates before any feed existed; RSS 1.0 and
0.90 (RDF) feeds, RSS 2.0 edge cases (namespaced items, permalink guids) and the date
forms feeds use."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

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


def read_before(*urls: str) -> MemoryCursorStore:
    """A cursor store in which ``urls`` (``URL`` by default) were read before, with nothing
    remembered but a key no item has (an entry holding nothing is not a read): their polls
    deliver every item not seen, as later reads do. (A first read publishes only items
    newer than ``initial_lookback_minutes``; these tests are about the reads after it.)"""
    store = MemoryCursorStore()
    known = {url: {"etag": None, "modified": None, "seen": ["-"]} for url in urls or (URL,)}
    store.cursors["rss"] = json.dumps(known)
    return store


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
        source = FeedsSource(config, http, EndingClock(polls=polls), read_before())
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
    store = read_before()
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
        source = FeedsSource(config, http, EndingClock(polls=2), read_before())
        await source.start()
        with caplog.at_level(logging.WARNING):
            got = await deliver_all(source)
    dates = sorted(m.created_at for m in got)
    assert dates[0].year == 2024 and dates[1:] == [T0, T0]  # when first seen
    assert source.health.errors == 1  # once for the feed
    assert len([r for r in caplog.records if "before 2000" in r.getMessage()]) == 1


# --- 6. RSS 1.0 and 0.90 (RDF) ----------------------------------------------------------

SLASHDOT_RDF = b"""<?xml version="1.0" encoding="ISO-8859-1"?>
<rdf:RDF
 xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
 xmlns="http://purl.org/rss/1.0/"
 xmlns:dc="http://purl.org/dc/elements/1.1/"
 xmlns:slash="http://purl.org/rss/1.0/modules/slash/"
 xmlns:syn="http://purl.org/rss/1.0/modules/syndication/">
<channel rdf:about="https://slashdot.example/">
<title>Slashdot</title>
<link>https://slashdot.example/</link>
<description>News for nerds, stuff that matters</description>
<dc:language>en-us</dc:language>
<dc:date>2024-09-09T20:05:00+00:00</dc:date>
<items>
 <rdf:Seq>
  <rdf:li rdf:resource="https://hardware.slashdot.example/story/24/09/09/2005201/acme-x2-recall" />
  <rdf:li rdf:resource="https://tech.slashdot.example/story/24/09/09/1912203/acme-battery-fires" />
 </rdf:Seq>
</items>
<image rdf:resource="https://slashdot.example/topics/topicslashdot.gif" />
<textinput rdf:resource="https://slashdot.example/search.pl" />
<syn:updatePeriod>hourly</syn:updatePeriod>
</channel>
<image rdf:about="https://slashdot.example/topics/topicslashdot.gif">
<title>Slashdot</title>
<url>https://slashdot.example/topics/topicslashdot.gif</url>
<link>https://slashdot.example/</link>
</image>
<item rdf:about="https://hardware.slashdot.example/story/24/09/09/2005201/acme-x2-recall">
<title>Acme Recalls X2 Phones After Battery Fires</title>
<link>https://hardware.slashdot.example/story/24/09/09/2005201/acme-x2-recall?utm_source=rss1.0</link>
<description>An anonymous reader quotes a report: Acme is recalling every X2 sold since
March after &lt;a href="https://news.example.com/x2"&gt;dozens of reports&lt;/a&gt; of
phones catching fire while charging.&lt;p&gt;&lt;div class="share"&gt;&lt;/div&gt;</description>
<dc:creator>msmash</dc:creator>
<dc:date>2024-09-09T20:05:00+00:00</dc:date>
<dc:subject>hardware</dc:subject>
<slash:department>hot-potato</slash:department>
<slash:section>hardware</slash:section>
<slash:comments>42</slash:comments>
</item>
<item rdf:about="https://tech.slashdot.example/story/24/09/09/1912203/acme-battery-fires">
<title>Owners Report Acme X2 Batteries Swelling</title>
<link>https://tech.slashdot.example/story/24/09/09/1912203/acme-battery-fires?utm_source=rss1.0</link>
<description>Several owners say their Acme X2 swelled, then smoked.</description>
<dc:creator>BeauHD</dc:creator>
<dc:date>2024-09-09T19:12Z</dc:date>
<slash:comments>7</slash:comments>
</item>
<textinput rdf:about="https://slashdot.example/search.pl">
<title>Search Slashdot</title>
<description>Search Slashdot stories</description>
<name>query</name>
<link>https://slashdot.example/search.pl</link>
</textinput>
</rdf:RDF>"""

JAPANESE_RDF = """<?xml version="1.0" encoding="UTF-8"?>
<rdf:RDF xmlns="http://purl.org/rss/1.0/"
 xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
 xmlns:dc="http://purl.org/dc/elements/1.1/"
 xmlns:content="http://purl.org/rss/1.0/modules/content/" xml:lang="ja">
<channel rdf:about="https://news.example.jp/rss/index.rdf">
<title>エグザンプル新聞 速報</title>
<link>https://news.example.jp/</link>
<description>エグザンプル新聞の最新ニュース</description>
<dc:date>2026-11-29T09:05:00+09:00</dc:date>
<items><rdf:Seq>
<rdf:li rdf:resource="https://news.example.jp/articles/20261129-00000012"/>
<rdf:li rdf:resource="https://news.example.jp/articles/20261128-00000340"/>
</rdf:Seq></items>
</channel>
<item rdf:about="https://news.example.jp/articles/20261129-00000012">
<title>アクメ社、スマホ「X2」を自主回収へ　充電中の発火相次ぐ</title>
<link>https://news.example.jp/articles/20261129-00000012?fm=rss</link>
<description>アクメ社は29日、充電中の発火が相次いだとして回収を発表した。</description>
<content:encoded><![CDATA[<p>アクメ社は29日、スマートフォン「X2」を自主回収すると発表した。</p>
<p>充電中に発火する事故が国内で12件報告されている。</p>]]></content:encoded>
<dc:creator>経済部</dc:creator>
<dc:date>2026-11-29T09:00:00+09:00</dc:date>
</item>
<item rdf:about="https://news.example.jp/articles/20261128-00000340">
<title>消費者庁、リチウム電池の発火に注意呼びかけ</title>
<link>https://news.example.jp/articles/20261128-00000340?fm=rss</link>
<description>消費者庁は28日、モバイル機器の電池の発火事故について注意を呼びかけた。</description>
<dc:date>2026-11-28</dc:date>
</item>
</rdf:RDF>""".encode()

NETSCAPE_RSS_090 = b"""<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
 xmlns="http://my.netscape.com/rdf/simple/0.9/">
<channel>
<title>Acme Watchers</title>
<link>http://acmewatch.example/</link>
<description>News about Acme, the old way</description>
</channel>
<image>
<title>Acme Watchers</title>
<url>http://acmewatch.example/logo.gif</url>
<link>http://acmewatch.example/</link>
</image>
<item>
<title>Acme X2 recall: what we know</title>
<link>http://acmewatch.example/2024/x2-recall.html</link>
</item>
<item>
<title>Acme answers questions on battery fires</title>
<link>http://acmewatch.example/2024/x2-qa.html</link>
</item>
</rdf:RDF>"""


def test_an_rss_1_0_feed_is_read_like_rss_2_0() -> None:
    recall, swelling = parse_feed(SLASHDOT_RDF)  # the image and the textinput are not items
    assert recall.key == "https://hardware.slashdot.example/story/24/09/09/2005201/acme-x2-recall"
    assert recall.link == f"{recall.key}?utm_source=rss1.0"
    assert recall.title == "Acme Recalls X2 Phones After Battery Fires"
    assert recall.text.startswith("An anonymous reader quotes a report: Acme is recalling")
    assert "<a" not in recall.text and "dozens of reports" in recall.text
    assert recall.author == "msmash"
    assert recall.published == datetime(2024, 9, 9, 20, 5, tzinfo=UTC)
    assert swelling.author == "BeauHD"
    assert swelling.published == datetime(2024, 9, 9, 19, 12, tzinfo=UTC)  # no seconds


def test_a_japanese_rss_1_0_feed_reads_content_encoded_and_w3cdtf_dates() -> None:
    recall, notice = parse_feed(JAPANESE_RDF)
    assert recall.key == "https://news.example.jp/articles/20261129-00000012"  # rdf:about
    assert recall.link == "https://news.example.jp/articles/20261129-00000012?fm=rss"
    assert recall.title == "アクメ社、スマホ「X2」を自主回収へ\u3000充電中の発火相次ぐ"
    assert recall.text == (  # content:encoded before description
        "アクメ社は29日、スマートフォン「X2」を自主回収すると発表した。\n\n"
        "充電中に発火する事故が国内で12件報告されている。"
    )
    assert recall.author == "経済部"
    assert recall.published == datetime(2026, 11, 29, 0, 0, tzinfo=UTC)  # 09:00 JST
    assert notice.text == "消費者庁は28日、モバイル機器の電池の発火事故について注意を呼びかけた。"
    assert notice.author is None
    assert notice.published == datetime(2026, 11, 28, tzinfo=UTC)  # a date alone: midnight UTC
    m = map_item(recall, FeedConfig(url="https://news.example.jp/rss/index.rdf"), T0)
    assert m.url == recall.link
    assert m.text.startswith(
        "アクメ社、スマホ「X2」を自主回収へ\u3000充電中の発火相次ぐ\nアクメ社は29日"
    )


def test_an_rss_0_90_feed_is_read() -> None:
    first, second = parse_feed(NETSCAPE_RSS_090)  # the channel and the image are not items
    assert (first.key, first.link) == ("http://acmewatch.example/2024/x2-recall.html",) * 2
    assert first.title == "Acme X2 recall: what we know"
    assert (first.text, first.author, first.published) == ("", None, None)
    assert second.key == "http://acmewatch.example/2024/x2-qa.html"


def rdf(items: str) -> bytes:
    return (
        '<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"'
        ' xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f'<channel rdf:about="https://x.example/"><title>x</title></channel>{items}</rdf:RDF>'
    ).encode()


def test_an_rss_1_0_item_key_falls_back_as_in_rss_2_0() -> None:
    about, link, title, described_only = parse_feed(
        rdf(
            '<item rdf:about=" urn:x:1 "><title>a</title><link>https://x.example/1</link></item>'
            "<item><title>b</title><link>https://x.example/2</link></item>"
            "<item><title>c</title></item>"
            "<item><description>acme fire</description><dc:date>2024-09-09</dc:date></item>"
        )
    )
    assert about.key == "urn:x:1"
    assert about.link == "https://x.example/1"
    assert link.key == link.link == "https://x.example/2"
    assert title.key == "c" and title.link is None
    assert (
        described_only.key
        == parse_feed(
            rss("<item><description>acme fire</description><pubDate>2024-09-09</pubDate></item>")
        )[0].key
    )  # the same digest as an RSS 2.0 item saying the same
    [web] = parse_feed(rdf('<item rdf:about="https://x.example/3"><title>d</title></item>'))
    assert web.link == "https://x.example/3"  # no <link>: rdf:about is the item's URL


def test_an_rdf_document_that_is_not_rss_is_refused() -> None:
    body = (
        b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"'
        b' xmlns:foaf="http://xmlns.com/foaf/0.1/"><foaf:Person rdf:about="#me">'
        b"<foaf:name>Sam</foaf:name></foaf:Person></rdf:RDF>"
    )
    with pytest.raises(ValueError) as refused:
        parse_feed(body)
    assert str(refused.value) == (
        "not an RSS or Atom feed (an RDF document without an RSS channel or item; "
        "accepted: RSS 0.9x/1.0/2.0, Atom)"
    )


def test_an_unknown_document_is_refused_naming_the_kinds_accepted() -> None:
    with pytest.raises(ValueError) as refused:
        parse_feed(b"<html><body>Are you a robot?</body></html>")
    assert str(refused.value) == (
        "not an RSS or Atom feed (root element 'html'; accepted: RSS 0.9x/1.0/2.0, Atom)"
    )


async def test_an_rss_1_0_feed_is_polled_oldest_first_and_each_item_once() -> None:
    config = FeedsConfig(feeds=[{"url": "https://slashdot.example/index.rss"}], poll_seconds=60)
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=SLASHDOT_RDF))
    ) as http:
        source = FeedsSource(
            config, http, EndingClock(polls=3), read_before("https://slashdot.example/index.rss")
        )
        await source.start()
        got = await deliver_all(source)
    assert not source.health.failing_targets
    assert [m.created_at for m in got] == [
        datetime(2024, 9, 9, 19, 12, tzinfo=UTC),
        datetime(2024, 9, 9, 20, 5, tzinfo=UTC),
    ]
    swelling, recall = got
    assert recall.text.startswith("Acme Recalls X2 Phones After Battery Fires\nAn anonymous")
    assert recall.url == (
        "https://hardware.slashdot.example/story/24/09/09/2005201/acme-x2-recall?utm_source=rss1.0"
    )
    assert recall.author.handle == "msmash"
    assert swelling.id == "news:" + item_key(
        "https://slashdot.example/index.rss",
        "https://tech.slashdot.example/story/24/09/09/1912203/acme-battery-fires",
    )


# --- 7. RSS 2.0 edge cases --------------------------------------------------------------


def test_rss_items_in_a_default_namespace_are_read() -> None:
    item = (
        "<item><title>acme recall</title><link>https://x.example/1</link>"
        "<guid>urn:1</guid><description>acme &lt;b&gt;fire&lt;/b&gt;</description></item>"
    )
    plain = parse_feed(rss(item))
    for body in [
        # items declaring a namespace of their own (as some generators do)
        rss(item.replace("<item>", '<item xmlns="http://backend.userland.com/rss2">')),
        # the whole feed in UserLand's RSS 2.0 namespace
        rss(item).replace(b"<rss ", b'<rss xmlns="http://backend.userland.com/rss2" '),
        # the Atom namespace declared as the default by mistake (meant for atom:link)
        rss(item).replace(b"<rss ", b'<rss xmlns="http://www.w3.org/2005/Atom" '),
    ]:
        assert parse_feed(body) == plain, body
    assert plain[0].key == "urn:1" and plain[0].text == "acme fire"


def test_a_permalink_guid_is_the_link_of_an_item_without_one() -> None:
    perma, not_perma, not_a_url, linked = parse_feed(
        rss(
            "<item><guid>https://x.example/p/1</guid><title>a</title></item>"
            '<item><guid isPermaLink="false">https://x.example/?p=2</guid><title>b</title></item>'
            '<item><guid isPermaLink="true">post-3</guid><title>c</title></item>'
            "<item><guid>https://x.example/p/4</guid><link>https://x.example/4</link></item>"
        )
    )
    assert (perma.key, perma.link) == ("https://x.example/p/1", "https://x.example/p/1")
    assert map_item(perma, FeedConfig(url=URL), T0).url == "https://x.example/p/1"
    assert (not_perma.key, not_perma.link) == ("https://x.example/?p=2", None)
    assert (not_a_url.key, not_a_url.link) == ("post-3", None)
    assert (linked.key, linked.link) == ("https://x.example/p/4", "https://x.example/4")


def test_an_rss_item_without_title_or_link_is_delivered_with_its_text() -> None:
    [item] = parse_feed(rss("<item><description>acme &lt;i&gt;fire&lt;/i&gt;</description></item>"))
    assert (item.title, item.link, item.text) == ("", None, "acme fire")
    mention = map_item(item, FeedConfig(url=URL), T0)
    assert (mention.text, mention.url) == ("acme fire", None)


# --- 8. dates: RFC 822, ISO 8601 and W3CDTF --------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Mon, 09 Sep 2024 19:00:00 GMT", datetime(2024, 9, 9, 19, tzinfo=UTC)),
        ("Mon, 09 Sep 2024 19:00:00 +0900", datetime(2024, 9, 9, 10, tzinfo=UTC)),
        ("2026-11-29T09:00:00+09:00", datetime(2026, 11, 29, 0, tzinfo=UTC)),
        ("2026-11-29T09:00+09:00", datetime(2026, 11, 29, 0, tzinfo=UTC)),
        ("2026-11-29T09:00:00.25-05:00", datetime(2026, 11, 29, 14, 0, 0, 250_000, tzinfo=UTC)),
        ("2026-11-29T09:00:00Z", datetime(2026, 11, 29, 9, tzinfo=UTC)),
        ("2026-11-29T09:00:00", datetime(2026, 11, 29, 9, tzinfo=UTC)),  # no offset: UTC
        ("2026-11-29", datetime(2026, 11, 29, tzinfo=UTC)),
        ("2026-11-29t09:00:00z", datetime(2026, 11, 29, 9, tzinfo=UTC)),  # RFC 3339 allows
        ("2026-11", None),  # a month, a year: too vague to date an item (dated when seen)
        ("2026", None),
        ("yesterday", None),
        ("", None),
    ],
)
def test_item_dates(value: str, expected: datetime | None) -> None:
    assert feeds._date(value) == expected
