"""A Jetstream instance that stalls: its socket stays open (pings answered) but no frame
comes. Was: the source said "connected" with no error for ever, and Bluesky was silently
not heard (an operator could not tell it from a quiet network, which Bluesky never is)."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.server import ServerConnection, serve

from core.clock import SystemClock
from core.metrics import Metrics
from listener.backoff import Backoff
from listener.cursors import MemoryCursorStore
from listener.sources.jetstream import JetstreamConfig, JetstreamSource

EVENT = {
    "did": "did:plc:a",
    "time_us": 1_725_911_162_329_308,
    "kind": "commit",
    "commit": {
        "operation": "create",
        "collection": "app.bsky.feed.post",
        "rkey": "k1",
        "record": {"createdAt": "2024-09-09T19:46:02.102Z", "text": "acme"},
    },
}


async def test_a_stalled_connection_is_reconnected_and_said_in_the_health() -> None:
    connections: list[str] = []

    async def stall(ws: ServerConnection) -> None:
        assert ws.request is not None
        connections.append(ws.request.path)
        if len(connections) == 1:
            await ws.send(json.dumps(EVENT))
        await ws.wait_closed()  # open, and silent

    async with serve(stall, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        config = JetstreamConfig(
            endpoint=f"ws://127.0.0.1:{port}/subscribe", idle_timeout_seconds=0.2
        )
        source = JetstreamSource(config, SystemClock(), MemoryCursorStore(), Metrics())
        source.backoff = Backoff(0.01, 0.02)
        await source.start()
        stream = source.mentions()
        first = await anext(stream)
        source.delivered(first)
        reading = asyncio.create_task(anext(stream))

        async def reconnected() -> None:
            while len(connections) < 2:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(reconnected(), 30)  # a safety net, not a timing assertion
        reading.cancel()
        await source.stop()
    assert "cursor=" in connections[1]  # resumed from the frame delivered
    assert source.health.reconnects >= 1
    assert "no frame for 0.2 s" in (source.health.last_error or "")
