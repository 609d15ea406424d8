"""Hacker News through the Algolia search API (public, no key).

``GET https://hn.algolia.com/api/v1/search_by_date?query=<q>&tags=(story,comment)
&numericFilters=created_at_i>=<t>&hitsPerPage=<n>&page=<p>`` (https://hn.algolia.com/api):
newest first, ``nbPages`` pages. Each poll reads every page after the cursor, then
delivers oldest first. The cursor is, per query, the newest ``created_at_i`` delivered and
the ids delivered at that second (the filter is ``>=``, so an item posted in the same
second as the last one is not lost; the ids drop the repeats). Each poll asks from
``late_window_seconds`` before that mark, for items the index adds late. A query whose
requests fail is skipped for a while, the others go on; a poll stopped by ``max_pages``
is logged and counted. A hit that cannot be read (no ``created_at_i`` or ``objectID``, a
value of the wrong type) is skipped, logged and counted; the rest of the page goes on.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import Field

from core.clock import Clock
from core.events import Author, Engagement, Mention
from core.metrics import Metrics
from core.settings import Section
from listener.backoff import TransientError, check_response, get_at_most, json_body
from listener.cursors import CursorStore
from listener.health import Coverage
from listener.sources.live import LiveSource, Step
from listener.sources.text import fit_text, html_to_text
from listener.sources.timemark import (
    DEFAULT_LATE_WINDOW_SECONDS,
    LateWindowSeconds,
    load_marks,
    poll_since,
    searched,
    whole_seconds,
)

log = logging.getLogger(__name__)


class HackerNewsConfig(Section):
    """Stories and comments matching each Algolia query."""

    queries: list[str] = Field(..., min_length=1, description="Algolia full-text queries")
    tags: str = "(story,comment)"
    poll_seconds: float = Field(60.0, ge=5)
    initial_lookback_minutes: float = Field(60.0, ge=0, description="first run starts here")
    hits_per_page: int = Field(100, ge=1, le=1000)
    max_pages: int = Field(10, ge=1, description="pages read per query per poll")
    late_window_seconds: LateWindowSeconds = DEFAULT_LATE_WINDOW_SECONDS
    endpoint: str = Field("https://hn.algolia.com/api/v1/search_by_date", pattern=r"^https?://")


class AlgoliaClient:
    def __init__(
        self,
        config: HackerNewsConfig,
        http: httpx.AsyncClient,
        clock: Clock,
        on_page_cap: Callable[[str, int], None] | None = None,
    ) -> None:
        self.config = config
        self.http = http
        self.clock = clock
        self.on_page_cap = on_page_cap

    async def since(self, query: str, since: int) -> list[Any]:
        """Every hit with ``created_at_i >= since`` (up to ``max_pages`` pages), as the
        API lists them (newest first), the ones that cannot be read included (``stamp``
        says which: the caller skips and counts them)."""
        hits: list[Any] = []
        page, pages = 0, 1
        while page < min(pages, self.config.max_pages):
            what = "hn.algolia.com search_by_date"
            response = await get_at_most(
                self.http,
                self.config.endpoint,
                what=what,
                params={
                    "query": query,
                    "tags": self.config.tags,
                    "numericFilters": f"created_at_i>={since}",
                    "hitsPerPage": str(self.config.hits_per_page),
                    "page": str(page),
                },
            )
            check_response(response, self.clock.now(), what=what)
            body = json_body(response, what=what)
            if not isinstance(body, dict) or not isinstance(body.get("hits"), list):
                raise TransientError("hn.algolia.com: unexpected response shape")
            hits.extend(body["hits"])
            pages = int(body.get("nbPages") or 0)
            page += 1
        if pages > self.config.max_pages and self.on_page_cap is not None:
            self.on_page_cap(f"hn.algolia.com query {query!r}", self.config.max_pages)
        return hits


def object_id(hit: Any) -> str:
    """A hit's ``objectID`` (a non-empty string, or an int). Raises for anything else."""
    value = hit["objectID"]
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise TypeError(f"objectID is a non-empty string, not {value!r:.40}")
    return str(value)


def stamp(hit: Any) -> tuple[int, str]:
    """(``created_at_i``, ``objectID``) of a hit. Raises for a hit that lacks them or has
    them of the wrong type."""
    return whole_seconds(hit["created_at_i"]), object_id(hit)


def map_hit(hit: dict[str, Any]) -> Mention:
    object_id = str(hit["objectID"])
    tags = hit.get("_tags") or []
    is_comment = "comment" in tags
    title = hit.get("title") or hit.get("story_title") or ""
    body = html_to_text(hit.get("comment_text") or hit.get("story_text"))
    text = body if is_comment else (f"{title}\n{body}" if body else title)
    parent = hit.get("parent_id")
    return Mention(
        id=f"hackernews:{object_id}",
        source="hackernews",
        url=hit.get("url")
        if not is_comment and hit.get("url")
        else (f"https://news.ycombinator.com/item?id={object_id}"),
        text=fit_text(text),
        lang=None,
        created_at=datetime.fromtimestamp(int(hit["created_at_i"]), UTC),
        author=Author(id=hit.get("author"), handle=hit.get("author")),
        engagement=Engagement(
            likes=max(0, int(hit.get("points") or 0)), replies=int(hit.get("num_comments") or 0)
        ),
        reply_to=f"hackernews:{parent}" if is_comment and parent else None,
    )


class HackerNewsSource(LiveSource):
    kind = "hackernews"
    coverage = Coverage(
        needs="nothing",
        covers="Hacker News stories and comments matching the configured queries",
        misses="edits after indexing; more than max_pages x hits_per_page items per poll",
        resumes="created_at_i and the ids seen in that second, per query; each poll asks "
        "again from late_window_seconds before it (late-indexed items)",
    )

    def __init__(
        self,
        config: HackerNewsConfig,
        http: httpx.AsyncClient,
        clock: Clock,
        cursors: CursorStore,
        metrics: Metrics | None = None,
        *,
        name: str = "hackernews",
    ) -> None:
        super().__init__(name, clock, cursors, metrics)
        self.config = config
        self.client = AlgoliaClient(config, http, clock, on_page_cap=self.page_cap)

    async def search(self, query: str, since: datetime) -> list[Mention]:
        """Backfill: stories and comments matching ``query`` since ``since``, oldest first
        (a hit that cannot be read is skipped, logged and counted)."""
        hits = await self.client.since(query, int(since.timestamp()))
        return searched(self, hits, stamp, map_hit, f"hit of search {query!r}")

    def check_cursor(self, cursor: str) -> None:
        load_marks(cursor)

    def stream(self, cursor: str | None) -> AsyncIterator[Step]:
        def fetch(query: str) -> Callable[[int], Awaitable[list[Any]]]:
            return lambda since: self.client.since(query, since)

        return poll_since(
            self,
            cursor,
            [(query, fetch(query)) for query in self.config.queries],
            stamp,
            map_hit,
            interval=lambda: self.config.poll_seconds,
            lookback_minutes=self.config.initial_lookback_minutes,
            late_window_seconds=self.config.late_window_seconds,
            ident=object_id,
        )
