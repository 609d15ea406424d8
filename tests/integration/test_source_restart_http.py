"""The "no gaps, no duplicates" goal for the polled sources: a real local HTTP server
(uvicorn + Starlette) answers like Hacker News' Algolia API, an RSS feed, Reddit, a
Telegram channel preview and the YouTube Data API, over a stream of items that grows
while the test runs (three items per second of creation time, so the "same second"
cursor logic is exercised). The listener is killed mid-stream, items keep arriving while
it is down, and a new listener with an empty dedup (a new process) resumes from the
cursor saved in the database: every item reaches the bus exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.clock import SystemClock
from core.metrics import Metrics
from listener.cursors import DbCursorStore
from listener.dedup import Deduplicator
from listener.service import ListenerService
from listener.sources.feeds import FeedsConfig, FeedsSource
from listener.sources.hackernews import HackerNewsConfig, HackerNewsSource
from listener.sources.live import LiveSource
from listener.sources.reddit import RedditConfig, RedditSource
from listener.sources.telegram import TelegramConfig, TelegramSource
from listener.sources.youtube import YouTubeConfig, YouTubeSource
from tests.source_servers import CONFIG, Downstream, assert_exactly_once, serve_http

N = 90
T0 = 1_725_913_200  # 2024-09-09 20:20 UTC


class FastClock(SystemClock):
    """Wall time, but the sources' poll intervals pass in a few milliseconds."""

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(min(seconds, 0.005))


class Platform:
    """Items posted over time; each API below renders them its own way."""

    def __init__(self) -> None:
        self.items: list[int] = []
        self.gates = {40: asyncio.Event(), 65: asyncio.Event()}

    async def produce(self) -> None:
        for i in range(N):
            if i in self.gates:
                await self.gates[i].wait()
            self.items.append(i)
            await asyncio.sleep(0.004)

    def created(self, i: int) -> int:
        return T0 + i // 3

    def newest_first(self, since: int = 0) -> list[int]:
        return [i for i in reversed(self.items) if self.created(i) >= since]

    # --- the APIs ---

    async def algolia(self, request: Request) -> JSONResponse:
        since = int(request.query_params["numericFilters"].removeprefix("created_at_i>="))
        per, page = int(request.query_params["hitsPerPage"]), int(request.query_params["page"])
        hits = self.newest_first(since)
        chunk = hits[page * per : (page + 1) * per]
        pages = -(-len(hits) // per)
        return JSONResponse(
            {
                "hits": [
                    {
                        "objectID": str(1000 + i),
                        "created_at_i": self.created(i),
                        "title": f"acme {i}",
                        "_tags": ["story"],
                        "author": "a",
                        "points": 1,
                        "num_comments": 0,
                    }
                    for i in chunk
                ],
                "nbPages": pages,
                "page": page,
            }
        )

    async def rss(self, request: Request) -> Response:
        def item(i: int) -> str:
            when = datetime.fromtimestamp(self.created(i), UTC)
            return (
                f"<item><title>acme {i}</title><guid>item-{i}</guid>"
                f"<pubDate>{when:%a, %d %b %Y %H:%M:%S} GMT</pubDate></item>"
            )

        items = "".join(item(i) for i in self.newest_first())
        body = f'<?xml version="1.0"?><rss version="2.0"><channel>{items}</channel></rss>'
        return Response(body, media_type="application/rss+xml")

    async def reddit_token(self, request: Request) -> JSONResponse:
        return JSONResponse({"access_token": "tok", "token_type": "bearer", "expires_in": 3600})

    async def reddit_search(self, request: Request) -> JSONResponse:
        newest = self.newest_first()
        after = request.query_params.get("after")
        if after:
            newest = newest[newest.index(int(after.removeprefix("t3_"))) + 1 :]
        page = newest[:25]  # small pages: the client has to follow "after"
        children = [
            {
                "kind": "t3",
                "data": {
                    "name": f"t3_{i}",
                    "created_utc": float(self.created(i)),
                    "title": f"acme {i}",
                    "permalink": f"/r/x/comments/{i}/",
                },
            }
            for i in page
        ]
        next_after = f"t3_{page[-1]}" if len(newest) > len(page) else None
        headers = {
            "X-Ratelimit-Remaining": "99",
            "X-Ratelimit-Reset": "300",
            "X-Ratelimit-Used": "1",
        }
        return JSONResponse(
            {"kind": "Listing", "data": {"after": next_after, "children": children}},
            headers=headers,
        )

    async def telegram(self, request: Request) -> Response:
        ascending = sorted(self.items)
        before = request.query_params.get("before")
        if before is not None:
            ascending = [i for i in ascending if i + 1 < int(before)]
        page = ascending[-20:]
        posts = "".join(
            f'<div class="tgme_widget_message_wrap">'
            f'<div class="tgme_widget_message js-widget_message" '
            f'data-post="acmewatch/{i + 1}"><div class="tgme_widget_message_text">acme {i}</div>'
            f'<a class="tgme_widget_message_date"><time datetime="'
            f'{datetime.fromtimestamp(self.created(i), UTC).isoformat()}"></time></a></div></div>'
            for i in page
        )
        return Response(
            f"<html><body><section>{posts}</section></body></html>", media_type="text/html"
        )

    async def youtube(self, request: Request) -> JSONResponse:
        assert request.headers["x-goog-api-key"] == "k"
        newest = self.newest_first()
        start = int(request.query_params.get("pageToken") or 0)
        page = newest[start : start + 30]
        items = [
            {
                "id": f"Ug{i}",
                "snippet": {
                    "videoId": "v",
                    "totalReplyCount": 0,
                    "topLevelComment": {
                        "snippet": {
                            "videoId": "v",
                            "textOriginal": f"acme {i}",
                            "likeCount": 0,
                            "publishedAt": datetime.fromtimestamp(self.created(i), UTC).isoformat(),
                        }
                    },
                },
            }
            for i in page
        ]
        token = str(start + 30) if start + 30 < len(newest) else None
        return JSONResponse({"items": items, "nextPageToken": token})


def app(platform: Platform) -> Starlette:
    return Starlette(
        routes=[
            Route("/api/v1/search_by_date", platform.algolia),
            Route("/feed.xml", platform.rss),
            Route("/api/v1/access_token", platform.reddit_token, methods=["POST"]),
            Route("/search", platform.reddit_search),
            Route("/s/acmewatch", platform.telegram),
            Route("/youtube/v3/commentThreads", platform.youtube),
        ]
    )


def hackernews(
    base: str, http: httpx.AsyncClient, clock: FastClock, cursors: DbCursorStore
) -> LiveSource:
    config = HackerNewsConfig(
        queries=["acme"],
        endpoint=f"{base}/api/v1/search_by_date",
        hits_per_page=20,
        max_pages=20,
        initial_lookback_minutes=10**7,
    )
    return HackerNewsSource(config, http, clock, cursors)


def rss(base: str, http: httpx.AsyncClient, clock: FastClock, cursors: DbCursorStore) -> LiveSource:
    config = FeedsConfig(feeds=[{"url": f"{base}/feed.xml"}], initial_lookback_minutes=10**7)
    return FeedsSource(config, http, clock, cursors)


def reddit(
    base: str, http: httpx.AsyncClient, clock: FastClock, cursors: DbCursorStore
) -> LiveSource:
    config = RedditConfig(
        client_id="c",
        client_secret="s",
        user_agent="test:cw:1",
        searches=["acme"],
        api_base=base,
        token_url=f"{base}/api/v1/access_token",
        max_pages=10,
        initial_lookback_minutes=10**7,
    )
    return RedditSource(config, http, clock, cursors)


def telegram(
    base: str, http: httpx.AsyncClient, clock: FastClock, cursors: DbCursorStore
) -> LiveSource:
    config = TelegramConfig(
        channels=["acmewatch"], base_url=base, max_pages=10, initial_lookback_minutes=10**7
    )
    return TelegramSource(config, http, clock, cursors)


def youtube(
    base: str, http: httpx.AsyncClient, clock: FastClock, cursors: DbCursorStore
) -> LiveSource:
    config = YouTubeConfig(
        api_key="k",
        videos=["v"],
        endpoint=f"{base}/youtube/v3/commentThreads",
        max_pages=10,
        daily_quota_units=10**6,
        initial_lookback_minutes=10**7,
    )
    return YouTubeSource(config, http, clock, cursors)


Factory = Callable[[str, httpx.AsyncClient, FastClock, DbCursorStore], LiveSource]
IDS: dict[str, Callable[[int], str]] = {
    "hackernews": lambda i: f"hackernews:{1000 + i}",
    "reddit": lambda i: f"reddit:t3_{i}",
    "telegram": lambda i: f"telegram:acmewatch/{i + 1}",
    "youtube": lambda i: f"youtube:Ug{i}",
}


@pytest.mark.parametrize(
    "factory", [hackernews, rss, reddit, telegram, youtube], ids=lambda f: f.__name__
)
async def test_a_polled_source_killed_and_restarted_delivers_each_item_once(
    factory: Factory, sessions: async_sessionmaker[AsyncSession]
) -> None:
    platform = Platform()
    cursors = DbCursorStore(sessions, SystemClock())
    bus = Downstream()
    clock = FastClock()

    async def listener() -> ListenerService:
        service = ListenerService(
            bus,
            CONFIG,
            clock,
            Metrics(),
            Deduplicator(),
            sources=[factory(base, http, clock, cursors)],
        )  # type: ignore[arg-type]
        await service.start()
        return service

    async with serve_http(app(platform)) as port, httpx.AsyncClient() as http:
        base = f"http://127.0.0.1:{port}"
        producer = asyncio.create_task(platform.produce())
        first = await listener()
        await bus.until(lambda: len(bus.sent) >= 30)
        await first.stop()  # the kill
        platform.gates[40].set()  # items 40-64 arrive while no listener runs
        while len(platform.items) < 65:
            await asyncio.sleep(0.01)
        second = await listener()
        platform.gates[65].set()
        await producer
        await bus.until(lambda: len({m.id for m in bus.sent}) >= N)
        await second.stop()
    name = factory.__name__
    if name == "rss":
        expected = {m.id for m in bus.sent}
        assert len(expected) == N and {m.text for m in bus.sent} == {f"acme {i}" for i in range(N)}
    else:
        expected = {IDS[name](i) for i in range(N)}
    assert_exactly_once(bus.sent, expected)
