"""Review of the RSS/Atom source against what feeds send: multi-byte encodings declared
in the XML prolog (GB2312/GBK/Big5/Shift_JIS/EUC-KR), a body that is not in the encoding
it declares (one stray byte), whitespace before the declaration, an HTTP charset for a
body that declares none, and RFC 822 dates whose zone ``email.utils`` does not read."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from listener.sources.feeds import FeedClient, FeedState, _date, parse_feed
from tests.unit.test_source_live import T0, RecordingClock

URL = "https://news.example.cn/rss.xml"

ITEM = (
    "<item><guid>n1</guid><title>{title}</title>"
    "<description><![CDATA[<p>{body} &amp; more</p>]]></description>"
    "<pubDate>Mon, 09 Sep 2024 08:00:00 +0800</pubDate></item>"
)


def rss(title: str, body: str, declaration: str = "") -> str:
    item = ITEM.format(title=title, body=body)
    return f'{declaration}<rss version="2.0"><channel><title>t</title>{item}</channel></rss>'


@pytest.mark.parametrize(
    ("encoding", "title", "body"),
    [
        ("GB2312", "新闻标题", "你好世界"),
        ("gbk", "新闻標題", "你好"),  # 標 is GBK, not GB2312: read all the same
        ("GB18030", "新闻标题", "你好"),
        ("Big5", "新聞標題", "你好"),
        ("Shift_JIS", "ニュース", "こんにちは"),
        ("EUC-JP", "ニュース", "こんにちは"),
        ("EUC-KR", "뉴스", "안녕하세요"),
    ],
)
def test_a_feed_declared_in_a_multi_byte_encoding_is_read(
    encoding: str, title: str, body: str
) -> None:
    codec = {"GB2312": "gb18030", "gbk": "gbk", "Big5": "big5"}.get(encoding, encoding)
    doc = rss(title, body, f'<?xml version="1.0" encoding="{encoding}"?>').encode(codec)
    [item] = parse_feed(doc)
    assert item.title == title
    assert item.text == f"{body} & more"
    assert item.published == datetime(2024, 9, 9, 0, 0, tzinfo=UTC)


def test_single_quoted_declaration_with_standalone() -> None:
    declaration = "<?xml version='1.0' encoding='gb2312' standalone='yes'?>"
    [item] = parse_feed(rss("标题", "正文", declaration).encode("gb2312"))
    assert item.title == "标题"


def test_one_stray_byte_does_not_refuse_the_whole_feed() -> None:
    """A summary cut inside a multi-byte character (byte-counting generators) left an
    invalid UTF-8 byte: the feed was refused at every poll ("not well-formed")."""
    doc = rss("标题X", "正文", '<?xml version="1.0" encoding="utf-8"?>').encode()
    doc = doc.replace(b"X", b"\xe6\x96")  # the first two bytes of a three-byte character
    [item] = parse_feed(doc)
    assert item.title.startswith("标题") and item.text == "正文 & more"


def test_a_stray_byte_in_a_gbk_feed() -> None:
    doc = rss("标题X", "正文", '<?xml version="1.0" encoding="GBK"?>').encode("gbk")
    [item] = parse_feed(doc.replace(b"X", b"\xff"))
    assert item.title.startswith("标题")


def test_a_feed_that_is_not_xml_is_still_refused() -> None:
    with pytest.raises(ValueError, match="not well-formed"):
        parse_feed(b'<?xml version="1.0" encoding="gbk"?><rss><channel><item></rss>')
    with pytest.raises(ValueError, match="not well-formed"):
        parse_feed(b"<html><body>captcha<br></body></html>")


def test_whitespace_before_the_xml_declaration() -> None:
    """A blank line printed before ``<?xml`` (a CMS plugin): expat refuses it ("XML or
    text declaration not at start of entity"); feed readers read the feed."""
    doc = b"\n\r\n  " + rss("Title", "Body", '<?xml version="1.0" encoding="utf-8"?>').encode()
    assert [i.title for i in parse_feed(doc)] == ["Title"]
    with_bom = b"\xef\xbb\xbf\n" + rss("T", "B", '<?xml version="1.0"?>').encode()
    assert [i.title for i in parse_feed(with_bom)] == ["T"]


def test_http_charset_for_a_body_without_declaration() -> None:
    doc = rss("新闻标题", "你好").encode("gbk")
    [item] = parse_feed(doc, "gbk")
    assert item.title == "新闻标题"
    # a UTF-8 body is read as UTF-8 whatever the header says
    [item] = parse_feed(rss("新闻标题", "你好").encode(), "iso-8859-1")
    assert item.title == "新闻标题"


def test_utf16_and_latin1_are_read_as_before() -> None:
    doc = rss("Café", "Crème", '<?xml version="1.0" encoding="UTF-16"?>').encode("utf-16")
    assert parse_feed(doc)[0].title == "Café"
    doc = rss("Café", "Crème", '<?xml version="1.0" encoding="ISO-8859-1"?>').encode("latin-1")
    assert parse_feed(doc)[0].title == "Café"


async def test_the_client_passes_the_http_charset() -> None:
    doc = rss("新闻标题", "你好").encode("gbk")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=doc, headers={"content-type": "text/xml; charset=GBK"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = FeedClient(http, RecordingClock(T0), 1_000_000)
        items, _, _ = await client.fetch(URL, FeedState())
    assert items is not None and items[0].title == "新闻标题"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Mon, 09 Sep 2024 12:00:00 +08:00", datetime(2024, 9, 9, 4, tzinfo=UTC)),
        ("Mon, 09 Sep 2024 12:00:00 GMT+8", datetime(2024, 9, 9, 4, tzinfo=UTC)),
        ("Mon, 09 Sep 2024 12:00:00 GMT+0800", datetime(2024, 9, 9, 4, tzinfo=UTC)),
        ("Mon, 09 Sep 2024 12:00:00 UTC-05:30", datetime(2024, 9, 9, 17, 30, tzinfo=UTC)),
        ("Mon, 09 Sep 2024 12:00:00 CEST", datetime(2024, 9, 9, 10, tzinfo=UTC)),
        ("Mon, 09 Sep 2024 12:00:00 CET", datetime(2024, 9, 9, 11, tzinfo=UTC)),
        ("Mon, 09 Sep 2024 12:00:00 BST", datetime(2024, 9, 9, 11, tzinfo=UTC)),
        ("Mon, 09 Sep 2024 12:00:00 JST", datetime(2024, 9, 9, 3, tzinfo=UTC)),
        ("Mon, 09 Sep 2024 12:00:00 AEST", datetime(2024, 9, 9, 2, tzinfo=UTC)),
        # as before: the zones email.utils knows, none, and garbage
        ("Mon, 09 Sep 2024 12:00:00 EST", datetime(2024, 9, 9, 17, tzinfo=UTC)),
        ("Mon, 09 Sep 2024 12:00:00 PDT", datetime(2024, 9, 9, 19, tzinfo=UTC)),
        ("Mon, 09 Sep 2024 12:00:00 GMT", datetime(2024, 9, 9, 12, tzinfo=UTC)),
        ("Mon, 09 Sep 2024 12:00:00 +0800", datetime(2024, 9, 9, 4, tzinfo=UTC)),
        ("Mon, 09 Sep 2024 12:00:00", datetime(2024, 9, 9, 12, tzinfo=UTC)),
        ("2024-09-09T12:00:00Z", datetime(2024, 9, 9, 12, tzinfo=UTC)),
        ("2024-09-09T12:00:00+08:00", datetime(2024, 9, 9, 4, tzinfo=UTC)),
        ("2024-09-09T12:00:00", datetime(2024, 9, 9, 12, tzinfo=UTC)),
        ("not a date", None),
        ("Mon, 09 Sep 2024 12:00:00 IST", datetime(2024, 9, 9, 12, tzinfo=UTC)),  # ambiguous
    ],
)
def test_rfc822_zones(value: str, expected: datetime | None) -> None:
    assert _date(value) == expected
