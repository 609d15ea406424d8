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
one). After a failover the overlap is caught by the listener's dedup. An instance asked
for a cursor ahead of its own clock serves its live tail instead (Jetstream's rule for a
cursor "from the future"); the first frame then comes before the cursor asked for. The
saved position is not trusted then (a frame stamped ahead of the instance's clock, or an
instance whose clock went back): nothing is dropped as delivered before (otherwise every
event up to that future time would be), and the jump is logged and counted as an error,
as the events between the last delivery and the live tail are not replayed.

One frame that cannot be read does not hold up the source: one that is not JSON, not an
event object, has no ``time_us`` or is a malformed commit is skipped, logged and counted
(``listener.sources.skips``) and the connection goes on. One larger than
``max_message_bytes`` is refused by the websocket library, which closes the connection
(1009) without reading it: the next connection asks for a cursor past it (see
``JetstreamSource._past_too_big``), so that it is not met again and again. A saved cursor
that cannot be read is logged, counted and ignored (the source starts from now).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import websockets
from pydantic import Field, field_validator
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidStatus
from websockets.frames import CloseCode

from core.clock import Clock
from core.events import Author, Mention
from core.metrics import Metrics
from core.settings import Section
from listener.backoff import TransientError, check_response
from listener.cursors import CursorStore
from listener.health import Coverage
from listener.sources import names
from listener.sources.live import EARLIEST, LiveSource, Step
from listener.sources.skips import UNREADABLE, digest, reason

log = logging.getLogger(__name__)

POST = "app.bsky.feed.post"
REPOST = "app.bsky.feed.repost"
FIRST_JUMP_US = 1_000
"""How far past the last good frame (in µs) the first reconnect after a frame too large
asks from; the jump doubles while the same frame is met again."""


class JetstreamConfig(Section):
    """Bluesky's public Jetstream (no credentials)."""

    endpoint: str = Field(
        "wss://jetstream2.us-east.bsky.network/subscribe",
        description="a Jetstream /subscribe URL (public instances: jetstream{1,2}.us-{east,west}"
        ".bsky.network)",
    )
    collections: list[str] = Field(default_factory=lambda: [POST, REPOST], min_length=1)
    rewind_seconds: float = Field(5.0, ge=0, description="rewind the cursor on reconnect")
    max_message_bytes: int = Field(1_000_000, ge=1024)
    open_timeout_seconds: float = Field(10.0, gt=0)
    idle_timeout_seconds: float | None = Field(
        120.0,
        gt=0,
        description="a connection that brings no frame for this long is reconnected (an "
        "instance that stalled while its socket stays open); None: never. Bluesky's posts "
        "and reposts never pause that long; raise it for a quiet collection",
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return names.address(value, "a Jetstream websocket address", ("wss", "ws"))


class FrameTooBig(Exception):
    """The instance sent a frame larger than ``max_message_bytes``: the websocket library
    closed the connection (1009, message too big) without reading it."""


class Stalled(TransientError):
    """The connection stayed open but brought no frame for ``idle_timeout_seconds``: a
    stalled instance, which would otherwise look connected (and quiet) for ever."""


class JetstreamClient:
    """The raw protocol: connect with the collections and cursor, yield the frames."""

    def __init__(self, config: JetstreamConfig) -> None:
        self.config = config

    def url(self, cursor_us: int | None) -> str:
        params: list[tuple[str, str]] = [("wantedCollections", c) for c in self.config.collections]
        if cursor_us is not None:
            params.append(("cursor", str(cursor_us)))
        return f"{self.config.endpoint}?{urlencode(params)}"

    async def frames(
        self, cursor_us: int | None, now: datetime | None = None
    ) -> AsyncIterator[str | bytes]:
        """The frames (JSON events, undecoded) from ``cursor_us`` on. A refused handshake
        raises what its HTTP status means (429 and 503 wait for ``Retry-After``); a frame
        larger than ``max_message_bytes`` raises ``FrameTooBig`` (the connection is
        closed)."""
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
        idle = self.config.idle_timeout_seconds
        async with connection as ws:
            try:
                while True:
                    try:
                        raw = await asyncio.wait_for(ws.recv(), idle)
                    except TimeoutError:
                        raise Stalled(
                            f"no frame for {idle:g} s on an open connection: the instance "
                            "stalled; reconnecting (idle_timeout_seconds)"
                        ) from None
                    yield raw
            except ConnectionClosedOK:
                return
            except ConnectionClosedError as exc:
                if exc.sent is not None and exc.sent.code == CloseCode.MESSAGE_TOO_BIG:
                    raise FrameTooBig(exc.sent.reason or "message too big") from exc
                raise


def _time(time_us: int) -> datetime:
    return datetime.fromtimestamp(time_us / 1_000_000, UTC)


def _parse_time(value: object, fallback: datetime) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return fallback
        if parsed.tzinfo is not None:
            try:
                parsed = parsed.astimezone(UTC)
            except OverflowError:  # 0001-01-01T00:00:00+01:00: no date, as one unparseable
                return fallback
            # a client's 1970-01-01 is no date either: the relay's time is
            return parsed if parsed >= EARLIEST else fallback
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
        self._too_big: tuple[int, int] | None = None
        """(``time_us`` of the last good frame before a frame too large, how many
        connections in a row met that frame there), until a frame after it is read."""

    def check_cursor(self, cursor: str) -> None:
        load_position(cursor)

    async def stream(self, cursor: str | None) -> AsyncIterator[Step]:
        saved = load_position(cursor)
        after: int | None = None
        request: int | None = None
        if saved is not None:
            endpoint, saved_us = saved
            request = int(saved_us - self.config.rewind_seconds * 1_000_000)
            if endpoint == self.config.endpoint:
                after = saved_us
        if self._too_big is not None:
            before_big, times = self._too_big
            request = before_big + FIRST_JUMP_US * 2 ** min(times - 1, 40)
        read: int | None = None  # time_us of the last good frame of this connection
        try:
            async for raw in self.client.frames(request, self.clock.now()):
                if self.health.state != "connected":
                    self.health.set_state("connected")
                event = self._decode(raw)
                if event is None:
                    continue
                time_us = event["time_us"]
                if read is None and request is not None and time_us < request:
                    self._live_tail(request, time_us, after)
                    after = None
                read = time_us
                if self._too_big is not None and time_us > self._too_big[0]:
                    self._too_big = None  # past the frame too large
                if after is not None and time_us <= after:
                    continue  # delivered before the reconnect
                position = json.dumps({"endpoint": self.config.endpoint, "time_us": time_us})
                try:
                    mention = map_event(event)
                except UNREADABLE as exc:
                    self.skips.skip(
                        f"malformed event at time_us {time_us} skipped ({reason(exc)})",
                        key=f"time_us:{time_us}",
                    )
                    mention = None
                yield mention, position
        except FrameTooBig as exc:
            self._past_too_big(read, request, exc)
            # the stream ends; the base reconnects, asking from past the frame

    def _live_tail(self, request: int, first: int, after: int | None) -> None:
        """The first frame (``first``) comes before the cursor asked for (``request``):
        the instance did not replay from it but serves its live tail, as it does for a
        cursor ahead of its clock. The saved position is then no measure of what was
        delivered: nothing is dropped against it; the events between the last delivery and
        the live tail are missed (not replayed), which is logged and counted."""
        ahead = (request - first) / 1_000_000
        message = (
            f"the instance served its live tail, not a replay from the cursor asked for "
            f"(time_us {request}, {ahead:,.0f} s ahead of its first frame): the saved "
            "position is ahead of the instance's clock; events since the last delivery "
            "may be missed"
        )
        if after is not None:
            message += "; none are dropped as delivered before"
        log.error("source %s: %s", self.name, message)
        self.health.error(message)

    def _decode(self, raw: str | bytes) -> dict[str, Any] | None:
        """The event of a frame; None (skipped, logged and counted once) for a frame that
        is not a JSON object with an integer ``time_us``."""
        try:
            event = json.loads(raw)
        except UNREADABLE as exc:
            self.skips.skip(f"a frame that is not JSON skipped ({reason(exc)})", key=digest(raw))
            return None
        if not isinstance(event, dict):
            what = f"a frame that is not an event object ({type(event).__name__}) skipped"
            self.skips.skip(what, key=digest(raw))
            return None
        time_us = event.get("time_us")
        if isinstance(time_us, bool) or not isinstance(time_us, int):
            self.skips.skip("an event without an integer time_us skipped", key=digest(raw))
            return None
        return event

    def _past_too_big(self, read: int | None, request: int | None, exc: FrameTooBig) -> None:
        """A frame larger than ``max_message_bytes`` closed the connection after the frame
        at ``read`` (None: before any frame of the connection, which asked from
        ``request``). Reconnecting as usual (the cursor rewound 5 s) would meet it again,
        and again. Its ``time_us`` is not known (the library never read it), only that it
        comes just after the last good frame (frames come in ``time_us`` order); so the
        next connection asks from past that frame: 1 ms past it, doubling while the same
        frame is met again (no frame read in between). No event lies between the last good
        frame and the frame too large; the events between that frame and the cursor that
        finally passes it are missed (unless delivered already, before a rewind), and as
        the jump only doubles, that stretch is at most as long as the gap before the
        frame (posts are milliseconds apart on Bluesky: none or a few). Not taken: letting
        the library read larger frames and skipping them here (memory would be bound by a
        second, larger limit, not by ``max_message_bytes``; and a frame over that one
        would still need this). The frame is counted once, each jump logged."""
        if read is None and self._too_big is not None:
            position, times = self._too_big[0], self._too_big[1] + 1  # the same frame again
        elif read is not None:
            position, times = read, 1
        elif request is not None:
            position, times = request - 1, 1  # it is the first frame at or after request
        else:  # live tail without a cursor: the next connection starts after it anyway
            self.skips.skip(f"a frame larger than max_message_bytes skipped ({exc})", key=None)
            return
        self._too_big = (position, times)
        jump_ms = FIRST_JUMP_US * 2 ** min(times - 1, 40) / 1000
        message = (
            f"a frame larger than max_message_bytes ({self.config.max_message_bytes}) after "
            f"time_us {position} skipped; reconnecting from {jump_ms:g} ms past that "
            "frame (events within the jump are missed)"
        )
        if not self.skips.skip(message, key=f"too-big:{position}"):
            log.warning("source %s: %s", self.name, message)


def load_position(cursor: str | None) -> tuple[str | None, int] | None:
    """(endpoint, ``time_us``) of a saved cursor. Raises ``ValueError`` (``TypeError``,
    ``KeyError``) for one that cannot be read."""
    if not cursor:
        return None
    raw = json.loads(cursor)
    if not isinstance(raw, dict):
        raise TypeError(f"the cursor is an object, not {type(raw).__name__}")
    time_us, endpoint = raw["time_us"], raw.get("endpoint")
    if isinstance(time_us, bool) or not isinstance(time_us, int):
        raise TypeError(f"time_us is an integer, not {time_us!r:.40}")
    if endpoint is not None and not isinstance(endpoint, str):
        raise TypeError(f"endpoint is a string, not {type(endpoint).__name__}")
    return endpoint, time_us
