"""The "no gaps, no duplicates" goal: a live source killed and restarted mid-stream, each
against a real local fake server, delivers every event exactly once downstream.

Jetstream: a real websocket server (``websockets``) replays from the requested
``cursor``; it also drops the first connection mid-stream (a reconnect inside the
process). Mastodon: a real SSE server (uvicorn + Starlette) streams statuses posted after
a client connects, like Mastodon does; what was posted while the listener was down comes
back only through the REST catch-up. The listener is stopped (its task cancelled
mid-batch) and a new listener with a new, empty dedup (a new process) starts from the
cursor saved in the database.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route
from websockets.asyncio.server import ServerConnection, serve

from core.clock import SystemClock
from listener.cursors import DbCursorStore
from listener.sources.jetstream import JetstreamConfig, JetstreamSource
from listener.sources.mastodon import MastodonConfig, MastodonSource
from tests.source_servers import Downstream, assert_exactly_once, run_listener, serve_http

N = 300


# --- Jetstream -------------------------------------------------------------------------

T0_US = 1_725_911_000_000_000


def jet_event(i: int) -> dict[str, Any]:
    if i % 10 == 9:  # identity events in between: not mentions, the cursor moves past them
        return {
            "did": "did:plc:x",
            "time_us": T0_US + i * 100_000,
            "kind": "identity",
            "identity": {
                "did": "did:plc:x",
                "handle": "x.bsky.social",
                "seq": i,
                "time": "2024-09-09T19:46:02.102Z",
            },
        }
    return {
        "did": "did:plc:author",
        "time_us": T0_US + i * 100_000,  # 100 ms apart: a 5 s rewind re-sends 50 events
        "kind": "commit",
        "commit": {
            "rev": f"r{i}",
            "operation": "create",
            "collection": "app.bsky.feed.post",
            "rkey": f"k{i:05d}",
            "cid": f"c{i}",
            "record": {
                "$type": "app.bsky.feed.post",
                "createdAt": "2024-09-09T19:46:02.102Z",
                "langs": ["en"],
                "text": f"post {i}",
            },
        },
    }


class FakeJetstream:
    def __init__(self) -> None:
        self.events = [jet_event(i) for i in range(N)]
        self.cursors: list[int | None] = []
        self.sent = 0

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        query = parse_qs(urlsplit(ws.request.path).query)
        assert query["wantedCollections"] == ["app.bsky.feed.post", "app.bsky.feed.repost"]
        cursor = int(query["cursor"][0]) if "cursor" in query else None
        self.cursors.append(cursor)
        first_connection = len(self.cursors) == 1
        for n, event in enumerate(
            e for e in self.events if cursor is None or e["time_us"] >= cursor
        ):
            await ws.send(json.dumps(event))
            self.sent += 1
            if first_connection and n == 80:
                await ws.close(1011, "going away")  # a drop mid-stream
                return
            await asyncio.sleep(0.002)
        await ws.wait_closed()


async def test_jetstream_killed_and_restarted_delivers_each_post_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    fake = FakeJetstream()
    cursors = DbCursorStore(sessions, SystemClock())
    bus = Downstream()
    async with serve(fake.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        config = JetstreamConfig(endpoint=f"ws://127.0.0.1:{port}/subscribe")

        first = await run_listener(bus, JetstreamSource(config, SystemClock(), cursors))
        await bus.until(lambda: len(bus.sent) >= 150)  # past the drop, mid-stream
        await first.stop()  # the kill: tasks cancelled, cursor saved
        before = len(bus.sent)
        assert before < N * 0.9

        second = await run_listener(bus, JetstreamSource(config, SystemClock(), cursors))
        posts = {
            f"bluesky:at://did:plc:author/app.bsky.feed.post/k{i:05d}"
            for i in range(N)
            if i % 10 != 9
        }
        await bus.until(lambda: len({m.id for m in bus.sent}) >= len(posts))
        await second.stop()
    assert_exactly_once(bus.sent, posts)
    # the drop and the restart both resumed from a rewound cursor, not from scratch
    assert fake.cursors[0] is None and all(c is not None for c in fake.cursors[1:])
    assert len(fake.cursors) >= 3
    assert fake.sent > N  # the rewinds re-sent events: the source dropped the overlap


# --- Mastodon --------------------------------------------------------------------------


def status(i: int) -> dict[str, Any]:
    return {
        "id": str(113_000_000_000_000_000 + i),
        "created_at": "2024-09-09T19:46:02.000Z",
        "in_reply_to_id": None,
        "in_reply_to_account_id": None,
        "sensitive": False,
        "spoiler_text": "",
        "visibility": "public",
        "language": "en",
        "uri": f"https://m.example/users/a/statuses/{i}",
        "url": f"https://m.example/@a/{i}",
        "replies_count": 0,
        "reblogs_count": 0,
        "favourites_count": 0,
        "edited_at": None,
        "content": f"<p>status {i}</p>",
        "reblog": None,
        "account": {
            "id": "1",
            "username": "a",
            "acct": "a",
            "url": "https://m.example/@a",
            "followers_count": 3,
        },
        "media_attachments": [],
        "mentions": [],
        "tags": [],
        "emojis": [],
        "card": None,
        "poll": None,
    }


class FakeMastodon:
    """Statuses are posted over time; a stream gets only those posted while it is open."""

    def __init__(self) -> None:
        self.posted: list[dict[str, Any]] = []
        self.streams: list[asyncio.Queue[str | None]] = []
        self.connections = 0
        self.catch_ups: list[str] = []
        # the producer waits at these statuses until the test opens the gate
        self.gates = {150: asyncio.Event(), 220: asyncio.Event()}

    async def produce(self) -> None:
        for i in range(N):
            if i in self.gates:
                await self.gates[i].wait()
            s = status(i)
            self.posted.append(s)
            for q in self.streams:
                q.put_nowait(f"event: update\ndata: {json.dumps(s)}\n\n")
                if i % 25 == 0:
                    q.put_nowait(":thump\n\n")
                if i % 50 == 7:  # an edit and a deletion of earlier statuses
                    edited = dict(status(i - 1), edited_at="2024-09-09T20:00:00.000Z")
                    q.put_nowait(f"event: status.update\ndata: {json.dumps(edited)}\n\n")
                    q.put_nowait(f"event: delete\ndata: {status(i - 2)['id']}\n\n")
                    q.put_nowait("event: filters_changed\ndata: undefined\n\n")
            await asyncio.sleep(0.004)

    async def stream(self, request: Request) -> StreamingResponse:
        assert request.headers["authorization"] == "Bearer tok-123"
        self.connections += 1
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.streams.append(queue)
        drop_after = 60 if self.connections == 1 else None

        async def body() -> AsyncIterator[str]:
            sent = 0
            try:
                yield ":)\n\n"
                while True:
                    chunk = await queue.get()
                    yield chunk
                    sent += chunk.startswith("event: update")
                    if drop_after is not None and sent >= drop_after:
                        return  # the server ends the stream mid-way
            finally:
                self.streams.remove(queue)

        return StreamingResponse(body(), media_type="text/event-stream")

    async def timeline(self, request: Request) -> JSONResponse:
        limit = int(request.query_params["limit"])
        if "min_id" not in request.query_params:  # the newest (a first run's start)
            newer = self.posted[-limit:]
        else:
            min_id = int(request.query_params["min_id"])
            self.catch_ups.append(str(min_id))
            newer = [s for s in self.posted if int(s["id"]) > min_id][:limit]
        return JSONResponse(list(reversed(newer)))  # newest first, as Mastodon answers


async def test_mastodon_killed_and_restarted_delivers_each_status_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    fake = FakeMastodon()
    app = Starlette(
        routes=[
            Route("/api/v1/streaming/public", fake.stream),
            Route("/api/v1/timelines/public", fake.timeline),
        ]
    )
    cursors = DbCursorStore(sessions, SystemClock())
    bus = Downstream()
    async with serve_http(app) as port, httpx.AsyncClient() as http:
        config = MastodonConfig(instance=f"http://127.0.0.1:{port}", access_token="tok-123")
        first = await run_listener(bus, MastodonSource(config, http, SystemClock(), cursors))
        while fake.connections == 0:  # the stream is open before anything is posted
            await asyncio.sleep(0.01)
        producer = asyncio.create_task(fake.produce())
        await bus.until(lambda: sum(m.change == "created" for m in bus.sent) >= 120)
        await first.stop()  # the kill, while statuses are in flight
        fake.gates[150].set()  # statuses 150-219 are posted while the listener is down
        while len(fake.posted) < 220:
            await asyncio.sleep(0.01)

        second = await run_listener(bus, MastodonSource(config, http, SystemClock(), cursors))
        fake.gates[220].set()
        await producer
        expected = {f"mastodon-127.0.0.1:{s['id']}" for s in fake.posted}
        await bus.until(lambda: len({m.id for m in bus.sent if m.change == "created"}) >= N)
        await second.stop()
    assert_exactly_once(bus.sent, expected)
    assert fake.connections >= 3 and len(fake.catch_ups) >= 2
    # edits and deletions of statuses the listener had published reach their watch once
    changes = Counter((m.id, m.change) for m in bus.sent if m.change != "created")
    assert changes and max(changes.values()) == 1


async def test_jetstream_waits_for_retry_after_when_the_handshake_is_refused() -> None:
    from http import HTTPStatus

    from core.clock import ManualClock
    from listener.cursors import MemoryCursorStore

    class Recording(ManualClock):
        def __init__(self) -> None:
            super().__init__()
            self.sleeps: list[float] = []

        async def sleep(self, seconds: float) -> None:
            self.sleeps.append(seconds)
            self.advance(seconds)
            await asyncio.sleep(0)

    refused = 0

    def process_request(connection: ServerConnection, request: Any) -> Any:
        nonlocal refused
        if refused == 0:
            refused += 1
            response = connection.respond(HTTPStatus.TOO_MANY_REQUESTS, "slow down\n")
            response.headers["Retry-After"] = "7"
            return response
        return None

    async def handler(ws: ServerConnection) -> None:
        await ws.send(json.dumps(jet_event(0)))
        await ws.wait_closed()

    clock = Recording()
    async with serve(handler, "127.0.0.1", 0, process_request=process_request) as server:
        port = server.sockets[0].getsockname()[1]
        config = JetstreamConfig(endpoint=f"ws://127.0.0.1:{port}/subscribe")
        source = JetstreamSource(config, clock, MemoryCursorStore())
        await source.start()
        stream = source.mentions()
        first = await asyncio.wait_for(stream.__anext__(), 30)
        await stream.aclose()
    assert first.text == "post 0"
    assert clock.sleeps == [7]
    assert source.health.rate_limited == 1
