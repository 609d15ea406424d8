"""``crisiswatch backfill``: a watch's recent history from the searchable sources."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.backfill import BackfillError, parse_duration, run_backfill
from api.settings import Settings
from listener.config import ListenerConfig

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"


def fixture(path: str) -> Any:
    return json.loads((FIXTURES / path).read_text("utf-8"))


def settings(sources: dict[str, Any]) -> Settings:
    listener = ListenerConfig.model_validate(
        {"watches": [{"id": "acme", "brand": "Acme", "terms": ["acme x2"]}], "sources": sources}
    )
    return Settings(listener=listener)


SOURCES = {
    "hackernews": {"queries": ["ignored by backfill"]},
    "reddit": {
        "client_id": "c",
        "client_secret": "s",
        "user_agent": "test:cw:1",
        "searches": ["x"],
    },
}


def handler(request: httpx.Request) -> httpx.Response:
    if request.url.host == "hn.algolia.com":
        assert request.url.params["query"] == "acme x2"
        story = fixture("hackernews/search_by_date_story.json")
        comment = fixture("hackernews/search_by_date_comment.json")
        return httpx.Response(200, json={**story, "hits": story["hits"] + comment["hits"]})
    if request.url.path == "/api/v1/access_token":
        return httpx.Response(200, json=fixture("reddit/access_token.json"))
    assert request.url.params["q"] == "acme x2"
    return httpx.Response(200, json=fixture("reddit/listing_search_new.json"))


async def test_backfill_writes_the_watch_matches_oldest_first(tmp_path: Path) -> None:
    out = tmp_path / "baseline.jsonl"
    since = datetime.now(UTC) - datetime(2024, 9, 9, 19, 0, tzinfo=UTC) + timedelta(hours=1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        count = await run_backfill(settings(SOURCES), "acme", since, out, http=http, progress=False)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert count == len(lines)
    # "Is the Acme X2 worth it?" (older) and the fire post match; HN story and comment match
    assert [m["id"] for m in lines] == [
        "reddit:t3_1fcz0aa",
        "hackernews:41492001",
        "reddit:t3_1fcz1bb",
        "hackernews:41492110",
    ]
    assert lines == sorted(lines, key=lambda m: m["created_at"])


async def test_backfill_names_an_unknown_watch(tmp_path: Path) -> None:
    with pytest.raises(BackfillError, match=r"no watch 'nope'.*watches: acme"):
        await run_backfill(settings(SOURCES), "nope", timedelta(hours=1), tmp_path / "o")


async def test_backfill_needs_a_searchable_source(tmp_path: Path) -> None:
    with pytest.raises(BackfillError, match="no configured source can search"):
        await run_backfill(
            settings({"bluesky": {}}), "acme", timedelta(hours=1), tmp_path / "o", progress=False
        )


def test_durations() -> None:
    assert parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration("24h") == timedelta(hours=24)
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("3650d") == timedelta(days=3650)
    assert parse_duration("0090m") == timedelta(minutes=90)
    with pytest.raises(BackfillError, match="use a number and m, h or d"):
        parse_duration("yesterday")
    for too_far in ("3651d", "87601h", "99999999999d", "9" * 5000 + "d", "0m"):
        with pytest.raises(BackfillError, match="more than 0, at most 3650d"):
            parse_duration(too_far)


def test_a_query_watch_searches_for_its_brand_names_else_its_required_literals() -> None:
    from listener.backfill import watch_queries
    from listener.config import WatchConfig

    query = '(@acme OR "nimbus phone") AND (refund* OR 退款) AND NOT hiring'
    named = WatchConfig(id="acme", brand="Acme", query=query, aliases={"acme": ["acme*", "艾克米"]})
    assert watch_queries(named) == ["Acme", "acme", "艾克米"]
    bare = WatchConfig(id="x", query='nimbus AND (refund* OR "money back")')
    assert sorted(watch_queries(bare)) == ["nimbus"]
