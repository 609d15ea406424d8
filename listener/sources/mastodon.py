"""Mastodon: one instance's public (or hashtag) stream over server-sent events.

Needs a free access token from that instance (Preferences → Development → New
application, scope ``read:statuses``); most instances refuse anonymous streaming. Covers
what that instance sees: its own public posts and what federates to it, not the whole
fediverse. Configure several instances for more.

Streaming (https://docs.joinmastodon.org/methods/streaming/): ``GET
/api/v1/streaming/public`` (or ``/hashtag?tag=``) sends ``event: update`` (a Status),
``event: status.update`` (an edited Status), ``event: delete`` (the id, plain text), other
events (``notification``, ``filters_changed``, ``announcement``...: not mentions,
skipped) and ``:`` heartbeat comments about every 15 s. A connection silent for longer
than ``heartbeat_timeout_seconds`` is reconnected.

The stream cannot resume. On every (re)connect the source first catches up through the
REST timeline (``min_id`` = the last delivered status id, paging forward), then reads the
stream, dropping statuses it already took from the catch-up; on a first run (no status id
yet) it reads the newest status id once the stream is open, so that a reconnect or a
restart before the first status still catches up from there. When the streaming endpoint
is unavailable (disabled, 404, 5xx) it falls back to polling the same timeline every
``poll_seconds`` for ``fallback_minutes``, then tries streaming again. Edits and deletions
arrive on the stream only (a polling gap misses them).

Errors: the source has one target, its timeline (the instance's public or local timeline,
or one hashtag). A timeline that cannot be read (a hashtag the instance does not know:
404; forbidden to us: 403; an instance gone: 410) is backed off as a target (its wait
doubling from ``poll_seconds`` up to an hour, ``listener.sources.targets``), listed in
the source's health (``failing_targets``, ``crisiswatch_source_targets_failing``) and
tried again; the other Mastodon sources (one per instance) are not concerned. A streaming
endpoint that refuses us (403) while the timeline does not is read by polling. Only a
refused token stops the source: a 401, or a 403/422 whose message names the token (scopes
missing, a login disabled or unconfirmed, no user behind the token). A status or stream
event that cannot be read (not JSON, no usable id, a ``delete`` whose data is not a
status id, an event larger than ``max_bytes``) is skipped, logged and counted
(``listener.sources.skips``), so that one bad item does not hold up the source. A timeline
page larger than ``max_bytes`` is an error of the platform's (retried, never held whole).
A status whose text is longer than a Mention holds is cut to fit. A saved
cursor that is not a status id is logged, counted and ignored (the source starts from
now, as on its first run). A 429 (Mastodon's limit: 300 requests per 5 minutes per
token) waits for ``X-RateLimit-Reset`` (the end of the window, an ISO 8601 time; Mastodon
sends no ``Retry-After``), within ``listener.backoff.server_wait``'s bounds.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, Literal, Self
from urllib.parse import urlsplit

import httpx
from pydantic import Field, field_validator, model_validator

from core.clock import Clock
from core.events import Author, Engagement, Mention
from core.metrics import Metrics
from core.settings import Secret, Section
from listener.backoff import (
    RateLimited,
    SlowAnswer,
    TargetUnavailable,
    TransientError,
    check_response,
    read_at_most,
    server_wait,
)
from listener.cursors import CursorStore
from listener.health import Coverage
from listener.sources import names
from listener.sources.base import SourceFatalError
from listener.sources.live import LiveSource, Step, iso_utc
from listener.sources.skips import UNREADABLE, digest, reason
from listener.sources.text import fit_text, html_to_text

log = logging.getLogger(__name__)

TIMELINE = "timeline"
"""The key of a Mastodon source's one target (its timeline) in ``failing``."""
_TOKEN_REFUSED = ("token", "scope", "login", "authenticated user")
"""Words of the messages Mastodon answers a 403/422 with when the token is at fault
("This action is outside the authorized scopes", "Your login is currently disabled",
"This method requires an authenticated user"), not the timeline."""
_GONE = {403: "forbidden", 404: "not found", 410: "gone"}
MAX_ID_LENGTH = 30
"""The longest status id read (Mastodon's: 18 digits; GoToSocial's ULIDs: 26 characters;
Akkoma's and Pleroma's flake ids: about 18): a longer one is not a status id."""
BEFORE_ALL = "0"
"""A position before every status (ids order by length, then lexically): where a first
read of an empty timeline starts."""
MAX_BYTES = 5_000_000
"""The default ``max_bytes``: a stream event (one status, a few KB) or a timeline page (40
of them) larger than this is an instance gone wrong, not one to hold in memory."""


class MastodonConfig(Section):
    """One Mastodon instance's public or hashtag stream."""

    name: str = "mastodon"
    instance: str = Field(..., description="https://host")
    access_token: Secret | None = None
    timeline: Literal["public", "local", "hashtag"] = "public"
    hashtag: str | None = Field(None, description="one tag, with or without its #")
    mode: Literal["stream", "poll"] = "stream"
    poll_seconds: float = Field(30.0, gt=0)
    fallback_minutes: float = Field(5.0, gt=0)
    heartbeat_timeout_seconds: float = Field(60.0, gt=0)
    catch_up_pages: int = Field(10, ge=1, description="most timeline pages read per catch-up")
    max_bytes: int = Field(
        MAX_BYTES, ge=100_000, description="largest stream event or timeline page read"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return names.lower_name(value, "a mastodon source", "mastodon-social")

    @field_validator("instance")
    @classmethod
    def _instance(cls, value: str) -> str:
        return names.instance(value)

    @field_validator("hashtag")
    @classmethod
    def _hashtag(cls, value: str | None) -> str | None:
        return None if value is None else names.hashtag(value)

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.access_token is None:
            raise ValueError(
                f"mastodon source {self.name!r} ({self.instance}) needs access_token: create "
                "an application on that instance (Preferences → Development, scope "
                "read:statuses) and put its access token here"
            )
        if (self.timeline == "hashtag") != (self.hashtag is not None):
            raise ValueError("mastodon: timeline 'hashtag' goes with hashtag: <tag> (and only it)")
        return self


class MastodonClient:
    """The raw REST/SSE protocol of one instance."""

    def __init__(self, config: MastodonConfig, http: httpx.AsyncClient, clock: Clock) -> None:
        self.config = config
        self.http = http
        self.clock = clock
        token = config.access_token.get_secret_value() if config.access_token else ""
        self._headers = {"Authorization": f"Bearer {token}"}
        self._stream_hosts: set[str] = set()  # streaming addresses redirected to (logged once)

    def _stream_path(self) -> tuple[str, dict[str, str]]:
        c = self.config
        if c.timeline == "hashtag":
            return "/api/v1/streaming/hashtag", {"tag": c.hashtag or ""}
        if c.timeline == "local":
            return "/api/v1/streaming/public/local", {}
        return "/api/v1/streaming/public", {}

    def _timeline_path(self) -> tuple[str, dict[str, str]]:
        c = self.config
        if c.timeline == "hashtag":
            return f"/api/v1/timelines/tag/{c.hashtag}", {}
        return "/api/v1/timelines/public", {"local": "true"} if c.timeline == "local" else {}

    def _refused(self, status: int, body: bytes, what: str) -> None:
        """Raise ``SourceFatalError`` when an answer (``status``, ``body``) refuses the
        token (401; a 403 or 422 whose message names the token)."""
        if status not in (401, 403, 422):
            return
        message = _error_message(body)
        if status == 401 or any(word in message.lower() for word in _TOKEN_REFUSED):
            raise SourceFatalError(
                f"{what}: HTTP {status}, the access token was refused"
                f"{f' ({message})' if message else ''}: create a new one on "
                f"{self.config.instance} (Preferences → Development, scope read:statuses)"
            )

    def _check(self, response: httpx.Response, body: bytes, what: str) -> None:
        """``check_response`` for the timeline: a refused token is fatal; a timeline that
        cannot be read (403, 404, 410) is ``TargetUnavailable``."""
        status = response.status_code
        self._refused(status, body, what)
        if status in _GONE:
            message = _error_message(body) or _GONE[status]
            raise TargetUnavailable(f"{what}: HTTP {status} ({message})")
        self._rate_limited(response, what)
        check_response(response, self.clock.now(), what=what)

    def _rate_limited(self, response: httpx.Response, what: str) -> None:
        """Raise ``RateLimited`` for a 429 without ``Retry-After`` (Mastodon sends none)
        that waits for ``X-RateLimit-Reset``, the time its window ends (ISO 8601); a
        429 with ``Retry-After`` is left to ``check_response``."""
        if response.status_code != 429 or "retry-after" in response.headers:
            return
        reset = _reset_seconds(response.headers.get("x-ratelimit-reset"), self.clock.now())
        delay = server_wait(reset, 60.0)
        raise RateLimited(delay, f"{what}: HTTP 429, waiting {delay:.0f} s (X-RateLimit-Reset)")

    async def _timeline(self, params: dict[str, str]) -> list[Any]:
        path, base = self._timeline_path()
        request = self.http.build_request(
            "GET", self.config.instance + path, params={**base, **params}, headers=self._headers
        )
        what = f"{self.config.name} timeline"
        response = await self.http.send(request, stream=True)
        try:
            body = await read_at_most(response, self.config.max_bytes)
        except SlowAnswer as exc:
            raise SlowAnswer(f"{what}: {exc}") from None
        finally:
            await response.aclose()
        self._check(response, body or b"", what)
        if body is None:  # a page of 40 statuses is far smaller: the instance is broken
            raise TransientError(f"{what}: larger than max_bytes ({self.config.max_bytes})")
        try:
            statuses = json.loads(body)
        except (ValueError, RecursionError):  # as json_body: the platform's trouble
            raise TransientError(f"{what}: not JSON") from None
        if not isinstance(statuses, list):
            raise TransientError(f"{what}: not a list")
        return statuses

    async def page_after(self, min_id: str) -> tuple[list[dict[str, Any]], list[Any]]:
        """Up to 40 statuses just after ``min_id``, oldest first, and those of the page
        that cannot be read (not a status with a usable id)."""
        statuses = await self._timeline({"min_id": min_id, "limit": "40"})
        readable = [(i, s) for s, i in ((s, _status_id(s)) for s in statuses) if i is not None]
        unreadable = [s for s in statuses if _status_id(s) is None]
        return [s for _, s in sorted(readable, key=lambda p: id_order(p[0]))], unreadable

    async def latest_id(self) -> str | None:
        """The newest status id of the timeline (where a first read starts); ``BEFORE_ALL``
        when the timeline is empty (every status it will hold is new: a quiet hashtag's
        first statuses were lost when the next read took the newest as its start); None
        when its newest status cannot be read."""
        statuses = await self._timeline({"limit": "1"})
        if not statuses:
            return BEFORE_ALL
        ids = [i for i in (_status_id(s) for s in statuses) if i is not None]
        return ids[0] if ids else None

    @asynccontextmanager
    async def open_stream(self) -> AsyncIterator[AsyncIterator[tuple[str, str | None]]]:
        """Open the SSE stream (the response is checked) and yield its ``(event, data)``
        iterator. Raises ``StreamUnavailable`` when the instance does not stream."""
        response = await self._open_stream()
        try:
            status = response.status_code
            what = f"{self.config.name} streaming"
            if status in (401, 403, 422):
                # the message tells a refused token from the rest
                body = await read_at_most(response, self.config.max_bytes)
                self._refused(status, body or b"", what)
            if status in (403, 404, 410, 501) or status >= 500:
                # the timeline may still be readable: polling it says whether it is
                raise StreamUnavailable(f"{what}: HTTP {status}")
            self._rate_limited(response, what)
            check_response(response, self.clock.now(), what=what)
            max_bytes = self.config.max_bytes
            yield sse_events(sse_lines(response.aiter_bytes(), max_bytes), max_bytes)
        finally:
            await response.aclose()

    async def _open_stream(self) -> httpx.Response:
        """The streaming endpoint's response (streamed), following the redirects an
        instance answers when its streaming API has a host of its own (Mastodon's
        ``STREAMING_API_BASE_URL``: mastodon.social sends ``/api/v1/streaming/...`` to
        ``streaming.mastodon.social`` with a 301). They are followed here, not by the
        HTTP client, which drops the token on a redirect to another host (the streaming
        host would answer 401) or is set not to follow at all. At most
        ``MAX_STREAM_REDIRECTS``; never from https to http (the token would travel in
        clear): such a redirect is ``StreamUnavailable`` (the timeline is polled)."""
        path, params = self._stream_path()
        timeout = httpx.Timeout(10.0, read=self.config.heartbeat_timeout_seconds)
        url = httpx.URL(self.config.instance + path, params=params)
        what = f"{self.config.name} streaming"
        for hop in range(MAX_STREAM_REDIRECTS + 1):
            request = self.http.build_request(
                "GET",
                url,
                headers={**self._headers, "Accept": "text/event-stream"},
                timeout=timeout,
            )
            response = await self.http.send(request, stream=True, follow_redirects=False)
            location = response.headers.get("location")
            if response.status_code not in _REDIRECTS or not location:
                return response
            await response.aclose()
            try:
                target = url.join(location)
            except httpx.InvalidURL:
                raise StreamUnavailable(f"{what}: redirected to an unreadable URL") from None
            where = f"{target.scheme}://{target.netloc.decode('ascii', 'replace')}{target.path}"
            if target.scheme not in ("http", "https") or (
                url.scheme == "https" and target.scheme != "https"
            ):
                raise StreamUnavailable(
                    f"{what}: redirected to {where}: not followed (the access token would "
                    "travel unencrypted)"
                )
            if hop == MAX_STREAM_REDIRECTS:
                break
            if target.netloc != url.netloc and where not in self._stream_hosts:
                self._stream_hosts.add(where)
                log.info(
                    "mastodon %s: the instance serves its streaming API at %s (redirected)",
                    self.config.name,
                    where,
                )
            url = target
        raise StreamUnavailable(f"{what}: more than {MAX_STREAM_REDIRECTS} redirects")


_REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_STREAM_REDIRECTS = 3
"""Redirects followed to the streaming endpoint (an instance sends to its streaming host
once)."""


class StreamUnavailable(TransientError):
    """The instance does not stream (now): poll instead."""


_LINE_END = re.compile(rb"\r\n|\r|\n")


async def sse_lines(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[str | None]:
    """The lines of an event stream (ended by CRLF, LF or CR), UTF-8 decoded; None for a
    line longer than ``limit`` bytes, which is read to its end and dropped as it comes:
    an instance that sends a line without end does not fill the memory."""
    line = bytearray()
    too_long = False
    after_cr = False  # the last chunk ended with CR: an LF opening this one is its pair
    async for chunk in chunks:
        if after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        after_cr = chunk.endswith(b"\r")
        start = 0
        for end in _LINE_END.finditer(chunk):
            if not too_long:
                line += chunk[start : end.start()]
            start = end.end()
            yield None if too_long or len(line) > limit else line.decode("utf-8", "replace")
            line.clear()
            too_long = False
        if not too_long:
            line += chunk[start:]
            if len(line) > limit:
                line.clear()
                too_long = True
    if too_long:  # the stream ended inside it: still said, so that it is counted
        yield None
    # else a last line without its end is dropped: the event it belongs to is not whole


async def sse_events(
    lines: AsyncIterator[str | None], limit: int = MAX_BYTES
) -> AsyncIterator[tuple[str, str | None]]:
    """``(event, data)`` per server-sent event; comments (heartbeats) skipped. ``data``
    is None for an event too large: its data over ``limit`` characters, or a line of it
    too long for ``sse_lines``. Such an event is dropped as it is read, never held
    whole; the caller skips and counts it."""
    event, data, size, too_large = "message", list[str](), 0, False
    async for line in lines:
        if line is None:  # too long to say which field it was: the event is not whole
            data, too_large = [], True
        elif not line:
            if too_large:
                yield event, None
            elif data:
                yield event, "\n".join(data)
            event, data, size, too_large = "message", [], 0, False
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data" and not too_large:
                size += len(value) + 1
                if size > limit:
                    data, too_large = [], True
                else:
                    data.append(value)
    if too_large:  # the stream ended inside it: skipped and counted all the same
        yield event, None


def _error_message(body: bytes) -> str:
    """The ``error`` of a Mastodon error body (``{"error": "..."}``), else ""."""
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    error = answer.get("error") if isinstance(answer, dict) else None
    return error[:200] if isinstance(error, str) else ""


def _reset_seconds(value: str | None, now: datetime) -> float | None:
    """Seconds from ``now`` to an ``X-RateLimit-Reset`` (an ISO 8601 time, as Mastodon
    sends it); None when it is missing or not such a time."""
    if not value:
        return None
    try:
        return (iso_utc(value.strip()) - now).total_seconds()
    except (ValueError, OverflowError):
        return None


def _status_id(status: object) -> str | None:
    """The id of a Status, if the source can order it: ASCII letters and digits, at most
    ``MAX_ID_LENGTH`` of them (Mastodon's numbers, GoToSocial's ULIDs, Akkoma's and
    Pleroma's flake ids), else None."""
    if not isinstance(status, dict):
        return None
    value = status.get("id")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value) if 0 <= value < 10**MAX_ID_LENGTH else None
    if isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH:
        return value if value.isascii() and value.isalnum() else None
    return None


def id_order(status_id: str) -> tuple[int, str]:
    """The order of status ids, which the Mastodon API defines as opaque strings: by
    length, then lexically. Mastodon's numbers sort as numbers, and the fixed-width,
    time-ordered ids of GoToSocial (ULIDs) and Akkoma (flake ids) as they were made."""
    return len(status_id), status_id


def _known(count: Any) -> Any:
    """A count as the instance sends it; None for a negative one: Mastodon answers
    ``followers_count: -1`` for an account that hides it, and counts below zero are known
    (mastodon/mastodon#17440). Such a count made the whole status unreadable (lost)."""
    return None if isinstance(count, int) and count < 0 else count


def map_status(status: dict[str, Any], source: str, *, edited: bool = False) -> Mention:
    """A Mastodon Status as a Mention (a reblog becomes a repost of the original)."""
    account = status.get("account") or {}
    host = source
    reblog = status.get("reblog")
    text = html_to_text(status.get("content"))
    if status.get("spoiler_text"):
        text = f"{status['spoiler_text']}\n{text}".strip()
    text = fit_text(text)  # instances allow long posts: cut to what a Mention holds
    edited_at = status.get("edited_at")
    return Mention(
        id=f"{host}:{status['id']}",
        source="mastodon",
        url=status.get("url") or status.get("uri"),
        text="" if reblog else text,
        lang=status.get("language"),
        created_at=iso_utc(status["created_at"]),
        author=Author(
            id=account.get("url") or account.get("id"),
            handle=account.get("acct"),
            followers=_known(account.get("followers_count")),
        ),
        engagement=Engagement(
            likes=_known(status.get("favourites_count")) or 0,
            reposts=_known(status.get("reblogs_count")) or 0,
            replies=_known(status.get("replies_count")) or 0,
        ),
        reply_to=f"{host}:{status['in_reply_to_id']}" if status.get("in_reply_to_id") else None,
        repost_of=f"{host}:{reblog['id']}" if isinstance(reblog, dict) else None,
        change="edited" if edited else "created",
        edited_at=iso_utc(edited_at) if edited and edited_at else None,
    )


class MastodonSource(LiveSource):
    kind = "mastodon"
    coverage = Coverage(
        needs="free token",
        covers="public posts one instance sees (its own and federated), or one hashtag",
        misses="instances not federating with it; edits/deletes made while disconnected",
        edits=True,
        deletes=True,
        resumes="last status id; REST catch-up (min_id) before each stream",
    )

    def __init__(
        self,
        config: MastodonConfig,
        http: httpx.AsyncClient,
        clock: Clock,
        cursors: CursorStore,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(config.name, clock, cursors, metrics)
        self.config = config
        self.client = MastodonClient(config, http, clock)
        host = urlsplit(config.instance).hostname or "instance"
        self._prefix = f"mastodon-{host}"
        self._fallback_until: datetime | None = None
        self.failing.first = config.poll_seconds
        timeline = f"#{config.hashtag}" if config.timeline == "hashtag" else config.timeline
        self.target = f"{host} {timeline}"
        """How logs and health name the source's one target (``m.example #acme``)."""

    async def stream(self, cursor: str | None) -> AsyncIterator[Step]:
        """Read the timeline (streaming, else polling) from ``cursor``. A timeline that
        cannot be read is backed off as a target, and read again from where it was once
        its wait is over; other errors end the stream (the base reconnects or stops)."""
        position = cursor
        while True:
            wait = self.failing.wait(TIMELINE)
            if wait > 0:
                self.health.set_state("waiting")
                await self.clock.sleep(wait)
            try:
                async for mention, after in self._connect(position):
                    position = after  # a retry after a target wait resumes here
                    yield mention, after
                return
            except TargetUnavailable as exc:
                # the source's one target: say that nothing is read meanwhile
                self.failing.failed(TIMELINE, self.target, exc, targets=1)

    async def _connect(self, cursor: str | None) -> AsyncIterator[Step]:
        if self.config.mode == "poll" or self._polling():
            async for step in self._poll(cursor):
                yield step
            return
        try:
            async with self.client.open_stream() as events:
                self.health.set_state("connected")
                taken: set[str] = set()
                last = cursor
                async for mention, last in self._catch_up(cursor):
                    taken.add(mention.id)
                    yield mention, last
                if not last:
                    # a first run: the position the stream starts from, so that a
                    # reconnect (or a restart) before its first status catches up the gap
                    last = await self.client.latest_id()
                    if last is not None:
                        yield None, last
                # not on opening: a hashtag's stream opens even where its timeline is
                # not found (the catch-up, when there is one, says it is readable)
                self.failing.succeeded(TIMELINE)
                async for step in self._read(events, taken, last):
                    yield step
        except StreamUnavailable as exc:
            log.warning(
                "source %s: %s; polling every %.0f s for %.0f min",
                self.name,
                exc,
                self.config.poll_seconds,
                self.config.fallback_minutes,
            )
            self.health.error(str(exc))
            self._fallback_until = self.clock.now() + timedelta(
                minutes=self.config.fallback_minutes
            )

    def _polling(self) -> bool:
        return self._fallback_until is not None and self.clock.now() < self._fallback_until

    async def _poll(self, cursor: str | None) -> AsyncIterator[Step]:
        if not self.failing.count:  # a timeline being retried stays "waiting" until read
            self.health.set_state("polling")
        last = cursor
        while self.config.mode == "poll" or self._polling():
            async for mention, position in self._catch_up(last):
                last = position
                yield mention, position
            if not last:
                last = await self.client.latest_id()
                self._readable()
                if last is not None:
                    yield None, last
            self.health.set_state("polling")
            await self.clock.sleep(self.config.poll_seconds)

    async def _catch_up(self, cursor: str | None) -> AsyncIterator[tuple[Mention, str]]:
        """Statuses after ``cursor`` from the REST timeline, oldest first."""
        if not cursor:
            return
        for _ in range(self.config.catch_up_pages):
            page, unreadable = await self.client.page_after(cursor)
            self._readable()
            if unreadable:  # the same page read again (a poll, a reconnect) counts once
                self.skips.skip(
                    f"{len(unreadable)} unreadable status(es) in a timeline page skipped",
                    key=digest(unreadable),
                )
            if not page:
                return
            for status in page:
                cursor = str(status["id"])
                mention = self._map(status)
                if mention is not None:
                    yield mention, cursor
        message = (
            f"catch-up stopped after {self.config.catch_up_pages} pages; statuses posted "
            "while disconnected beyond those are not fetched (raise catch_up_pages)"
        )
        log.warning("source %s: %s", self.name, message)
        self.health.error(message)

    async def _read(
        self, events: AsyncIterator[tuple[str, str | None]], taken: set[str], last: str | None
    ) -> AsyncIterator[Step]:
        async for event, data in events:
            mention: Mention | None = None
            if data is None:
                limit = self.config.max_bytes
                self.skips.skip(f"{event} event larger than max_bytes ({limit}) skipped", key=None)
                continue
            if event in ("update", "status.update"):
                try:
                    status = json.loads(data)
                except UNREADABLE:
                    self.skips.skip(
                        f"unreadable {event} event skipped: not JSON", key=digest(data.encode())
                    )
                    continue
                status_id = _status_id(status)
                if status_id is None:
                    self.skips.skip(
                        f"unreadable {event} event skipped: no usable status id",
                        key=digest(status),
                    )
                    continue
                mention = self._map(status, edited=event == "status.update")
                if mention is None or (event == "update" and mention.id in taken):
                    continue
                if event == "update":
                    last = _max_id(last, status_id)
            elif event == "delete":
                status_id = _status_id({"id": data.strip()})
                if status_id is None:  # not a status id: no Mention id can be made of it
                    self.skips.skip(
                        f"unreadable delete event skipped: {data.strip()[:40]!r} is not a "
                        "status id",
                        key=digest(data.encode()),
                    )
                    continue
                now = self.clock.now()
                mention = Mention(
                    id=f"{self._prefix}:{status_id}",
                    source="mastodon",
                    created_at=now,
                    change="deleted",
                    edited_at=now,
                )
            else:
                log.debug("source %s: %s event skipped", self.name, event)
                continue
            yield mention, last or ""

    def _readable(self) -> None:
        """The timeline was read: no longer a failing target; a poll is up again."""
        self.failing.succeeded(TIMELINE)
        if self.health.state == "waiting":
            self.health.set_state("polling")

    def check_cursor(self, cursor: str) -> None:
        if _status_id({"id": cursor}) is None:  # what _catch_up and _max_id compare
            raise ValueError(f"not a status id: {cursor[:40]!r}")

    def _map(self, status: dict[str, Any], *, edited: bool = False) -> Mention | None:
        try:
            return map_status(status, self._prefix, edited=edited)
        except UNREADABLE as exc:
            kind = "edit" if edited else "status"
            self.skips.skip(
                f"malformed {kind} {status.get('id')} skipped ({reason(exc)})",
                key=f"{kind}:{status.get('id')}:{status.get('edited_at')}",
            )
            return None


def _max_id(a: str | None, b: str) -> str:
    if not a:
        return b
    return a if id_order(a) >= id_order(b) else b
