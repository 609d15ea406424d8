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
stream, dropping statuses it already took from the catch-up. When the streaming endpoint
is unavailable (disabled, 404, 5xx) it falls back to polling the same timeline every
``poll_seconds`` for ``fallback_minutes``, then tries streaming again. Edits and deletions
arrive on the stream only (a polling gap misses them).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Self
from urllib.parse import urlsplit

import httpx
from pydantic import Field, SecretStr, ValidationError, model_validator

from core.clock import Clock
from core.events import Author, Engagement, Mention
from core.metrics import Metrics
from core.settings import Section
from listener.backoff import TransientError, check_response
from listener.cursors import CursorStore
from listener.health import Coverage
from listener.sources.live import LiveSource, Step
from listener.sources.text import html_to_text

log = logging.getLogger(__name__)


class MastodonConfig(Section):
    """One Mastodon instance's public or hashtag stream."""

    name: str = Field("mastodon", pattern=r"^[a-z0-9_.-]{1,40}$")
    instance: str = Field(..., pattern=r"^https?://[^/\s]+$", description="https://host")
    access_token: SecretStr | None = None
    timeline: Literal["public", "local", "hashtag"] = "public"
    hashtag: str | None = Field(None, pattern=r"^[^\s#]+$")
    mode: Literal["stream", "poll"] = "stream"
    poll_seconds: float = Field(30.0, gt=0)
    fallback_minutes: float = Field(5.0, gt=0)
    heartbeat_timeout_seconds: float = Field(60.0, gt=0)
    catch_up_pages: int = Field(10, ge=1, description="most timeline pages read per catch-up")

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

    async def page_after(self, min_id: str) -> list[dict[str, Any]]:
        """Up to 40 statuses just after ``min_id``, oldest first."""
        path, params = self._timeline_path()
        response = await self.http.get(
            self.config.instance + path,
            params={**params, "min_id": min_id, "limit": "40"},
            headers=self._headers,
        )
        check_response(response, self.clock.now(), what=f"{self.config.name} timeline")
        statuses = response.json()
        if not isinstance(statuses, list):
            raise TransientError(f"{self.config.name} timeline: not a list")
        return sorted(statuses, key=lambda s: int(s["id"]))

    async def latest_id(self) -> str | None:
        path, params = self._timeline_path()
        response = await self.http.get(
            self.config.instance + path, params={**params, "limit": "1"}, headers=self._headers
        )
        check_response(response, self.clock.now(), what=f"{self.config.name} timeline")
        statuses = response.json()
        return str(statuses[0]["id"]) if isinstance(statuses, list) and statuses else None

    @asynccontextmanager
    async def open_stream(self) -> AsyncIterator[AsyncIterator[tuple[str, str]]]:
        """Open the SSE stream (the response is checked) and yield its ``(event, data)``
        iterator. Raises ``StreamUnavailable`` when the instance does not stream."""
        path, params = self._stream_path()
        timeout = httpx.Timeout(10.0, read=self.config.heartbeat_timeout_seconds)
        request = self.http.build_request(
            "GET",
            self.config.instance + path,
            params=params,
            headers={**self._headers, "Accept": "text/event-stream"},
            timeout=timeout,
        )
        response = await self.http.send(request, stream=True)
        try:
            status = response.status_code
            if status in (404, 410, 501) or status >= 500:
                raise StreamUnavailable(f"{self.config.name} streaming: HTTP {status}")
            check_response(response, self.clock.now(), what=f"{self.config.name} streaming")
            yield sse_events(response.aiter_lines())
        finally:
            await response.aclose()


class StreamUnavailable(TransientError):
    """The instance does not stream (now): poll instead."""


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str]]:
    """``(event, data)`` per server-sent event; comments (heartbeats) skipped."""
    event, data = "message", list[str]()
    async for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def map_status(status: dict[str, Any], source: str, *, edited: bool = False) -> Mention:
    """A Mastodon Status as a Mention (a reblog becomes a repost of the original)."""
    account = status.get("account") or {}
    host = source
    reblog = status.get("reblog")
    text = html_to_text(status.get("content"))
    if status.get("spoiler_text"):
        text = f"{status['spoiler_text']}\n{text}".strip()
    edited_at = status.get("edited_at")
    return Mention(
        id=f"{host}:{status['id']}",
        source="mastodon",
        url=status.get("url") or status.get("uri"),
        text="" if reblog else text,
        lang=status.get("language"),
        created_at=_time(status["created_at"]),
        author=Author(
            id=account.get("url") or account.get("id"),
            handle=account.get("acct"),
            followers=account.get("followers_count"),
        ),
        engagement=Engagement(
            likes=status.get("favourites_count") or 0,
            reposts=status.get("reblogs_count") or 0,
            replies=status.get("replies_count") or 0,
        ),
        reply_to=f"{host}:{status['in_reply_to_id']}" if status.get("in_reply_to_id") else None,
        repost_of=f"{host}:{reblog['id']}" if isinstance(reblog, dict) else None,
        change="edited" if edited else "created",
        edited_at=_time(edited_at) if edited and edited_at else None,
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
        self._prefix = "mastodon-" + (urlsplit(config.instance).hostname or "instance")
        self._fallback_until: datetime | None = None

    async def stream(self, cursor: str | None) -> AsyncIterator[Step]:
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
        self.health.set_state("polling")
        last = cursor
        while self.config.mode == "poll" or self._polling():
            async for mention, position in self._catch_up(last):
                last = position
                yield mention, position
            if not last:
                last = await self.client.latest_id()
                if last is not None:
                    yield None, last
            await self.clock.sleep(self.config.poll_seconds)

    async def _catch_up(self, cursor: str | None) -> AsyncIterator[tuple[Mention, str]]:
        """Statuses after ``cursor`` from the REST timeline, oldest first."""
        if not cursor:
            return
        for _ in range(self.config.catch_up_pages):
            page = await self.client.page_after(cursor)
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
        self, events: AsyncIterator[tuple[str, str]], taken: set[str], last: str | None
    ) -> AsyncIterator[Step]:
        async for event, data in events:
            mention: Mention | None = None
            if event in ("update", "status.update"):
                status = json.loads(data)
                mention = self._map(status, edited=event == "status.update")
                if mention is None or (event == "update" and mention.id in taken):
                    continue
                if event == "update":
                    last = _max_id(last, str(status["id"]))
            elif event == "delete":
                now = self.clock.now()
                mention = Mention(
                    id=f"{self._prefix}:{data.strip()}",
                    source="mastodon",
                    created_at=now,
                    change="deleted",
                    edited_at=now,
                )
            else:
                log.debug("source %s: %s event skipped", self.name, event)
                continue
            yield mention, last or ""

    def _map(self, status: dict[str, Any], *, edited: bool = False) -> Mention | None:
        try:
            return map_status(status, self._prefix, edited=edited)
        except (KeyError, TypeError, ValueError, ValidationError) as exc:
            self.health.error(f"malformed status skipped: {type(exc).__name__}")
            return None


def _max_id(a: str | None, b: str) -> str:
    if not a:
        return b
    return a if int(a) >= int(b) else b
