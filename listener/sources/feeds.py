"""RSS 2.0 and Atom feeds, polled politely (ETag / If-Modified-Since).

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
from strangers). An item's identity is its ``guid``/``id`` (else its link); the cursor
remembers the last ``remember_items`` item keys per feed and the validators, so a restart
delivers each item once. Items are delivered oldest first.

Each feed is its own target: one that fails (moved: 404; a blocked RSSHub route: 403; a
captcha or error page instead of a feed; a 5xx) is skipped for a while, its wait doubling
from ``poll_seconds`` up to an hour, and listed in the source's health
(``failing_targets``); the other feeds go on being polled. No feed error stops the
source. An item that cannot be mapped is skipped, logged and counted; a saved cursor that
cannot be read is logged, counted and ignored (every feed is read as on a first run).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.etree.ElementTree import Element  # only the type; parsing is defusedxml

import httpx
from defusedxml import ElementTree
from pydantic import Field

from core.clock import Clock
from core.events import Author, Mention
from core.metrics import Metrics
from core.settings import Section
from listener.backoff import RateLimited, TargetUnavailable, check_response
from listener.cursors import CursorStore
from listener.health import Coverage
from listener.sources.live import LiveSource, Step
from listener.sources.skips import UNREADABLE, reason
from listener.sources.text import html_to_text

log = logging.getLogger(__name__)

ATOM = "{http://www.w3.org/2005/Atom}"
DC = "{http://purl.org/dc/elements/1.1/}"
CONTENT = "{http://purl.org/rss/1.0/modules/content/}"


class FeedConfig(Section):
    url: str = Field(..., pattern=r"^https?://\S+$")
    platform: str = Field(
        "news",
        pattern=r"^[a-z0-9_.-]{1,32}$",
        description="the Mention's source: news, google-alerts, weibo, douyin, bilibili...",
    )
    rsshub: bool = Field(
        False, description="an RSSHub route: it scrapes the platform (the source says so)"
    )


class FeedsConfig(Section):
    """Feeds polled in turn every ``poll_seconds``."""

    feeds: list[FeedConfig] = Field(..., min_length=1)
    poll_seconds: float = Field(300.0, ge=10)
    remember_items: int = Field(500, ge=10, le=5000)
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
    """GET with validators; parse RSS 2.0 or Atom."""

    def __init__(self, http: httpx.AsyncClient, clock: Clock, max_bytes: int) -> None:
        self.http = http
        self.clock = clock
        self.max_bytes = max_bytes

    async def fetch(
        self, url: str, state: FeedState
    ) -> tuple[list[FeedItem], str | None, str | None]:
        """The feed's items (empty when unchanged: 304) and its new validators."""
        headers = {"Accept": "application/atom+xml, application/rss+xml, application/xml"}
        if state.etag:
            headers["If-None-Match"] = state.etag
        if state.modified:
            headers["If-Modified-Since"] = state.modified
        response = await self.http.get(url, headers=headers)
        what = f"feed {feed_label(url)}"
        # every feed is its own target: a refusal concerns that feed (a moved feed, a
        # blocked RSSHub route), never a credential of the whole source
        check_response(response, self.clock.now(), what=what, target_statuses=(401, 403, 404, 410))
        if response.status_code == 304:
            return [], state.etag, state.modified
        # the feed's own problems (too large, a captcha or error page served with 200):
        # retried on the target's long backoff, not as an outage of the whole source
        if len(response.content) > self.max_bytes:
            raise TargetUnavailable(f"{what}: larger than {self.max_bytes} bytes")
        try:
            items = parse_feed(response.content)
        except ValueError as exc:
            raise TargetUnavailable(f"{what}: {exc}") from None
        return items, response.headers.get("etag"), response.headers.get("last-modified")


def feed_label(url: str) -> str:
    """How logs and health name a feed: host and path (never the query: it may hold a
    token)."""
    parts = urlsplit(url)
    return f"{parts.hostname}{parts.path}"


def _text(element: Element | None) -> str:
    return (element.text or "").strip() if element is not None else ""


def _date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
    try:
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00: no date, not a broken feed
        return None


def _unwrap_google(link: str | None) -> str | None:
    """Google Alerts links point at google.com/url?url=<the article>."""
    if link and link.startswith("https://www.google.com/url"):
        target = parse_qs(urlsplit(link).query).get("url")
        if target:
            return target[0]
    return link


def parse_feed(body: bytes) -> list[FeedItem]:
    """Items of an RSS 2.0 or Atom document. Raises ``ValueError`` for anything else."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise ValueError(f"not well-formed XML: {exc}") from None
    except Exception as exc:  # defusedxml's refusals (entities, DTDs)
        raise ValueError(f"refused XML: {type(exc).__name__}") from None
    if root.tag == f"{ATOM}feed":
        return [_atom_item(entry) for entry in root.iter(f"{ATOM}entry")]
    if root.tag == "rss":
        return [_rss_item(item) for item in root.iter("item")]
    raise ValueError(f"not an RSS or Atom feed (root element {root.tag!r})")


def _rss_item(item: Element) -> FeedItem:
    link = _text(item.find("link")) or None
    body = _text(item.find(f"{CONTENT}encoded")) or _text(item.find("description"))
    return FeedItem(
        key=_text(item.find("guid")) or link or _text(item.find("title")),
        title=html_to_text(_text(item.find("title"))),
        text=html_to_text(body),
        link=link,
        author=_text(item.find(f"{DC}creator")) or _text(item.find("author")) or None,
        published=_date(_text(item.find("pubDate")) or _text(item.find(f"{DC}date"))),
    )


def _atom_item(entry: Element) -> FeedItem:
    link: str | None = None
    for candidate in entry.findall(f"{ATOM}link"):
        if candidate.get("rel", "alternate") == "alternate":
            link = candidate.get("href")
            break
    body = _text(entry.find(f"{ATOM}content")) or _text(entry.find(f"{ATOM}summary"))
    author = entry.find(f"{ATOM}author")
    return FeedItem(
        key=_text(entry.find(f"{ATOM}id")) or link or _text(entry.find(f"{ATOM}title")),
        title=html_to_text(_text(entry.find(f"{ATOM}title"))),
        text=html_to_text(body),
        link=_unwrap_google(link),
        author=(_text(author.find(f"{ATOM}name")) or None) if author is not None else None,
        published=_date(
            _text(entry.find(f"{ATOM}published")) or _text(entry.find(f"{ATOM}updated"))
        ),
    )


def item_key(feed_url: str, key: str) -> str:
    return hashlib.sha256(f"{feed_url}\n{key}".encode()).hexdigest()[:32]


def map_item(item: FeedItem, feed: FeedConfig, now: datetime) -> Mention:
    text = item.title if not item.text or item.text == item.title else f"{item.title}\n{item.text}"
    return Mention(
        id=f"{feed.platform}:{item_key(feed.url, item.key)}",
        source=feed.platform,
        url=item.link,
        text=text[:40_000],
        created_at=item.published or now,
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
        covers="RSS/Atom feeds: Google Alerts, news sites",
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
        if any(feed.rsshub for feed in config.feeds):  # the strictest need is the one stated
            self.health.coverage = RSSHUB_COVERAGE

    def check_cursor(self, cursor: str) -> None:
        _load(cursor)

    async def stream(self, cursor: str | None) -> AsyncIterator[Step]:
        """Each feed in turn, then a sleep. A feed that fails (any error: HTTP, a page that
        is not a feed, too large) is skipped with a backoff of its own (``failing``)
        while the others go on; the source's state is ``waiting`` while every feed
        fails."""
        states = _load(cursor)
        self.health.set_state("polling")
        while True:
            for feed in self.config.feeds:
                if not self.failing.due(feed.url):
                    continue
                state = states.setdefault(feed.url, FeedState())
                try:
                    items, etag, modified = await self.client.fetch(feed.url, state)
                except RateLimited as exc:
                    self.failing.failed(feed.url, feed_label(feed.url), exc, wait=exc.delay)
                    continue
                except Exception as exc:
                    self.failing.failed(feed.url, feed_label(feed.url), exc)
                    continue
                self.failing.succeeded(feed.url)
                known = set(state.seen)
                fresh = [item for item in items if item_key(feed.url, item.key) not in known]
                fresh.sort(key=lambda i: i.published or datetime.min.replace(tzinfo=UTC))
                for item in fresh:
                    key = item_key(feed.url, item.key)
                    state.seen.append(key)
                    del state.seen[: -self.config.remember_items]
                    mention: Mention | None = None
                    try:
                        mention = map_item(item, feed, self.clock.now())
                    except UNREADABLE as exc:
                        self.skips.skip(
                            f"malformed item of feed {feed_label(feed.url)} skipped "
                            f"({reason(exc)})",
                            key=key,
                        )
                    yield mention, _dump(states)
                state.etag, state.modified = etag, modified
                yield None, _dump(states)
            self.health.set_state(
                "waiting" if self.failing.count == len(self.config.feeds) else "polling"
            )
            await self.clock.sleep(self.config.poll_seconds)


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
    return json.dumps(
        {url: {"etag": s.etag, "modified": s.modified, "seen": s.seen} for url, s in states.items()}
    )
