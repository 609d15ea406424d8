"""Bluesky through Jetstream: the public firehose of posts as JSON over a websocket.

Needs nothing (public, no account). Every public post (and repost) on the network
arrives; the listener's watch matching does the filtering client-side. The client asks
only for ``wantedCollections`` (posts and reposts by default).

Events (https://github.com/bluesky-social/jetstream, README "Example events"):
``kind: commit`` with ``operation`` create / update / delete on a collection, and
``kind: identity`` / ``kind: account`` (handle and account status changes: not mentions,
skipped). Every event has ``time_us``, the instance's monotonic time cursor.

Resume: the cursor saved is ``time_us`` of the last delivered event and the instance it
came from. On reconnect the client asks for ``cursor = time_us - rewind_seconds`` (so a
failover to another instance, whose clock differs a little, misses nothing) and drops
what it already delivered from the same instance (``time_us`` at or before the saved
one). After a failover the overlap is caught by the listener's dedup.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import websockets
from pydantic import Field, ValidationError
from websockets.exceptions import InvalidStatus

from core.clock import Clock
from core.events import Author, Mention
from core.metrics import Metrics
from core.settings import Section
from listener.backoff import check_response
from listener.cursors import CursorStore
from listener.health import Coverage
from listener.sources.live import LiveSource, Step

log = logging.getLogger(__name__)

POST = "app.bsky.feed.post"
REPOST = "app.bsky.feed.repost"


class JetstreamConfig(Section):
    """Bluesky's public Jetstream (no credentials)."""

    endpoint: str = Field(
        "wss://jetstream2.us-east.bsky.network/subscribe",
        pattern=r"^wss?://\S+$",
        description="a Jetstream /subscribe URL (public instances: jetstream{1,2}.us-{east,west}"
        ".bsky.network)",
    )
    collections: list[str] = Field(default_factory=lambda: [POST, REPOST], min_length=1)
    rewind_seconds: float = Field(5.0, ge=0, description="rewind the cursor on reconnect")
    max_message_bytes: int = Field(1_000_000, ge=1024)
    open_timeout_seconds: float = Field(10.0, gt=0)


class JetstreamClient:
    """The raw protocol: connect with the collections and cursor, yield decoded events."""

    def __init__(self, config: JetstreamConfig) -> None:
        self.config = config

    def url(self, cursor_us: int | None) -> str:
        params: list[tuple[str, str]] = [("wantedCollections", c) for c in self.config.collections]
        if cursor_us is not None:
            params.append(("cursor", str(cursor_us)))
        return f"{self.config.endpoint}?{urlencode(params)}"

    async def events(
        self, cursor_us: int | None, now: datetime | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Decoded events from ``cursor_us`` on. A refused handshake raises what its HTTP
        status means (429 and 503 wait for ``Retry-After``)."""
        try:
            connection = await websockets.connect(
                self.url(cursor_us),
                max_size=self.config.max_message_bytes,
                open_timeout=self.config.open_timeout_seconds,
                compression=None,
            )
        except InvalidStatus as exc:
            response = httpx.Response(
                exc.response.status_code, headers=list(exc.response.headers.raw_items())
            )
            check_response(response, now or datetime.now(UTC), what="jetstream handshake")
            raise
        async with connection as ws:
            async for raw in ws:
                event = json.loads(raw)
                if isinstance(event, dict):
                    yield event


def _time(time_us: int) -> datetime:
    return datetime.fromtimestamp(time_us / 1_000_000, UTC)


def _parse_time(value: object, fallback: datetime) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return fallback
        if parsed.tzinfo is not None:
            return parsed.astimezone(UTC)
    return fallback


def _mention_id(uri: str) -> str:
    return f"bluesky:{uri}"


def _quoted_uri(embed: object) -> str | None:
    """The post a quote post quotes: ``app.bsky.embed.record`` holds it at
    ``embed.record.uri``; a quote with media (``app.bsky.embed.recordWithMedia``) wraps
    that record embed, so at ``embed.record.record.uri``."""
    if not isinstance(embed, dict):
        return None
    kind = embed.get("$type")
    if kind == "app.bsky.embed.recordWithMedia":
        return _quoted_uri({"$type": "app.bsky.embed.record", **(embed.get("record") or {})})
    if kind != "app.bsky.embed.record":
        return None
    uri = (embed.get("record") or {}).get("uri")
    return uri if isinstance(uri, str) and uri else None


def map_event(event: dict[str, Any]) -> Mention | None:
    """A Jetstream event as a Mention; None for what is not one (identity, account,
    likes, unknown kinds). Raises ``ValueError`` for a commit that is malformed."""
    if event.get("kind") != "commit":
        return None
    commit = event.get("commit") or {}
    collection = commit.get("collection")
    if collection not in (POST, REPOST):
        return None
    did, rkey, time_us = event["did"], commit["rkey"], int(event["time_us"])
    uri = f"at://{did}/{collection}/{rkey}"
    seen_at = _time(time_us)
    base: dict[str, Any] = {
        "id": _mention_id(uri),
        "source": "bluesky",
        "author": Author(id=did),
    }
    if collection == POST:
        base["url"] = f"https://bsky.app/profile/{did}/post/{rkey}"
    operation = commit.get("operation")
    if operation == "delete":
        return Mention(**base, created_at=seen_at, change="deleted", edited_at=seen_at)
    record = commit.get("record") or {}
    created = _parse_time(record.get("createdAt"), seen_at)
    if collection == REPOST:
        subject = (record.get("subject") or {}).get("uri")
        base["repost_of"] = _mention_id(subject) if subject else None
    else:
        base["text"] = record.get("text") or ""
        langs = record.get("langs") or []
        base["lang"] = langs[0] if langs else None
        parent = ((record.get("reply") or {}).get("parent") or {}).get("uri")
        base["reply_to"] = _mention_id(parent) if parent else None
        quoted = _quoted_uri(record.get("embed"))
        if quoted:
            base["repost_of"] = _mention_id(quoted)
    if operation == "update":
        return Mention(**base, created_at=created, change="edited", edited_at=seen_at)
    if operation == "create":
        return Mention(**base, created_at=created)
    return None


class JetstreamSource(LiveSource):
    kind = "jetstream"
    coverage = Coverage(
        needs="nothing",
        covers="every public Bluesky post and repost (client-side matching)",
        misses="likes, follows; posts older than the instance's replay window (~24-72 h)",
        edits=True,
        deletes=True,
        resumes="time cursor (time_us), rewound a few seconds on reconnect",
    )

    def __init__(
        self,
        config: JetstreamConfig,
        clock: Clock,
        cursors: CursorStore,
        metrics: Metrics | None = None,
        *,
        name: str = "bluesky",
        client: JetstreamClient | None = None,
    ) -> None:
        super().__init__(name, clock, cursors, metrics)
        self.config = config
        self.client = client or JetstreamClient(config)

    async def stream(self, cursor: str | None) -> AsyncIterator[Step]:
        saved = json.loads(cursor) if cursor else None
        after: int | None = None
        request: int | None = None
        if saved is not None:
            request = int(saved["time_us"] - self.config.rewind_seconds * 1_000_000)
            if saved.get("endpoint") == self.config.endpoint:
                after = int(saved["time_us"])
        async for event in self.client.events(request, self.clock.now()):
            if self.health.state != "connected":
                self.health.set_state("connected")
            time_us = event.get("time_us")
            if not isinstance(time_us, int):
                continue
            if after is not None and time_us <= after:
                continue  # delivered before the reconnect
            position = json.dumps({"endpoint": self.config.endpoint, "time_us": time_us})
            try:
                mention = map_event(event)
            except (KeyError, TypeError, ValueError, ValidationError) as exc:
                self.health.error(f"malformed event skipped: {type(exc).__name__}")
                log.warning("source %s: malformed event at %d skipped", self.name, time_us)
                mention = None
            yield mention, position
