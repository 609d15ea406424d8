"""A feed target's ``timezone``: the zone of the dates its feed writes without one (RSSHub's
Weibo and Douyin routes, many Chinese sites: Beijing time), which were read as UTC and so
dated 8 hours late. Dates with a zone or an offset are read as they say; "CST" is China
Standard Time in a Chinese feed (Asia/Shanghai, Asia/Taipei, Asia/Hong_Kong), US Central
elsewhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import ValidationError

from listener.config import SourcesConfig
from listener.cursors import MemoryCursorStore
from listener.sources import feeds
from listener.sources.feeds import FeedConfig, FeedsConfig, FeedsSource, map_item, parse_feed
from tests.unit.test_source_live import T0, EndingClock, deliver_all

URL = "http://rsshub.internal:1200/weibo/keyword/acme"
SHANGHAI = ZoneInfo("Asia/Shanghai")
NOON_UTC = datetime(2024, 1, 1, 12, tzinfo=UTC)
NOON_BEIJING = datetime(2024, 1, 1, 4, tzinfo=UTC)


def rss(date: str, tag: str = "pubDate") -> bytes:
    return (
        "<rss version='2.0' xmlns:dc='http://purl.org/dc/elements/1.1/'><channel>"
        f"<item><guid>g1</guid><title>acme</title><{tag}>{date}</{tag}></item>"
        "</channel></rss>"
    ).encode()


def atom(date: str) -> bytes:
    return (
        "<feed xmlns='http://www.w3.org/2005/Atom'><entry><id>e1</id><title>acme</title>"
        f"<updated>{date}</updated></entry></feed>"
    ).encode()


# --- the setting -----------------------------------------------------------------------


def test_a_feed_has_no_timezone_by_default() -> None:
    feed = FeedConfig(url=URL)
    assert feed.timezone is None and feed.zone is None


def test_a_feed_timezone_is_an_iana_name() -> None:
    feed = FeedConfig(url=URL, timezone="Asia/Shanghai")
    assert feed.timezone == "Asia/Shanghai" and feed.zone == SHANGHAI


@pytest.mark.parametrize("name", ["Asia/Beijing", "Asia", "CST", "+08:00", "../../etc/passwd", ""])
def test_an_unknown_timezone_is_refused_at_config_load(name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SourcesConfig.model_validate({"rss": {"feeds": [{"url": URL, "timezone": name}]}})
    message = str(caught.value)
    assert "rss.feeds.0.timezone" in message
    assert f"unknown timezone {name!r}" in message
    assert "Asia/Shanghai" in message  # the hint: an IANA name


# --- dates without a zone: the feed's -------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Mon, 01 Jan 2024 12:00:00", NOON_BEIJING),  # RFC 822 without a zone
        ("Mon, 01 Jan 2024 12:00", NOON_BEIJING),
        ("01 Jan 2024 12:00:00", NOON_BEIJING),
        ("2024-01-01 12:00:00", NOON_BEIJING),  # ISO 8601 without an offset
        ("2024-01-01T12:00:00", NOON_BEIJING),
        ("2024-01-01", datetime(2023, 12, 31, 16, tzinfo=UTC)),  # a date alone: midnight there
    ],
)
def test_a_date_without_a_zone_is_in_the_feeds_timezone(value: str, expected: datetime) -> None:
    assert feeds._date(value, SHANGHAI) == expected
    assert feeds._date(value) == expected + timedelta(hours=8)  # no timezone: UTC, as before


@pytest.mark.parametrize(
    "value",
    [
        "Mon, 01 Jan 2024 12:00:00 GMT",
        "Mon, 01 Jan 2024 12:00:00 UT",
        "Mon, 01 Jan 2024 12:00:00 +0000",
        "Mon, 01 Jan 2024 12:00:00 -0000",  # RFC 2822: UTC, the local zone unknown
        "Mon, 01 Jan 2024 20:00:00 +0800",
        "Mon, 01 Jan 2024 20:00:00 +08:00",
        "Mon, 01 Jan 2024 20:00:00 GMT+8",
        "Mon, 01 Jan 2024 21:00:00 JST",
        "Mon, 01 Jan 2024 07:00:00 EST",
        "Mon, 01 Jan 2024 12:00:00 IST",  # a name not guessed (India? Israel?): UTC, as before
        "2024-01-01T12:00:00Z",
        "2024-01-01T12:00:00+00:00",
        "2024-01-01T20:00:00+08:00",
        "2024-01-01T04:00:00-08:00",
    ],
)
def test_a_date_with_a_zone_is_read_as_it_says(value: str) -> None:
    assert feeds._date(value, SHANGHAI) == NOON_UTC
    assert feeds._date(value) == NOON_UTC


def test_a_zone_with_summer_time_is_read_at_that_date() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    assert feeds._date("2024-07-01 14:00:00", berlin) == datetime(2024, 7, 1, 12, tzinfo=UTC)
    assert feeds._date("2024-01-01 13:00:00", berlin) == NOON_UTC


def test_a_date_out_of_range_in_the_zone_is_no_date() -> None:
    assert feeds._date("0001-01-01T00:00:00", SHANGHAI) is None
    assert feeds._date("9999-12-31T23:00:00", ZoneInfo("America/Los_Angeles")) is None


# --- "CST" -----------------------------------------------------------------------------


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "Asia/Taipei", "Asia/Hong_Kong", "PRC"])
def test_cst_in_a_chinese_feed_is_china_standard_time(zone: str) -> None:
    assert feeds._date("Mon, 01 Jan 2024 20:00:00 CST", ZoneInfo(zone)) == NOON_UTC
    assert feeds._date("Mon, 01 Jan 2024 20:00:00 cst", ZoneInfo(zone)) == NOON_UTC


@pytest.mark.parametrize("zone", [None, "America/Chicago", "Europe/Berlin", "Asia/Tokyo"])
def test_cst_elsewhere_is_us_central(zone: str | None) -> None:
    tz = ZoneInfo(zone) if zone else None
    assert feeds._date("Mon, 01 Jan 2024 06:00:00 CST", tz) == NOON_UTC


# --- through the feed and the source ------------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [
        rss("Mon, 01 Jan 2024 12:00:00"),
        rss("2024-01-01 12:00:00", tag="dc:date"),
        atom("2024-01-01T12:00:00"),
        rss("Mon, 01 Jan 2024 12:00:00 CST"),
    ],
)
def test_parse_feed_reads_zoneless_dates_in_the_zone(doc: bytes) -> None:
    [item] = parse_feed(doc, zone=SHANGHAI)
    assert item.published == NOON_BEIJING
    feed = FeedConfig(url=URL, platform="weibo", timezone="Asia/Shanghai")
    assert map_item(item, feed, T0).created_at == NOON_BEIJING


async def test_the_source_dates_a_feeds_items_in_its_timezone() -> None:
    """Two targets, the same zone-less date: the one with ``timezone`` is dated in it."""
    published = T0 - timedelta(minutes=10)  # within the first read's lookback
    local = published.astimezone(SHANGHAI).strftime("%a, %d %b %Y %H:%M:%S")
    utc = published.strftime("%a, %d %b %Y %H:%M:%S")
    bodies = {"/weibo": rss(local), "/news": rss(utc)}
    config = FeedsConfig(
        feeds=[
            {"url": "http://rsshub.internal:1200/weibo", "platform": "weibo"}
            | {"timezone": "Asia/Shanghai"},
            {"url": "https://news.example.com/news", "platform": "news"},
        ],
        poll_seconds=60,
    )
    transport = httpx.MockTransport(lambda r: httpx.Response(200, content=bodies[r.url.path]))
    async with httpx.AsyncClient(transport=transport) as http:
        source = FeedsSource(config, http, EndingClock(polls=1), MemoryCursorStore())
        await source.start()
        got = await deliver_all(source)
    assert {m.source: m.created_at for m in got} == {"weibo": published, "news": published}
