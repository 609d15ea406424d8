"""Helpers of the source restart tests: the listener's downstream, a local HTTP server."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette

from core.clock import SystemClock
from core.events import Mention
from core.metrics import Metrics
from listener.backoff import Backoff
from listener.config import ListenerConfig
from listener.dedup import Deduplicator
from listener.service import ListenerService
from listener.sources.live import LiveSource
from tests.support import free_port

CONFIG = ListenerConfig.model_validate({"watches": [{"id": "all", "match_all": True}]})


class Downstream:
    """The bus as far as the listener sees it: records every published mention."""

    def __init__(self) -> None:
        self.sent: list[Mention] = []
        self.grew = asyncio.Event()

    async def publish(self, topic: str, event: Mention, *, key: str) -> None:
        self.sent.append(event)
        self.grew.set()

    async def publish_many(self, topic: str, events: Sequence[tuple[str, Mention]]) -> None:
        for key, event in events:
            await self.publish(topic, event, key=key)

    async def until(self, check: Callable[[], bool]) -> None:
        async def wait() -> None:
            while not check():
                self.grew.clear()
                await self.grew.wait()

        await asyncio.wait_for(wait(), 60)  # a safety net, not a timing assertion


async def run_listener(bus: Downstream, source: LiveSource) -> ListenerService:
    source.backoff = Backoff(0.01, 0.05)
    service = ListenerService(
        bus, CONFIG, SystemClock(), Metrics(), Deduplicator(), sources=[source]
    )  # type: ignore[arg-type]
    await service.start()
    return service


def assert_exactly_once(sent: list[Mention], expected: set[str]) -> None:
    counts = Counter(m.id for m in sent if m.change == "created")
    assert set(counts) == expected, f"missing: {sorted(expected - set(counts))[:5]}"
    repeated = {i: c for i, c in counts.items() if c > 1}
    assert not repeated, f"delivered more than once: {list(repeated.items())[:5]}"


@asynccontextmanager
async def serve_http(app: Starlette) -> AsyncIterator[int]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task
