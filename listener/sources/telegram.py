"""Telegram public channels through their web previews, ``https://t.me/s/<channel>``.

Needs nothing but is scraping: the preview is an HTML page meant for people, not an API.
It may change without notice and its terms do not grant automated collection; use it
only where your counsel says you may (the coverage table says "scraping (legal risk)").
Only public channels with previews enabled; no groups, no comments.

A page lists the channel's latest ~20 posts, oldest first, each a
``div.tgme_widget_message[data-post="<channel>/<n>"]`` with the text in
``div.tgme_widget_message_text``, the time in ``time[datetime]`` and views in
``span.tgme_widget_message_views``; ``?before=<n>`` gives the page before post ``n``.
Service messages (channel created, photo changed, pinned) carry the class
``service_message`` and are skipped. Cursor: the last post number per channel; a gap of
more than one page is filled with ``?before=`` pages (up to ``max_pages``; a gap larger
than that is logged and counted as a page cap). The cursor only moves to posts numbered
in sequence with the channel's others (``in_sequence``): a post numbered far beyond them
is skipped, logged and counted, so that it cannot move the cursor past the posts to come.
The first read of a channel (one the cursor does not hold: the first run, a channel added
to the config later) reads its latest page and publishes only the posts dated
``initial_lookback_minutes`` before the source started, or later; the older ones and those
without a date are passed over (the cursor moves past them: they never come later
either), counted (``skips.backlog``) and logged once per channel.

Each channel is its own target: one that fails (deleted or renamed: 404; blocked: 403;
no public web preview: t.me redirects to ``/<channel>``; a 5xx, a page that cannot be
read; a page that is no channel preview, with neither posts nor a message history: a
consent or captcha page, a layout t.me changed) is skipped for a while, its wait
doubling from ``poll_seconds`` up to an hour (``listener.sources.targets``), and listed
in the source's health (``failing_targets``); the other channels go on being polled. A
rate limit (429) concerns all of t.me and pauses the whole source; a 401 stops it (t.me
asks for no credential: a proxy in between does).
A post that cannot be mapped is skipped, logged and counted; a saved cursor that cannot
be read is logged, counted and ignored (each channel starts from its latest page, as on a
first run).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from html.parser import HTMLParser

import httpx
from pydantic import Field, field_validator

from core.clock import Clock
from core.events import Author, Engagement, Mention
from core.metrics import Metrics
from core.settings import Section
from listener.backoff import RateLimited, TargetUnavailable, check_response, get_at_most
from listener.cursors import CursorStore
from listener.health import Coverage
from listener.sources import names
from listener.sources.base import SourceFatalError
from listener.sources.live import LiveSource, Step, iso_utc
from listener.sources.skips import UNREADABLE, lookback_start, reason
from listener.sources.text import fit_text

log = logging.getLogger(__name__)

_VIEWS = re.compile(r"^([\d.]+)([KMB]?)$")
_SCALE = {"": 1, "K": 1_000, "M": 1_000_000, "B": 1_000_000_000}
MAX_GAP = 100
"""The largest step between two posts of a channel read as one sequence. A channel's page
holds its ~20 latest posts with ascending numbers, nearly consecutive: an album takes up to
10 numbers, a deleted post one. A post farther than this from the others is an outlier
(a page gone wrong) unless most of the page is with it: see ``in_sequence``."""


class TelegramConfig(Section):
    """Public channels polled through t.me/s/<channel> (scraping: see the module doc)."""

    channels: list[str] = Field(..., min_length=1)
    poll_seconds: float = Field(120.0, ge=30)
    max_pages: int = Field(5, ge=1, le=20)
    base_url: str = Field("https://t.me", pattern=r"^https?://\S+$")
    initial_lookback_minutes: float = Field(
        60.0,
        ge=0,
        description="the first read of a channel (a new one too) publishes only the posts "
        "dated this long before the source started or later; older and undated ones are "
        "passed over, never published",
    )

    @field_validator("channels")
    @classmethod
    def _names(cls, channels: list[str]) -> list[str]:
        return [names.telegram_channel(channel) for channel in channels]


@dataclass
class Post:
    channel: str
    number: int
    text: str = ""
    published: datetime | None = None
    views: int | None = None
    service: bool = False
    parts: list[str] = field(default_factory=list, repr=False)


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.posts: list[Post] = []
        self._post: Post | None = None
        self._depth = 0  # open divs inside the current post
        self._text_depth: int | None = None  # depth at which the text div opened
        self._in_views = False
        self.history = False
        """Whether the page holds a channel's message history (``tgme_channel_history``):
        a channel preview does, even when the channel has no post yet."""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if "tgme_channel_history" in classes:
            self.history = True
        if tag == "div" and self._post is None:
            if "tgme_widget_message" in classes and a.get("data-post"):
                channel, _, number = (a.get("data-post") or "").rpartition("/")
                if number.isascii() and number.isdigit():
                    self._post = Post(channel, int(number), service="service_message" in classes)
                    self._depth = 1
            return
        if self._post is None:
            return
        if tag == "div":
            self._depth += 1
            if "tgme_widget_message_text" in classes and self._text_depth is None:
                self._text_depth = self._depth
        elif tag == "br" and self._text_depth is not None:
            self._post.parts.append("\n")
        elif tag == "time" and a.get("datetime") and self._post.published is None:
            # OverflowError: 0001-01-01T00:00:00+01:00, no date rather than an unreadable page
            with contextlib.suppress(ValueError, OverflowError):
                self._post.published = iso_utc(a["datetime"] or "")
        elif tag == "span" and "tgme_widget_message_views" in classes:
            self._in_views = True

    def handle_endtag(self, tag: str) -> None:
        if self._post is None:
            return
        if tag == "span":
            self._in_views = False
        if tag != "div":
            return
        if self._text_depth == self._depth:
            self._text_depth = None
        self._depth -= 1
        if self._depth == 0:
            post, self._post = self._post, None
            post.text = "".join(post.parts).strip()
            self.posts.append(post)

    def parse_marked_section(self, i: int, report: bool = True) -> int:
        # CPython 3.11's parser raises AssertionError on a marked section it does not know
        # (``<![ x``, ``<![ CDATA[``), which failed the whole page: its ``<`` is read as
        # text instead, as the parser does with any other ``<`` that opens no markup
        try:
            return super().parse_marked_section(i, report)
        except AssertionError:
            self.handle_data("<")
            return i + 1

    def handle_data(self, data: str) -> None:
        if self._post is None:
            return
        if self._text_depth is not None:
            self._post.parts.append(data)
        elif self._in_views:
            self._post.views = parse_views(data.strip())


def parse_views(value: str) -> int | None:
    match = _VIEWS.match(value)
    if not match:
        return None
    try:
        return int(float(match.group(1)) * _SCALE[match.group(2)])
    except ValueError:  # "1.2.3": a count we cannot read is no count, not a broken page
        return None


def parse_page(html: str) -> list[Post]:
    return read_page(html)[0]


def read_page(html: str) -> tuple[list[Post], bool]:
    """The posts of a page, and whether it is a channel preview (it holds posts, or the
    message history a preview has even with none)."""
    parser = _Page()
    parser.feed(html)
    parser.close()
    return parser.posts, bool(parser.posts) or parser.history


def in_sequence(posts: list[Post]) -> tuple[list[Post], list[Post]]:
    """``posts`` of one channel (each number once) split into those in the channel's
    sequence, oldest first, and the outliers. The posts are cut into runs where two
    neighbours are more than ``MAX_GAP`` apart; the longest run is the channel's (on a
    tie, the older: the cursor never jumps ahead on even evidence), the others are
    outliers. One stray number (a page gone wrong, a foreign post) is thereby never taken
    for the channel's newest post, while a real jump (many posts deleted at once) is
    followed as soon as more than half of what was read lies beyond it: its posts are
    then delivered, only later."""
    runs: list[list[Post]] = []
    for post in sorted(posts, key=lambda p: p.number):
        if runs and post.number - runs[-1][-1].number <= MAX_GAP:
            runs[-1].append(post)
        else:
            runs.append([post])
    if not runs:
        return [], []
    channel = max(runs, key=len)  # the first of the longest: the older on a tie
    return channel, [post for run in runs if run is not channel for post in run]


def map_post(post: Post, now: datetime) -> Mention:
    return Mention(
        id=f"telegram:{post.channel}/{post.number}",
        source="telegram",
        url=f"https://t.me/{post.channel}/{post.number}",
        text=fit_text(post.text),
        created_at=post.published or now,
        author=Author(id=post.channel, handle=post.channel),
        engagement=Engagement(views=post.views),
    )


class TelegramClient:
    def __init__(
        self,
        config: TelegramConfig,
        http: httpx.AsyncClient,
        clock: Clock,
        on_page_cap: Callable[[str, int], None] | None = None,
    ) -> None:
        self.config = config
        self.http = http
        self.clock = clock
        self.on_page_cap = on_page_cap

    async def page(self, channel: str, before: int | None = None) -> list[Post]:
        params = {"before": str(before)} if before is not None else None
        what = f"t.me/s/{channel}"
        response = await get_at_most(
            self.http, f"{self.config.base_url}/s/{channel}", what=what, params=params
        )
        status = response.status_code
        if 300 <= status < 400 and status != 304:
            # t.me sends a name without a public preview (a private channel, a user, a
            # bot, a name nobody holds) to its /<name> page
            raise TargetUnavailable(f"{what}: HTTP {status}, redirected: no public web preview")
        # a 403/404/410 concerns that channel (gone, blocked): t.me asks for no credential
        check_response(response, self.clock.now(), what=what, target_statuses=(403, 404, 410))
        posts, preview = read_page(response.text)
        if before is None and not preview:
            # t.me's page for a name without a preview, a consent or captcha page, or a
            # layout t.me changed: read as "no posts", the channel would look quiet for ever
            raise TargetUnavailable(
                f"{what}: HTTP {status}, but not a channel preview (no posts, no message "
                "history): a channel without a public preview, a captcha or consent page, "
                "or a page t.me changed"
            )
        return posts

    async def after(self, channel: str, last: int | None) -> tuple[list[Post], list[Post]]:
        """Posts numbered after ``last`` (the latest page when None) in the channel's
        sequence, oldest first, and those out of it (``in_sequence``), to be skipped."""
        posts = await self.page(channel)
        if last is not None:
            for _ in range(self.config.max_pages - 1):
                oldest = _oldest(posts)
                if oldest is None or oldest <= last + 1:
                    break
                older = await self.page(channel, before=oldest)
                if not older:
                    break
                posts = older + posts
            else:
                oldest = _oldest(posts)
                if oldest is not None and oldest > last + 1 and self.on_page_cap is not None:
                    self.on_page_cap(f"t.me/s/{channel}", self.config.max_pages)
        found, outliers = in_sequence(list({p.number: p for p in posts}.values()))
        new = [p for p in found if last is None or p.number > last]
        return new, [p for p in outliers if last is None or p.number > last]


def _oldest(posts: list[Post]) -> int | None:
    """The oldest post number in the channel's sequence (an outlier does not end a fill)."""
    return min((p.number for p in in_sequence(posts)[0]), default=None)


class TelegramSource(LiveSource):
    kind = "telegram"
    coverage = Coverage(
        needs="scraping (legal risk)",
        covers="posts of listed public Telegram channels (web previews)",
        misses="groups, comments, private channels; edits and deletions",
        resumes="last post number per channel; older pages fill a gap",
    )

    def __init__(
        self,
        config: TelegramConfig,
        http: httpx.AsyncClient,
        clock: Clock,
        cursors: CursorStore,
        metrics: Metrics | None = None,
        *,
        name: str = "telegram",
    ) -> None:
        super().__init__(name, clock, cursors, metrics)
        self.config = config
        self.client = TelegramClient(config, http, clock, on_page_cap=self.page_cap)
        self.failing.first = config.poll_seconds

    def check_cursor(self, cursor: str) -> None:
        load_last(cursor)

    async def stream(self, cursor: str | None) -> AsyncIterator[Step]:
        """Each channel in turn, then a sleep. A channel that fails is skipped with a
        backoff of its own (``failing``) while the others go on; a rate limit or a fatal
        error ends the stream (the base waits or stops). The source's state is
        ``waiting`` while every channel fails."""
        last = load_last(cursor)
        since = lookback_start(self.started_at, self.config.initial_lookback_minutes)
        targets = len(set(self.config.channels))
        self.health.set_state("polling")
        while True:
            for channel in self.config.channels:
                if not self.failing.due(channel):
                    continue
                try:
                    posts, outliers = await self.client.after(channel, last.get(channel))
                except (RateLimited, SourceFatalError):
                    raise
                except Exception as exc:
                    self.failing.failed(channel, channel, exc, targets=targets)
                    continue
                self.failing.succeeded(channel)
                old = self._backlog(channel, posts, since) if channel not in last else set()
                for post in outliers:  # the cursor does not move to them
                    self.skips.skip(
                        f"post {channel}/{post.number} skipped: its number is out of sequence "
                        f"with the channel's other posts (more than {MAX_GAP} apart)",
                        key=f"{channel}/{post.number}",
                    )
                for post in posts:
                    last[channel] = post.number
                    mention: Mention | None = None
                    if not post.service and post.text and post.number not in old:
                        try:
                            mention = map_post(post, self.clock.now())
                        except UNREADABLE as exc:
                            self.skips.skip(
                                f"malformed post {channel}/{post.number} skipped ({reason(exc)})",
                                key=f"{channel}/{post.number}",
                            )
                    yield mention, json.dumps(last)
            self.health.set_state(
                "waiting" if self.failing.count == len(self.config.channels) else "polling"
            )
            await self.clock.sleep(self.config.poll_seconds)

    def _backlog(self, channel: str, posts: list[Post], since: datetime) -> set[int]:
        """The numbers of the posts of a channel's first read (one the cursor does not
        hold: a new channel too) not to publish: those dated before ``since`` or not
        dated (their age is unknown). The cursor moves past them as past the others, so
        they never come later either; counted and logged once
        (``skips.backlogged``)."""
        readable = [post for post in posts if not post.service and post.text]
        undated = {post.number for post in readable if post.published is None}
        old = {
            post.number
            for post in readable
            if post.published is not None and post.published < since
        }
        self.skips.backlogged(
            f"channel t.me/s/{channel}",
            old=len(old),
            undated=len(undated),
            new=len(readable) - len(old) - len(undated),
            since=since,
        )
        return old | undated


def load_last(cursor: str | None) -> dict[str, int]:
    """The last post number per channel, as the cursor holds them. Raises ``ValueError``
    (``TypeError``) for a cursor that cannot be read."""
    if not cursor:
        return {}
    raw = json.loads(cursor)
    if not isinstance(raw, dict):
        raise TypeError(f"the cursor is an object, not {type(raw).__name__}")
    for channel, number in raw.items():
        if isinstance(number, bool) or not isinstance(number, int):
            raise TypeError(f"the last post of {channel[:40]!r} is a number, not {number!r:.40}")
    return dict(raw)
