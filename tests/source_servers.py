"""Helpers of the source restart tests: the listener's downstream, a local HTTP server."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from email.utils import format_datetime

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

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


class FakeAlgolia:
    """Hacker News' Algolia ``search_by_date`` as far as the source uses it, with its
    limits: newest first (the items of one second by ``objectID``, descending),
    ``numericFilters`` on ``created_at_i`` (comma-separated, all must hold; ``>=``,
    ``<=``, ``>``, ``<``, ``=``) and at most ``CEILING`` hits per query: the pages after
    them are empty, ``nbPages`` stops there and ``nbHits`` counts every match
    (algolia/hn-search#230). ``handle`` serves an ``httpx.MockTransport``, ``app`` a
    local HTTP server (``serve_http``)."""

    CEILING = 1000

    def __init__(self, items: Sequence[tuple[str, int]]) -> None:
        self.items = list(items)  # (objectID, created_at_i)
        self.requests: list[dict[str, str]] = []

    def answer(self, params: dict[str, str]) -> dict[str, object]:
        self.requests.append(params)
        checks = [self._check(f) for f in params.get("numericFilters", "").split(",") if f]
        matches = sorted(
            (item for item in self.items if all(check(item[1]) for check in checks)),
            key=lambda item: (item[1], item[0]),
            reverse=True,
        )
        per, page = int(params.get("hitsPerPage", "20")), int(params.get("page", "0"))
        served = matches[: self.CEILING]
        chunk = served[page * per : (page + 1) * per]
        return {
            "hits": [
                {
                    "objectID": object_id,
                    "created_at_i": created,
                    "title": f"acme {object_id}",
                    "_tags": ["story", f"story_{object_id}"],
                    "author": "a",
                    "points": 1,
                    "num_comments": 0,
                }
                for object_id, created in chunk
            ],
            "nbHits": len(matches),
            "nbPages": -(-len(served) // per),
            "page": page,
            "hitsPerPage": per,
        }

    def handle(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=self.answer(dict(request.url.params)))

    def app(self) -> Starlette:
        async def search(request: Request) -> JSONResponse:
            return JSONResponse(self.answer(dict(request.query_params)))

        return Starlette(routes=[Route("/api/v1/search_by_date", search)])

    @staticmethod
    def _check(condition: str) -> Callable[[int], bool]:
        for op, test in FILTER_OPS:
            name, found, value = condition.partition(op)
            if found:
                if name.strip() != "created_at_i":
                    raise ValueError(f"fake Algolia filters created_at_i only, not {name!r}")
                bound = int(value)
                return lambda t: test(t, bound)
        raise ValueError(f"fake Algolia: unknown numeric filter {condition!r}")


FILTER_OPS: list[tuple[str, Callable[[int, int], bool]]] = [
    (">=", lambda t, b: t >= b),
    ("<=", lambda t, b: t <= b),
    (">", lambda t, b: t > b),
    ("<", lambda t, b: t < b),
    ("=", lambda t, b: t == b),
]
"""The two-character operators first: ``>=`` is not ``>`` followed by ``=``."""


def rss_feed(items: Sequence[tuple[str, datetime | None]]) -> bytes:
    """An RSS 2.0 document listing ``items`` (guid, date or None for no ``pubDate``) in
    the order given (feeds list newest first); each item's title is ``acme <guid>``."""

    def item(guid: str, when: datetime | None) -> str:
        date = f"<pubDate>{format_datetime(when, usegmt=True)}</pubDate>" if when else ""
        return f"<item><guid>{guid}</guid><title>acme {guid}</title>{date}</item>"

    body = "".join(item(guid, when) for guid, when in items)
    return f'<?xml version="1.0"?><rss version="2.0"><channel>{body}</channel></rss>'.encode()


def telegram_preview(channel: str, posts: Sequence[tuple[int, datetime | None]]) -> str:
    """A ``t.me/s/<channel>`` page listing ``posts`` (number, date or None for no
    ``<time>``), oldest first as t.me lists them; each post's text is ``acme <number>``."""

    def post(number: int, when: datetime | None) -> str:
        time = f'<time datetime="{when.isoformat()}"></time>' if when else ""
        return (
            '<div class="tgme_widget_message_wrap"><div class="tgme_widget_message" '
            f'data-post="{channel}/{number}"><div class="tgme_widget_message_text">acme '
            f'{number}</div><a class="tgme_widget_message_date">{time}</a></div></div>'
        )

    body = "".join(post(number, when) for number, when in posts)
    return f'<html><body><section class="tgme_channel_history">{body}</section></body></html>'


def static_app(pages: dict[str, tuple[bytes | str, str]]) -> Starlette:
    """A server answering each path of ``pages`` with its (body, media type); ``pages``
    may be changed while it serves (the next request reads the new body)."""

    def route(path: str) -> Route:
        async def page(request: Request) -> Response:
            body, media_type = pages[path]
            return Response(body, media_type=media_type)

        return Route(path, page)

    return Starlette(routes=[route(path) for path in pages])
