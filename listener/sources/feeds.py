"""RSS (0.9x, 1.0, 2.0) and Atom feeds, polled politely (ETag / If-Modified-Since).

Needs nothing for public feeds: Google Alerts ("Deliver to: RSS feed" gives an Atom URL),
news sites' feeds, and RSSHub routes, which turn platforms without an open search API into
feeds. RSSHub is self-hosted by the user (https://docs.rsshub.app); the routes it offers
for Chinese platforms scrape those sites, with the legal risk that carries (see the
README's coverage table), and some need the user's own cookies in RSSHub's config:

* Weibo keyword search: ``/weibo/keyword/<keyword>``; a user's posts: ``/weibo/user/<uid>``
* Douyin user videos: ``/douyin/user/<sec_uid>``; hashtag: ``/douyin/hashtag/<cid>``
* Bilibili video search: ``/bilibili/vsearch/<keyword>``; user videos:
  ``/bilibili/user/video/<uid>``
* Zhihu hot list: ``/zhihu/hot``; a question's answers: ``/zhihu/question/<id>``
* Xiaohongshu user notes: ``/xiaohongshu/user/<user_id>/notes``

(route names change between RSSHub versions: check your instance's docs.)

Parsing uses ``defusedxml`` (no entity expansion, no external entities: a feed is input
from strangers); the body is read only up to ``max_bytes``. RSS 0.91-2.0 (``<rss>``), RSS
0.90 and 1.0 (``<rdf:RDF>``, still published by news agencies, government sites and many
Japanese and Chinese portals) and Atom are read; anything else is refused as that feed's
error. An item's identity is its ``guid``/``id``/``rdf:about`` (else its link, its title,
or a digest of its text and date); the cursor
remembers the validators and, per feed, the keys of every item the feed listed last (at
least ``remember_items``, at most ``MAX_ITEMS``), so neither a later poll nor a restart
delivers an item twice. Items are delivered oldest first; a date before ``EARLIEST`` is
not trusted (the item is dated when first seen). A date written without a zone or offset
is in the feed's ``timezone`` (UTC when unset: Chinese feeds mean Beijing time, and were
dated 8 hours late), see ``_date``.

The first read of a feed (the source's first run, a feed added to the config later, or
one whose saved cursor could not be read) publishes only the items dated
``initial_lookback_minutes`` before the source started, or later, as Hacker News, Reddit
and YouTube start their time marks: a feed lists what it holds, often months of items.
The older ones, and those without a (trusted) date, whose age is unknown, are marked seen
and never published; they are counted (``skips.backlog``) and logged once per feed. After
the first read, keys alone tell what is new, whatever its date. The state of a feed no
longer configured is dropped from the cursor on load (logged): re-added, it is read anew.

The cursor is written once per ``CHECKPOINT_ITEMS`` new items of a feed, not once per
item (it holds every feed's keys: ~18 KB a feed), and only the feeds whose state changed
are serialised again. It moves past an item only once that item and every one before it
were delivered (published, or dropped downstream); a process that stops or crashes while
a batch is being published delivers that batch again at its restart (dedup and the
idempotent stages downstream absorb it), never less.

A feed that redirects (http to https, a new path) is read where it points; a permanent
move (301, 308) is logged once with its new address, for the config.

Each feed is its own target: one that fails (moved: 404; a blocked RSSHub route: 403; a
captcha or error page instead of a feed; a 5xx) is skipped for a while, its wait doubling
from ``poll_seconds`` up to an hour, and listed in the source's health
(``failing_targets``); the other feeds go on being polled. No feed error stops the
source. An item that cannot be mapped is skipped, logged and counted; a saved cursor that
cannot be read is logged, counted and ignored (every feed is read as on a first run).
"""

from __future__ import annotations

import codecs
import hashlib
import html
import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit
from xml.etree.ElementTree import Element  # only the type; parsing is defusedxml
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from defusedxml import ElementTree
from pydantic import Field, field_validator

from core.clock import Clock
from core.events import Author, Mention
from core.metrics import Metrics
from core.settings import Section
from listener.backoff import (
    RateLimited,
    SlowAnswer,
    TargetUnavailable,
    check_response,
    read_at_most,
)
from listener.cursors import CursorStore
from listener.health import Coverage
from listener.sources import names
from listener.sources.live import EARLIEST, LiveSource, Step
from listener.sources.skips import UNREADABLE, digest, lookback_start, reason
from listener.sources.text import html_to_text

log = logging.getLogger(__name__)

ATOM = "{http://www.w3.org/2005/Atom}"
DC = "{http://purl.org/dc/elements/1.1/}"
CONTENT = "{http://purl.org/rss/1.0/modules/content/}"
RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
ACCEPTED = "RSS 0.9x/1.0/2.0, Atom"
"""The kinds of feed read, as a refusal names them."""
XML_BASE = "{http://www.w3.org/XML/1998/namespace}base"

MAX_ITEMS = 5000
"""The most items of one feed read per poll, and so the most item keys remembered per
feed (``remember_items`` may be set as high: a cursor of ~175 KB a feed)."""
_UNDATED = datetime.min.replace(tzinfo=UTC)  # sorts first
CHECKPOINT_ITEMS = 100
"""New items of a feed delivered per cursor checkpoint (see ``FeedsSource._deliver``)."""


class FeedConfig(Section):
    url: str
    platform: str = Field(
        "news",
        description="the Mention's source: news, google-alerts, weibo, douyin, bilibili...",
    )
    rsshub: bool = Field(
        False, description="an RSSHub route: it scrapes the platform (the source says so)"
    )
    timezone: str | None = Field(
        None,
        description="the IANA zone of the dates the feed writes without a zone or offset "
        '(RSSHub\'s Weibo and Douyin routes, most Chinese sites: "Asia/Shanghai"); '
        "unset: UTC. Dates with a zone or offset are read as they say",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return names.address(value, "a feed address")

    @field_validator("platform")
    @classmethod
    def _platform(cls, value: str) -> str:
        return names.lower_name(value, "the mentions' source", "google-alerts", longest=32)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Asia", a folder
            raise ValueError(
                f"unknown timezone {value!r}: give an IANA name, e.g. Asia/Shanghai (Beijing "
                "time), Asia/Taipei, Asia/Hong_Kong, Europe/Berlin (not an abbreviation such "
                "as CST, nor an offset)"
            ) from None
        return value

    @property
    def zone(self) -> ZoneInfo | None:
        """``timezone`` as a zone (``ZoneInfo`` keeps one instance per name)."""
        return ZoneInfo(self.timezone) if self.timezone else None


class FeedsConfig(Section):
    """Feeds polled in turn every ``poll_seconds``."""

    feeds: list[FeedConfig] = Field(..., min_length=1)
    poll_seconds: float = Field(300.0, ge=10)
    initial_lookback_minutes: float = Field(
        60.0,
        ge=0,
        description="the first read of a feed (a new one too) publishes only the items dated "
        "this long before the source started or later; older and undated ones are marked "
        "seen, never published",
    )
    remember_items: int = Field(500, ge=10, le=MAX_ITEMS)
    max_bytes: int = Field(5_000_000, ge=10_000)


@dataclass
class FeedItem:
    key: str
    title: str
    text: str
    link: str | None
    author: str | None
    published: datetime | None


@dataclass
class FeedState:
    etag: str | None = None
    modified: str | None = None
    seen: list[str] = field(default_factory=list)


class FeedClient:
    """GET with validators; parse RSS or Atom."""

    def __init__(self, http: httpx.AsyncClient, clock: Clock, max_bytes: int) -> None:
        self.http = http
        self.clock = clock
        self.max_bytes = max_bytes
        self.moved: dict[str, str] = {}
        """Feeds that moved for good (a 301 or 308): their URL → where they are read."""

    async def fetch(
        self, url: str, state: FeedState, zone: ZoneInfo | None = None
    ) -> tuple[list[FeedItem] | None, str | None, str | None]:
        """The feed's items (None when unchanged: 304) and its new validators; ``zone``:
        that of the dates the feed writes without one (none: UTC)."""
        headers = {"Accept": "application/atom+xml, application/rss+xml, application/xml"}
        if state.etag:
            headers["If-None-Match"] = state.etag
        if state.modified:
            headers["If-Modified-Since"] = state.modified
        what = f"feed {feed_label(url)}"
        # redirects are followed, as every feed reader does: a feed moves (http to https,
        # a new path, FeedBurner), and a feed asks for no credential that one could leak
        async with self.http.stream("GET", url, headers=headers, follow_redirects=True) as response:
            self._moved(url, response)
            # every feed is its own target: a refusal concerns that feed (a moved feed, a
            # blocked RSSHub route), never a credential of the whole source
            check_response(
                response, self.clock.now(), what=what, target_statuses=(401, 403, 404, 410)
            )
            if response.status_code == 304:
                return None, state.etag, state.modified
            body = await self._read(response, what)
        # the feed's own problems (too large, a captcha or error page served with 200):
        # retried on the target's long backoff, not as an outage of the whole source
        try:
            items = parse_feed(body, response.charset_encoding, zone)
        except ValueError as exc:
            raise TargetUnavailable(f"{what}: {exc}") from None
        return items, response.headers.get("etag"), response.headers.get("last-modified")

    def _moved(self, url: str, response: httpx.Response) -> None:
        """Log (once per feed and place) that the feed at ``url`` moved for good (a 301 or
        308 on the way to ``response``): it is read there, but the config should say so."""
        if not any(hop.status_code in (301, 308) for hop in response.history):
            return
        where = str(response.url.copy_with(query=None, fragment=None))
        if self.moved.get(url) == where:
            return
        self.moved[url] = where
        log.warning(
            "feed %s moved permanently to %s (HTTP 301/308): read there; put the new "
            "address in listener.sources.rss.feeds",
            feed_label(url),
            where,
        )

    async def _read(self, response: httpx.Response, what: str) -> bytes:
        """The body, read only up to ``max_bytes``: a hostile or broken server could send
        gigabytes, which must not be held in memory before being refused."""
        try:
            body = await read_at_most(response, self.max_bytes)
        except SlowAnswer as exc:  # this feed's server: its target backs off, not the source
            raise TargetUnavailable(f"{what}: {exc}") from None
        if body is None:
            raise TargetUnavailable(f"{what}: larger than {self.max_bytes} bytes")
        return body


def feed_label(url: str) -> str:
    """How logs and health name a feed: host and path (never the query: it may hold a
    token)."""
    parts = urlsplit(url)
    return f"{parts.hostname}{parts.path}"


def _text(element: Element | None) -> str:
    return (element.text or "").strip() if element is not None else ""


def _markup(element: Element | None) -> str:
    """An Atom text construct as the markup ``html_to_text`` reads: its text for
    ``type="text"``/``"html"``, and for ``"xhtml"`` (a child ``<div>``, RFC 4287 3.1.1.3)
    its subtree rebuilt as HTML, so that its paragraphs and breaks stay lines."""
    if element is None or element.get("type") != "xhtml":
        return _text(element)
    parts = [html.escape(element.text or "", quote=False)]
    # a stack, not recursion: a feed nesting thousands of elements is no RecursionError;
    # a string on it is a closing tag (and the text after it) still to write
    stack: list[Element | str] = list(reversed(element))
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            parts.append(node)
            continue
        name = str(node.tag).rpartition("}")[2]  # the XHTML namespace dropped
        parts.append(f"<{name}>" + html.escape(node.text or "", quote=False))
        stack.append(f"</{name}>" + html.escape(node.tail or "", quote=False))
        stack.extend(reversed(node))
    return "".join(parts).strip()


def _content_key(body: str, date: str) -> str:
    """The key of an item without a guid, id, link or title (RSS 2.0 needs only a
    description): a digest of what it says and when, the same at every poll."""
    return digest([body, date])


_COLON_OFFSET = re.compile(r"([+-])(\d{2}):(\d{2})$")
_GMT_OFFSET = re.compile(r"\b(?:GMT|UTC|UT)([+-])(\d{1,2})(?::?(\d{2}))?$", re.IGNORECASE)
_ZONE_NAME = re.compile(r"\b([A-Za-z]{3,4})$")
_NO_ZONE = re.compile(r"(?:^|\s)[\d:.]+$")
"""An RFC 822 date that ends with its time (or its year): one written without a zone."""
CHINA_STANDARD_TIME = frozenset(
    {
        "Asia/Shanghai",
        "Asia/Chongqing",
        "Asia/Chungking",
        "Asia/Harbin",
        "PRC",
        "Asia/Taipei",
        "ROC",
        "Asia/Hong_Kong",
        "Hongkong",
        "Asia/Macau",
        "Asia/Macao",
    }
)
"""Feed timezones in which a date's "CST" is China Standard Time (+08:00), as Chinese
sites and RSSHub's Chinese routes mean it; elsewhere it is US Central (-06:00), as
``email.utils`` reads it."""
_ZONES = {
    # zone names feeds write that ``email.utils`` does not know (it knows UT, UTC, GMT,
    # Z and the North American ones): read as UTC, such a date was hours off. Ambiguous
    # names (IST: India, Ireland or Israel) are not guessed.
    "WET": "+0000",
    "WEST": "+0100",
    "BST": "+0100",
    "CET": "+0100",
    "CEST": "+0200",
    "MET": "+0100",
    "MEST": "+0200",
    "EET": "+0200",
    "EEST": "+0300",
    "MSK": "+0300",
    "HKT": "+0800",
    "SGT": "+0800",
    "AWST": "+0800",
    "JST": "+0900",
    "KST": "+0900",
    "ACST": "+0930",
    "AEST": "+1000",
    "AEDT": "+1100",
    "NZST": "+1200",
    "NZDT": "+1300",
}


def _rfc822_zone(value: str, zone: ZoneInfo | None = None) -> str:
    """An RFC 822 date with its zone as ``email.utils`` reads it: an offset written
    ``+08:00`` or ``GMT+8`` (PHP and Go generators, many Chinese feeds), or a zone name it
    does not know (CET, JST...), as ``+HHMM``; it took them for no zone (UTC), hours off.
    "CST" in a feed whose ``zone`` is China's (``CHINA_STANDARD_TIME``) is ``+0800``."""
    value = value.strip()
    if match := _GMT_OFFSET.search(value):
        sign, hours, minutes = match.groups()
        return f"{value[: match.start()]}{sign}{int(hours):02d}{minutes or '00'}"
    if match := _COLON_OFFSET.search(value):
        return value[: match.start()] + "".join(match.groups())
    if match := _ZONE_NAME.search(value):
        name = match.group(1).upper()
        if name == "CST" and zone is not None and zone.key in CHINA_STANDARD_TIME:
            return value[: match.start()] + "+0800"
        if name in _ZONES:
            return value[: match.start()] + _ZONES[name]
    return value


def _date(value: str, zone: ZoneInfo | None = None) -> datetime | None:
    """An item's date: RFC 822 (RSS 2.0's ``pubDate``) or ISO 8601 / W3CDTF (``dc:date``,
    Atom), with or without a time or an offset, ``t``/``z`` in either case (RFC 3339).
    A date written without a zone or offset is in ``zone`` (the feed's ``timezone``;
    none: UTC); one with a zone or offset is read as it says, as is an RFC 822 ``-0000``
    (UTC) and a zone name ``email.utils`` does not know (UTC: an ambiguous IST is not
    guessed). ``None`` for anything else, and for a year or a month alone (W3CDTF allows
    them): too vague to date an item, which is dated when first seen instead."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        try:
            value = _rfc822_zone(value, zone)
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if parsed.tzinfo is None and not _NO_ZONE.search(value):
            parsed = parsed.replace(tzinfo=UTC)  # "-0000", or a name it does not know
    try:
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=zone or UTC)
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00: no date, not a broken feed
        return None


def _join(base: str, link: str) -> str:
    """``link`` resolved against ``base`` (a relative link made absolute); ``link`` as it
    is when there is no base or either cannot be read as a URL (one odd link must not
    fail its item, let alone its feed)."""
    if not base:
        return link
    try:
        return urljoin(base, link)
    except ValueError:  # "http://[::1": not a URL
        return link


def _unwrap_google(link: str | None) -> str | None:
    """Google Alerts links point at google.com/url?url=<the article>."""
    if link and link.startswith("https://www.google.com/url"):
        target = parse_qs(urlsplit(link).query).get("url")
        if target:
            return target[0]
    return link


def _namespace(tag: str) -> str:
    """The ``{namespace}`` part of an ElementTree tag, ``""`` when it has none."""
    return tag[: tag.index("}") + 1] if tag.startswith("{") else ""


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _rss_items(root: Element) -> list[Element]:
    """The items of an RSS document, in document order: every ``<item>`` in no namespace
    (wherever it is, as always), and an ``item`` in any namespace that is a child of the
    root or of a top-level ``channel`` (where RSS puts them: RSS 1.0 and 0.90 in their
    namespace, an RSS 2.0 feed or its items declaring a default namespace). Deeper
    namespaced ``item`` elements belong to extensions, not to the feed."""
    containers = [root, *(child for child in root if _local(child.tag) == "channel")]
    listed = {id(child) for parent in containers for child in parent if _local(child.tag) == "item"}
    return [element for element in root.iter() if element.tag == "item" or id(element) in listed]


_DECLARATION = re.compile(rb"<\?xml\s[^>]*?\bencoding\s*=\s*([\"'])([A-Za-z][\w.:-]*)\1")
_EXPAT_NATIVE = {"utf-8", "utf-16", "utf-16-le", "utf-16-be", "ascii", "iso8859-1"}
"""Encodings (``codecs`` names) expat reads itself; the others are read through Python."""
_WIDER = {
    # the labels' usual meaning on the web (WHATWG Encoding): feeds declared GB2312 hold
    # GBK characters, Big5 ones HKSCS, Shift_JIS ones Windows-31J, EUC-KR ones UHC
    "gb2312": "gb18030",
    "gb_2312-80": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "big5": "big5hkscs",
    "big5-hkscs": "big5hkscs",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "windows-31j": "cp932",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
}
_SPACE = b" \t\r\n"


def _codec(label: str) -> str | None:
    """The ``codecs`` name of an encoding label; None for one Python does not know."""
    label = label.strip().lower()
    try:
        return codecs.lookup(_WIDER.get(label, label)).name
    except LookupError:
        return None


def _as_utf8(body: bytes, codec: str, declaration: re.Match[bytes] | None) -> bytes | None:
    """``body`` read in ``codec`` (a byte it cannot read replaced) and written as UTF-8,
    its declaration saying so; None when ``codec`` is no text encoding (rot13...)."""
    if declaration is not None:  # ASCII in every encoding read here: replaced as bytes
        start, end = declaration.span(2)
        body = body[:start] + b"UTF-8" + body[end:]
    try:
        return body.decode(codec, "replace").encode("utf-8")
    except (LookupError, UnicodeError):
        return None


def _readable(body: bytes) -> bytes:
    """``body`` as expat reads it. Whitespace before the XML declaration (a blank line
    printed by a CMS plugin: "declaration not at start of entity") is dropped; a body
    declared in an encoding expat cannot read (multi-byte ones: GB2312, GBK, Big5,
    Shift_JIS, EUC-JP, EUC-KR, common in Chinese, Japanese and Korean feeds: "multi-byte
    encodings are not supported") is decoded here and handed over as UTF-8."""
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return body
    bom = codecs.BOM_UTF8 if body.startswith(codecs.BOM_UTF8) else b""
    rest = body[len(bom) :]
    if rest[:1] in (b" ", b"\t", b"\r", b"\n") and rest.lstrip(_SPACE).startswith(b"<?xml"):
        body = bom + rest.lstrip(_SPACE)
    declaration = _declaration(body)
    codec = _codec(declaration.group(2).decode("ascii")) if declaration else None
    if codec is None or codec in _EXPAT_NATIVE:
        return body
    return _as_utf8(body, codec, declaration) or body


def _declaration(body: bytes) -> re.Match[bytes] | None:
    """The encoding declaration of ``body``'s XML declaration (its first bytes)."""
    start = len(codecs.BOM_UTF8) if body.startswith(codecs.BOM_UTF8) else 0
    if not body.startswith(b"<?xml", start):
        return None
    head = body[start : body.find(b"?>", start, start + 512) + 2]
    return _DECLARATION.match(body, start, start + len(head)) if len(head) > 2 else None


def _repaired(body: bytes, charset: str | None) -> bytes | None:
    """``body`` (that expat refused) with the bytes its encoding cannot read replaced,
    in UTF-8: its declared encoding, else the HTTP ``charset``, else UTF-8. A feed holding
    one stray byte (a summary cut inside a multi-byte character, one line pasted from
    Latin-1) was refused whole, at every poll. None when every byte reads: the document
    itself is not well-formed, or the encoding is unknown (UTF-16: as it was)."""
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return None
    declaration = _declaration(body)
    if declaration is not None:
        codec = _codec(declaration.group(2).decode("ascii"))
    else:
        codec = _codec(charset or "utf-8")
    if codec is None or codec.startswith("utf-16") or codec.startswith("utf-32"):
        return None
    try:
        body.decode(codec)
    except UnicodeDecodeError:
        return _as_utf8(body, codec, declaration)
    except LookupError:
        return None
    if declaration is None and codec != "utf-8":  # no declaration: expat read UTF-8
        return _as_utf8(body, codec, None)
    return None


def parse_feed(
    body: bytes, charset: str | None = None, zone: ZoneInfo | None = None
) -> list[FeedItem]:
    """Items of an RSS (0.9x, 1.0, 2.0) or Atom document. Raises ``ValueError`` for
    anything else. ``charset``: the HTTP ``Content-Type``'s, for a body that declares
    no encoding and is not UTF-8. ``zone``: that of the dates written without one (the
    feed's ``timezone``; none: UTC)."""
    body = _readable(body)
    try:
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError:
            repaired = _repaired(body, charset)
            if repaired is None:
                raise
            root = ElementTree.fromstring(repaired)
    except ElementTree.ParseError as exc:
        raise ValueError(f"not well-formed XML: {exc}") from None
    except Exception as exc:  # defusedxml's refusals (entities, DTDs)
        raise ValueError(f"refused XML: {type(exc).__name__}") from None
    if root.tag == f"{ATOM}feed":
        base = root.get(XML_BASE) or ""
        return [_atom_item(entry, base, zone) for entry in root.iter(f"{ATOM}entry")]
    # <rss> in any namespace: some feeds declare UserLand's RSS 2.0 namespace, or Atom's
    # by mistake (meant for atom:link), as the default
    if _local(root.tag) == "rss":
        return [_rss_item(item, zone=zone) for item in _rss_items(root)]
    if root.tag == f"{RDF}RDF":  # RSS 1.0 and 0.90: channel and items are the root's children
        if any(_local(child.tag) in ("channel", "item") for child in root):
            return [_rss_item(item, rdf=True, zone=zone) for item in _rss_items(root)]
        raise ValueError(
            "not an RSS or Atom feed (an RDF document without an RSS channel or item; "
            f"accepted: {ACCEPTED})"
        )
    raise ValueError(f"not an RSS or Atom feed (root element {root.tag!r}; accepted: {ACCEPTED})")


def _web_url(value: str) -> str | None:
    """``value`` when it is an absolute http(s) URL (one an operator can open)."""
    return value if value.lower().startswith(("http://", "https://")) else None


def _rss_item(item: Element, *, rdf: bool = False, zone: ZoneInfo | None = None) -> FeedItem:
    """An RSS item, its elements read in the item's own namespace (none in RSS 2.0;
    RSS 1.0's or 0.90's in an RDF feed). Its identity is the ``guid`` (RSS 2.0) or
    ``rdf:about`` (RSS 1.0); its link is ``<link>``, else that identity when it is a web
    URL and a permalink: a ``guid`` not marked ``isPermaLink="false"``, or ``rdf:about``
    (which RSS 1.0 says should be the link)."""
    ns = _namespace(item.tag)
    if rdf:
        identity = (item.get(f"{RDF}about") or "").strip()
        permalink = _web_url(identity)
    else:
        guid = item.find(f"{ns}guid")
        identity = _text(guid)
        marked = guid.get("isPermaLink", "true") if guid is not None else "false"
        permalink = _web_url(identity) if marked.strip().lower() != "false" else None
    link = _text(item.find(f"{ns}link")) or permalink
    body = _text(item.find(f"{CONTENT}encoded")) or _text(item.find(f"{ns}description"))
    title = _text(item.find(f"{ns}title"))
    date = _text(item.find(f"{ns}pubDate")) or _text(item.find(f"{DC}date"))
    return FeedItem(
        key=identity or link or title or _content_key(body, date),
        title=html_to_text(title),
        text=html_to_text(body),
        link=link,
        author=_text(item.find(f"{DC}creator")) or _text(item.find(f"{ns}author")) or None,
        published=_date(date, zone),
    )


def _atom_item(entry: Element, base: str = "", zone: ZoneInfo | None = None) -> FeedItem:
    """An Atom entry; a relative link resolved against the ``xml:base`` of the feed and
    of the entry (RFC 4287 allows relative IRIs; the feed's URL is the last base, applied
    by ``map_item``)."""
    base = _join(base, entry.get(XML_BASE) or "")
    link: str | None = None
    for candidate in entry.findall(f"{ATOM}link"):
        if candidate.get("rel", "alternate") == "alternate":
            href = candidate.get("href")
            link = _join(base, href) if href else href
            break
    body = _markup(entry.find(f"{ATOM}content")) or _markup(entry.find(f"{ATOM}summary"))
    title = _markup(entry.find(f"{ATOM}title"))
    date = _text(entry.find(f"{ATOM}published")) or _text(entry.find(f"{ATOM}updated"))
    author = entry.find(f"{ATOM}author")
    return FeedItem(
        key=_text(entry.find(f"{ATOM}id")) or link or title or _content_key(body, date),
        title=html_to_text(title),
        text=html_to_text(body),
        link=_unwrap_google(link),
        author=(_text(author.find(f"{ATOM}name")) or None) if author is not None else None,
        published=_date(date, zone),
    )


def item_key(feed_url: str, key: str) -> str:
    return hashlib.sha256(f"{feed_url}\n{key}".encode()).hexdigest()[:32]


def trusted(published: datetime | None) -> bool:
    """Whether an item's date is one to keep (a later one is re-dated by the base when
    ahead of the clock, as every source's)."""
    return published is not None and published >= EARLIEST


def map_item(item: FeedItem, feed: FeedConfig, now: datetime) -> Mention:
    parts = [item.title] if item.text == item.title else [item.title, item.text]
    text = "\n".join(part for part in parts if part)  # no empty line for a missing title
    return Mention(
        id=f"{feed.platform}:{item_key(feed.url, item.key)}",
        source=feed.platform,
        url=_join(feed.url, item.link) if item.link else None,  # a relative link too
        text=text[:40_000],
        created_at=item.published if trusted(item.published) else now,
        author=Author(handle=item.author[:200] if item.author else None),
    )


RSSHUB_COVERAGE = Coverage(
    needs="scraping (legal risk)",
    covers="RSSHub routes (self-hosted): Weibo keyword search, Douyin, Bilibili, Zhihu, "
    "Xiaohongshu",
    misses="what the route does not list; routes break when the platform changes; some "
    "need your cookies",
    resumes="ETag/Last-Modified and the keys of recent items, per feed",
)


class FeedsSource(LiveSource):
    kind = "rss"
    coverage = Coverage(
        needs="nothing",
        covers="RSS (0.9x/1.0/2.0) and Atom feeds: Google Alerts, news sites",
        misses="posts the feed does not list",
        resumes="ETag/Last-Modified and the keys of recent items, per feed",
    )

    def __init__(
        self,
        config: FeedsConfig,
        http: httpx.AsyncClient,
        clock: Clock,
        cursors: CursorStore,
        metrics: Metrics | None = None,
        *,
        name: str = "rss",
    ) -> None:
        super().__init__(name, clock, cursors, metrics)
        self.config = config
        self.client = FeedClient(http, clock, config.max_bytes)
        self.failing.first = config.poll_seconds
        self._capped: set[str] = set()  # feeds listing more than MAX_ITEMS (logged once)
        self._misdated: set[str] = set()  # feeds dating items before EARLIEST (logged once)
        if any(feed.rsshub for feed in config.feeds):  # the strictest need is the one stated
            self.health.coverage = RSSHUB_COVERAGE

    def check_cursor(self, cursor: str) -> None:
        _load(cursor)

    async def stream(self, cursor: str | None) -> AsyncIterator[Step]:
        """Each feed in turn, then a sleep. A feed that fails (any error: HTTP, a page that
        is not a feed, too large) is skipped with a backoff of its own (``failing``)
        while the others go on; the source's state is ``waiting`` while every feed
        fails. The first read of a feed (one the cursor does not hold) publishes only
        what is newer than ``initial_lookback_minutes`` (``_backlog``)."""
        saved = _Cursor(self._configured(_load(cursor)))
        states = saved.states
        since = lookback_start(self.started_at, self.config.initial_lookback_minutes)
        targets = len({feed.url for feed in self.config.feeds})
        self.health.set_state("polling")
        while True:
            for feed in self.config.feeds:
                if not self.failing.due(feed.url):
                    continue
                # a feed enters the cursor only once read: one whose first read failed is
                # read as a first read again
                state = states.get(feed.url) or FeedState()
                first = feed.url not in states
                label = feed_label(feed.url)
                try:
                    items, etag, modified = await self.client.fetch(feed.url, state, feed.zone)
                except RateLimited as exc:
                    self.failing.failed(feed.url, label, exc, wait=exc.delay, targets=targets)
                    continue
                except Exception as exc:
                    self.failing.failed(feed.url, label, exc, targets=targets)
                    continue
                self.failing.succeeded(feed.url)
                fresh = self._fresh(feed, state, items)
                states[feed.url] = state
                if first:  # before any step: a cursor holding the feed holds its backlog
                    fresh = self._backlog(feed, state, fresh, since)
                if items is not None:  # (a 304 changes nothing: the feed's part is kept)
                    saved.changed(feed.url)
                async for step in self._deliver(feed, state, fresh, saved):
                    yield step
                if (etag, modified) != (state.etag, state.modified):
                    state.etag, state.modified = etag, modified
                    saved.changed(feed.url)
                yield None, saved.dump()
            self.health.set_state("waiting" if self.failing.count == targets else "polling")
            await self.clock.sleep(self.config.poll_seconds)

    def _configured(self, states: dict[str, FeedState]) -> dict[str, FeedState]:
        """The saved states of the feeds configured now, that were read: a feed removed
        from the config is dropped (logged once), so that the cursor does not keep it for
        ever (re-added later, it is read as a first read); an entry holding nothing (no
        keys, no validators: saved by an older version for a feed never read) is not a
        read, so that feed's first read is one."""
        urls = {feed.url for feed in self.config.feeds}
        removed = [url for url in states if url not in urls]
        if removed:
            log.info(
                "source %s: the saved states of %d feeds no longer configured are dropped",
                self.name,
                len(removed),
            )
        return {
            url: state
            for url, state in states.items()
            if url in urls and (state.seen or state.etag or state.modified)
        }

    async def _deliver(
        self,
        feed: FeedConfig,
        state: FeedState,
        fresh: list[tuple[str, FeedItem]],
        saved: _Cursor,
    ) -> AsyncIterator[Step]:
        """The steps of ``fresh`` (new items of ``feed``, oldest first), in batches of
        ``CHECKPOINT_ITEMS``. Every mention of a batch carries the cursor from before the
        batch, and a last step the cursor after it: the base makes that one the position
        once the batch's last mention is delivered (and so every mention before it), so a
        saved cursor never holds the key of an item not yet published, while the cursor
        (every feed's remembered keys) is serialised once per batch, not once per item.
        A crash within a batch publishes its items again (dedup drops them)."""
        if not fresh:
            return
        position = saved.dump()
        for start in range(0, len(fresh), CHECKPOINT_ITEMS):
            for key, item in fresh[start : start + CHECKPOINT_ITEMS]:
                state.seen.append(key)
                if item.published is not None and not trusted(item.published):
                    self._misdated_item(feed, item.published)
                try:
                    mention = map_item(item, feed, self.clock.now())
                except UNREADABLE as exc:
                    self.skips.skip(
                        f"malformed item of feed {feed_label(feed.url)} skipped ({reason(exc)})",
                        key=key,
                    )
                    continue  # its key is in the position after the batch
                yield mention, position
            saved.changed(feed.url)
            position = saved.dump()
            yield None, position

    def _backlog(
        self,
        feed: FeedConfig,
        state: FeedState,
        fresh: list[tuple[str, FeedItem]],
        since: datetime,
    ) -> list[tuple[str, FeedItem]]:
        """The items of a feed's first read to publish: those dated ``since`` or later.
        The others, dated before it or not dated (their age is unknown, and a feed's
        first page is mostly old), are marked seen in ``state`` and never published;
        counted and logged once (``skips.backlogged``). After the first read, keys tell
        what is new, dated or not."""
        new: list[tuple[str, FeedItem]] = []
        old = undated = 0
        for key, item in fresh:
            if not trusted(item.published):
                if item.published is not None:  # a broken date: the feed is told of
                    self._misdated_item(feed, item.published)
                undated += 1
            elif item.published is not None and item.published < since:
                old += 1
            else:
                new.append((key, item))
                continue
            state.seen.append(key)
        self.skips.backlogged(
            f"feed {feed_label(feed.url)}", old=old, undated=undated, new=len(new), since=since
        )
        return new

    def _fresh(
        self, feed: FeedConfig, state: FeedState, items: list[FeedItem] | None
    ) -> list[tuple[str, FeedItem]]:
        """The items of a poll not delivered before, with their keys, oldest first; the
        keys in ``state.seen`` that need not be remembered any more are dropped, leaving
        room for these. ``None`` (unchanged: 304): none, and nothing is forgotten (the
        page is as large as it was).

        Keys, not dates, tell what was delivered: many feeds have no dates, or wrong ones
        (a time zone, year 1), and items do not always come in date order. So every key
        of the feed's latest page is remembered however many there are (up to
        ``MAX_ITEMS``: a larger page is cut to it), with the most recent others up to
        ``remember_items`` (an item that leaves the feed for a while is not repeated)."""
        if items is None:
            return []
        page = self._newest(feed, items)
        keys = [item_key(feed.url, item.key) for item in page]
        known = set(state.seen)
        fresh: dict[str, FeedItem] = {}
        for key, item in zip(keys, page, strict=True):
            if key not in known:
                fresh.setdefault(key, item)  # the same key twice in a page: one item
        room = max(self.config.remember_items, len(page)) - len(fresh)
        state.seen = _forget(state.seen, set(keys), room)
        return sorted(fresh.items(), key=lambda pair: pair[1].published or _UNDATED)

    def _newest(self, feed: FeedConfig, items: list[FeedItem]) -> list[FeedItem]:
        """The newest ``MAX_ITEMS`` of ``items``: more keys would not fit the cursor, and
        an item whose key cannot be remembered would be delivered again at every poll.
        The others are skipped, logged and counted once per feed (they are mostly the
        same old items at every poll)."""
        if len(items) <= MAX_ITEMS:
            return items
        if all(item.published for item in items):
            items = sorted(items, key=lambda i: i.published or _UNDATED, reverse=True)
        # else as listed: feeds list newest first, and undated items tell nothing better
        if feed.url not in self._capped:
            self._capped.add(feed.url)
            self.health.page_cap()
            log.warning(
                "source %s: feed %s lists %d items; only the newest %d are read, the older "
                "are skipped (logged once)",
                self.name,
                feed_label(feed.url),
                len(items),
                MAX_ITEMS,
            )
        return items[:MAX_ITEMS]

    def _misdated_item(self, feed: FeedConfig, published: datetime) -> None:
        """An item dated before ``EARLIEST`` (``map_item`` dates it when first seen):
        logged and counted once per feed, as one error (a broken feed generator dates
        every item so)."""
        label = feed_label(feed.url)
        if feed.url in self._misdated:
            log.debug("source %s: feed %s dates an item %s", self.name, label, published)
            return
        self._misdated.add(feed.url)
        message = (
            f"feed {label} dates items before {EARLIEST.year} ({published.date()}): they are "
            "dated when first seen instead"
        )
        self.health.error(message)
        log.warning("source %s: %s", self.name, message)


def _forget(seen: list[str], page: set[str], room: int) -> list[str]:
    """``seen`` less its oldest keys that are not in ``page``, down to ``room`` keys; every
    key of ``page`` is kept (forgetting one would deliver its item again)."""
    extra = len(seen) - room
    if extra <= 0:
        return seen
    kept: list[str] = []
    for key in seen:
        if extra > 0 and key not in page:
            extra -= 1
        else:
            kept.append(key)
    return kept


def _load(cursor: str | None) -> dict[str, FeedState]:
    """The feeds' states, as the cursor holds them. Raises ``ValueError`` (``TypeError``)
    for a cursor that cannot be read."""
    if not cursor:
        return {}
    raw: Any = json.loads(cursor)
    if not isinstance(raw, dict):
        raise TypeError(f"the cursor is an object, not {type(raw).__name__}")
    states: dict[str, FeedState] = {}
    for url, value in raw.items():
        if not isinstance(value, dict):
            raise TypeError(f"the state of a feed is an object, not {type(value).__name__}")
        state = FeedState(**value)  # unknown fields: TypeError
        seen = state.seen
        validators = (state.etag, state.modified)
        if not isinstance(seen, list) or not all(isinstance(k, str) for k in seen):
            raise TypeError("the keys seen of a feed are a list of strings")
        if not all(v is None or isinstance(v, str) for v in validators):
            raise TypeError("the validators of a feed (etag, modified) are strings")
        states[url] = state
    return states


def _dump(states: dict[str, FeedState]) -> str:
    return json.dumps({url: _state_json(s) for url, s in states.items()})


def _state_json(state: FeedState) -> dict[str, Any]:
    return {"etag": state.etag, "modified": state.modified, "seen": state.seen}


class _Cursor:
    """The feeds' states and their cursor (``_dump``'s JSON, to the byte), each feed's part
    kept serialised until ``changed`` says it changed: a dump costs what changed (and
    joining the parts), not the whole cursor (~18 KB a feed remembering 500 keys)."""

    def __init__(self, states: dict[str, FeedState]) -> None:
        self.states = states
        self._parts: dict[str, str] = {}

    def changed(self, url: str) -> None:
        self._parts.pop(url, None)

    def dump(self) -> str:
        parts: list[str] = []
        for url, state in self.states.items():
            part = self._parts.get(url)
            if part is None:
                part = self._parts[url] = f"{json.dumps(url)}: {json.dumps(_state_json(state))}"
            parts.append(part)
        return "{" + ", ".join(parts) + "}"
