"""Hacker News through the Algolia search API (public, no key).

``GET https://hn.algolia.com/api/v1/search_by_date?query=<q>&tags=(story,comment)
&numericFilters=created_at_i>=<t>&hitsPerPage=<n>&page=<p>`` (https://hn.algolia.com/api):
newest first, ``nbPages`` pages. One query pages through at most 1,000 hits (later
pages are empty; ``nbHits`` still counts them all: algolia/hn-search#230), so when a query
has more, the search goes on back in time with a new one restricted to
``created_at_i<=`` the oldest second read (``<=``: the rest of that second; the hits read
already are dropped by ``objectID``), until the window is covered. ``max_pages`` bounds
the requests per query of one poll or backfill search, across these queries: at most
``max_pages`` x ``hits_per_page`` hits. Each poll reads every page after the cursor, then
delivers oldest first. The cursor is, per query, the newest ``created_at_i`` delivered and
the ids delivered at that second (the filter is ``>=``, so an item posted in the same
second as the last one is not lost; the ids drop the repeats). Each poll asks from
``late_window_seconds`` before that mark, for items the index adds late. A query whose
requests fail is skipped for a while, the others go on; a poll or search stopped by
``max_pages`` with older hits left is logged and counted, and so is one that cannot page
back past a query's 1,000 hits (the API ignores the ``created_at_i<=`` bound, or more than
1,000 hits share one second): ``LiveSource.window_cut``, named in a backfill's report. A
hit that cannot be read (no ``created_at_i`` or ``objectID``, a value of the wrong type)
is skipped, logged and counted; the rest of the page goes on.
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
from listener.sources.skips import UNREADABLE
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
    max_pages: int = Field(
        10,
        ge=1,
        description="requests per query per poll or backfill search, across the queries "
        "that page back in time past Algolia's 1,000 hits per query: at most max_pages x "
        "hits_per_page hits",
    )
    late_window_seconds: LateWindowSeconds = DEFAULT_LATE_WINDOW_SECONDS
    endpoint: str = Field("https://hn.algolia.com/api/v1/search_by_date", pattern=r"^https?://")


QUERY_CEILING = 1000
"""The most hits one Algolia query pages through (``paginationLimitedTo``): the pages
after it are empty, while ``nbHits`` still counts every match (algolia/hn-search#230)."""


class AlgoliaClient:
    def __init__(
        self,
        config: HackerNewsConfig,
        http: httpx.AsyncClient,
        clock: Clock,
        on_page_cap: Callable[[str, int], None] | None = None,
        on_cut: Callable[[str, str], None] | None = None,
    ) -> None:
        self.config = config
        self.http = http
        self.clock = clock
        self.on_page_cap = on_page_cap
        self.on_cut = on_cut

    async def since(self, query: str, since: int) -> list[Any]:
        """Every hit with ``created_at_i >= since``, as the API lists them (newest first),
        each ``objectID`` once, the ones that cannot be read included (``stamp`` says
        which: the caller skips and counts them).

        One Algolia query gives at most ``QUERY_CEILING`` hits. When a query has more
        (its ``nbHits`` counts more than its pages gave; without ``nbHits``, its pages
        reached the ceiling), the next query asks for ``created_at_i<=`` the oldest second
        read so far (the rest of that second; the hits of it read already are dropped),
        and so on back to ``since``. At most ``max_pages`` requests in all: a call that
        stops there with older hits left calls ``on_page_cap``. One that cannot page back
        further (the API ignores the upper bound; more hits in one second than a query
        gives; no hit with a readable time) calls ``on_cut`` (else logs), saying what is
        missed."""
        hits: list[Any] = []
        seen: set[str] = set()
        requests = 0
        upper: int | None = None  # created_at_i <= upper; None: no upper bound
        while True:
            page, pages, fetched = 0, 1, 0
            total: int | None = None
            oldest: int | None = None
            newest: int | None = None
            while page < pages and requests < self.config.max_pages:
                body = await self._page(query, since, upper, page)
                requests += 1
                for hit in body["hits"]:
                    fetched += 1
                    t, key = _seconds(hit), _key(hit)
                    if t is not None:
                        oldest = t if oldest is None else min(oldest, t)
                        newest = t if newest is None else max(newest, t)
                    if key is not None:
                        if key in seen:
                            continue  # read already: the second at the seam, a shifted page
                        seen.add(key)
                    hits.append(hit)
                pages = int(body.get("nbPages") or 0)
                total = _count(body.get("nbHits"))
                page += 1
            older = total > fetched if total is not None else fetched >= QUERY_CEILING
            if page < pages or (older and requests >= self.config.max_pages):
                if self.on_page_cap is not None:
                    self.on_page_cap(query_label(query), self.config.max_pages)
                return hits
            if not older:
                return hits  # the window is covered
            if upper is not None and newest is not None and newest > upper:
                self._cut(
                    query,
                    f"the API ignored created_at_i<={upper} (it answered second {newest}); "
                    f"not paging further back: the hits from {_when(since)} to before "
                    f"{_when(upper)} are not fetched",
                )
                return hits
            if oldest is None:
                self._cut(
                    query,
                    "more hits than one query gives, but none with a readable created_at_i "
                    f"to page back from: the older hits (back to {_when(since)}) are not "
                    "fetched",
                )
                return hits
            if upper is None or oldest < upper:
                upper = oldest
            else:  # more than one query gives, all in one second: go on before it
                self._cut(
                    query,
                    f"more than {QUERY_CEILING} hits in second {oldest} ({_when(oldest)}); "
                    f"those past the first {QUERY_CEILING} are not fetched",
                )
                upper = oldest - 1
            if upper < since:
                return hits

    def _cut(self, query: str, message: str) -> None:
        """The window of ``query`` cannot be covered: ``message`` says what is missed."""
        what = query_label(query)
        if self.on_cut is not None:
            self.on_cut(what, message)
        else:
            log.warning("%s: %s", what, message)

    async def _page(self, query: str, since: int, upper: int | None, page: int) -> dict[str, Any]:
        """One page of one query: hits at or after ``since`` (and at or before ``upper``)."""
        what = "hn.algolia.com search_by_date"
        window = f"created_at_i>={since}"
        if upper is not None:
            window += f",created_at_i<={upper}"
        response = await get_at_most(
            self.http,
            self.config.endpoint,
            what=what,
            params={
                "query": query,
                "tags": self.config.tags,
                "numericFilters": window,
                "hitsPerPage": str(self.config.hits_per_page),
                "page": str(page),
            },
        )
        check_response(response, self.clock.now(), what=what)
        body = json_body(response, what=what)
        if not isinstance(body, dict) or not isinstance(body.get("hits"), list):
            raise TransientError("hn.algolia.com: unexpected response shape")
        return body


def _when(second: int) -> str:
    """``second`` (``created_at_i``) for a reader, in UTC."""
    try:
        return f"{datetime.fromtimestamp(second, UTC):%Y-%m-%d %H:%M:%S} UTC"
    except (OverflowError, OSError, ValueError):  # no datetime holds it
        return f"second {second}"


def _seconds(hit: Any) -> int | None:
    """A hit's ``created_at_i``; None when it cannot be read."""
    try:
        return whole_seconds(hit["created_at_i"])
    except UNREADABLE:
        return None


def _key(hit: Any) -> str | None:
    """A hit's ``objectID``; None when it cannot be read."""
    try:
        return object_id(hit)
    except UNREADABLE:
        return None


def _count(value: object) -> int | None:
    """``nbHits`` as a count; None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


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
    search_limit: int | None = None
    """``backfill``: no fixed most items per search (it pages back in time past Algolia's
    1,000 hits per query); its cuts are its page caps."""
    coverage = Coverage(
        needs="nothing",
        covers="Hacker News stories and comments matching the configured queries",
        misses="edits after indexing; more than max_pages x hits_per_page items per poll or "
        "search; past the first 1,000 of the items sharing one second (counted as window cuts)",
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
        self.client = AlgoliaClient(
            config, http, clock, on_page_cap=self.page_cap, on_cut=self.window_cut
        )

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
            label=query_label,
        )


def query_label(query: str) -> str:
    """How logs and health (``failing_targets``) name a query's target, as its page caps
    and window cuts do."""
    return f"hn.algolia.com query {query!r}"
