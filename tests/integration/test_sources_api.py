"""``GET /sources``: the coverage table and the running sources' health; cursors in the DB."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from alerts.config import AlertsConfig
from api.app import create_app
from api.runtime import Runtime
from api.settings import ApiConfig, ApiKeyConfig, Settings
from core.clock import ManualClock
from core.db import make_sessionmaker
from core.settings import DatabaseConfig
from listener.config import ListenerConfig
from listener.cursors import SourceCursor
from tests.fakes import FakeClassifier
from tests.support import VIEWER_KEY

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"


async def first_event(source: object) -> None:
    async def wait() -> None:
        while source.health.events == 0:  # type: ignore[attr-defined]
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), 30)  # a safety net


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    clock = ManualClock(datetime(2024, 9, 9, 20, 30, tzinfo=UTC))  # the fixture's hour
    story = json.loads((FIXTURES / "hackernews/search_by_date_story.json").read_text())
    empty = json.loads((FIXTURES / "hackernews/search_by_date_empty.json").read_text())
    calls = 0

    def algolia(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(200, json=story if calls == 1 else empty)

    settings = Settings(
        database=DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'api.db'}"),
        api=ApiConfig(keys=[ApiKeyConfig(name="watcher", key=VIEWER_KEY, role="viewer")]),
        listener=ListenerConfig.model_validate(
            {
                "watches": [{"id": "acme", "terms": ["acme"]}],
                "sources": {"hackernews": {"queries": ["acme"]}},
            }
        ),
        alerts=AlertsConfig(),
    )
    http = httpx.AsyncClient(transport=httpx.MockTransport(algolia))
    runtime = Runtime(settings, clock=clock, classifier=FakeClassifier(), migrate=True, http=http)
    app = create_app(runtime)
    async with http, app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cw") as client:
            yield client, runtime


async def test_sources_lists_the_coverage_table_and_running_health(
    api: tuple[httpx.AsyncClient, Runtime],
) -> None:
    client, runtime = api
    assert runtime.listener is not None
    [source] = runtime.listener.sources
    await first_event(source)
    r = await client.get("/sources", headers={"X-API-Key": VIEWER_KEY})
    assert r.status_code == 200
    body = r.json()
    [running] = body["running"]
    assert running["name"] == "hackernews" and running["needs"] == "nothing"
    assert running["state"] == "polling" and running["events"] == 1
    assert running["last_event_at"] is not None and running["errors"] == 0
    kinds = {e["kind"]: e for e in body["catalogue"]}
    assert kinds["mastodon"]["needs"] == "free token"
    assert kinds["reddit"]["implemented"] is True
    assert all(e["implemented"] for e in body["catalogue"])
    assert kinds["webhook"]["needs"] == "push"


async def test_sources_needs_a_key(api: tuple[httpx.AsyncClient, Runtime]) -> None:
    client, _ = api
    assert (await client.get("/sources")).status_code == 401


async def test_the_runtime_keeps_source_cursors_in_the_database(
    api: tuple[httpx.AsyncClient, Runtime],
) -> None:
    _, runtime = api
    assert runtime.listener is not None and runtime.engine is not None
    [source] = runtime.listener.sources
    await first_event(source)
    sessions = make_sessionmaker(runtime.engine)
    row = None
    for _ in range(300):  # the event is counted as read before its publish (journal) is done
        await source.save_cursor(force=True)  # type: ignore[attr-defined]
        async with sessions() as session:
            row = await session.scalar(select(SourceCursor).where(SourceCursor.key == "hackernews"))
        if row is not None:
            break
        await asyncio.sleep(0.01)
    assert row is not None
    assert json.loads(row.cursor)["acme"]["t"] == 1725913211


def test_check_config_lists_each_source_with_what_it_needs() -> None:
    from api.checks import describe_sources
    from api.settings import Settings as AppSettings

    settings = AppSettings(
        listener=ListenerConfig.model_validate(
            {"sources": {"bluesky": {}, "telegram": {"channels": ["acmewatch"]}}}
        )
    )
    lines = describe_sources(settings)
    assert lines[0] == "  sources: 2"
    assert lines[1].startswith("    bluesky: needs nothing")
    assert lines[2].startswith("    telegram: needs scraping (legal risk)")


def test_check_config_states_that_rsshub_routes_scrape() -> None:
    from api.checks import describe_sources
    from api.settings import Settings as AppSettings

    feeds = [
        {"url": "https://news.example.com/feed.xml"},
        {"url": "http://rsshub:1200/weibo/keyword/acme", "platform": "weibo", "rsshub": True},
    ]
    settings = AppSettings(
        listener=ListenerConfig.model_validate({"sources": {"rss": {"feeds": feeds}}})
    )
    lines = describe_sources(settings)
    assert lines[0] == "  sources: 2"
    assert lines[1].startswith("    rss: needs nothing")
    assert lines[2].startswith("    rss (RSSHub routes): needs scraping (legal risk)")
