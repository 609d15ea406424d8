"""Hacker News past Algolia's 1,000 hits per query (algolia/hn-search#230).

One Algolia query pages through at most 1,000 hits: a backfill of a busy window, or a
poll after a busy hour, silently missed the oldest items. The source now pages back in
time (``created_at_i<=`` the oldest second read, the repeats of that second dropped by
``objectID``) until the window is covered or ``max_pages`` requests are spent."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import httpx
import pytest

from core.clock import ManualClock
from core.events import Mention
from core.metrics import Metrics
from listener.cursors import MemoryCursorStore
from listener.sources.hackernews import HackerNewsConfig, HackerNewsSource
from tests.source_servers import FakeAlgolia, serve_http
from tests.support import OnePoll

START = 1_725_000_000
"""The window's first second."""
SEAM_1 = START + 1495
"""Ten items share this second; the first query's 1,000 hits end amid them."""
SEAM_2 = START + 500
"""Ten items share this second; the second query's 1,000 hits end amid them."""


def window_items() -> list[tuple[str, int]]:
    """2,500 items from ``START`` on, some sharing a second at each seam and at the
    window's start, and 30 items before the window."""
    times = {i: START + i for i in range(2500)}
    times.update(dict.fromkeys(range(1495, 1505), SEAM_1))
    times.update(dict.fromkeys(range(500, 510), SEAM_2))
    times.update(dict.fromkeys(range(3), START))
    before = [(str(9000 + j), START - 1 - j) for j in range(30)]
    return [(str(10_000 + i), t) for i, t in times.items()] + before


def oldest_first(items: list[tuple[str, int]]) -> list[str]:
    """The ids ``search`` promises, in its order (oldest first, then by id)."""
    return [f"hackernews:{oid}" for oid, _ in sorted(items, key=lambda item: (item[1], item[0]))]


def source(
    http: httpx.AsyncClient,
    clock: ManualClock,
    metrics: Metrics | None = None,
    **config: object,
) -> HackerNewsSource:
    settings = HackerNewsConfig.model_validate(
        {"queries": ["acme"], "hits_per_page": 100, "max_pages": 30, **config}
    )
    return HackerNewsSource(settings, http, clock, MemoryCursorStore(), metrics)


def since_start() -> datetime:
    return datetime.fromtimestamp(START, UTC)


async def test_a_search_pages_back_past_the_1000_hit_ceiling_each_item_once() -> None:
    algolia = FakeAlgolia(window_items())
    async with serve_http(algolia.app()) as port, httpx.AsyncClient() as http:
        endpoint = f"http://127.0.0.1:{port}/api/v1/search_by_date"
        hn = source(http, ManualClock(), endpoint=endpoint)
        got = await hn.search("acme", since_start())
    ids = [m.id for m in got]
    expected = oldest_first([item for item in window_items() if item[1] >= START])
    assert len(expected) == 2500
    assert len(ids) == len(set(ids)), "an item was returned twice"
    assert ids == expected
    # three queries: each asks from the oldest second the one before read (<=: the rest
    # of that second), never below the window's start
    filters = [r["numericFilters"] for r in algolia.requests]
    assert filters == (
        [f"created_at_i>={START}"] * 10
        + [f"created_at_i>={START},created_at_i<={SEAM_1}"] * 10
        + [f"created_at_i>={START},created_at_i<={SEAM_2}"] * 6
    )
    assert hn.health.page_caps == 0


async def test_max_pages_bounds_the_requests_of_a_search_and_a_cut_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At the default 10 x 100 the first query's 1,000 hits used the whole budget and,
    Algolia's ``nbPages`` stopping at 10, the cut was neither logged nor counted."""
    algolia, metrics = FakeAlgolia(window_items()), Metrics()
    async with httpx.AsyncClient(transport=httpx.MockTransport(algolia.handle)) as http:
        hn = source(http, ManualClock(), metrics, max_pages=12)
        with caplog.at_level(logging.WARNING, logger="listener.sources.live"):
            got = await hn.search("acme", since_start())
    assert len(algolia.requests) == 12
    newest = oldest_first([item for item in window_items() if item[1] >= START])[-1195:]
    assert [m.id for m in got] == newest  # 1,000 + 200 less the 5 read at the seam
    assert hn.health.page_caps == 1
    assert (
        metrics.registry.get_sample_value(
            "crisiswatch_source_page_caps_total", {"source": "hackernews"}
        )
        == 1
    )
    assert "stopped at its cap of 12 pages" in caplog.text


async def test_a_search_that_fits_one_query_asks_once() -> None:
    algolia = FakeAlgolia([(str(i), START + i) for i in range(1000)])
    async with httpx.AsyncClient(transport=httpx.MockTransport(algolia.handle)) as http:
        hn = source(http, ManualClock())
        got = await hn.search("acme", since_start())
    assert len(got) == 1000
    assert len(algolia.requests) == 10  # nbHits 1,000: nothing older to ask for
    assert hn.health.page_caps == 0


async def test_more_hits_in_one_second_than_a_query_gives_do_not_stop_the_search(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """1,200 items in one second: a query gives 1,000 of them, asking for that second
    again gives the same ones; the search logs what it misses and goes on before it."""
    busy = START + 100
    items = [(str(20_000 + i), busy) for i in range(1200)]
    items += [(str(30_000 + i), START + i) for i in range(50)]
    algolia = FakeAlgolia(items)
    async with httpx.AsyncClient(transport=httpx.MockTransport(algolia.handle)) as http:
        hn = source(http, ManualClock())
        with caplog.at_level(logging.WARNING, logger="listener.sources.hackernews"):
            got = await hn.search("acme", since_start())
    ids = [m.id for m in got]
    assert len(ids) == len(set(ids)) == 1050
    assert {f"hackernews:{30_000 + i}" for i in range(50)} <= set(ids)
    assert f"more than 1000 hits in second {busy}" in caplog.text
    assert algolia.requests[-1]["numericFilters"] == (
        f"created_at_i>={START},created_at_i<={busy - 1}"
    )


async def test_an_api_that_ignores_the_upper_bound_does_not_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    algolia = FakeAlgolia([(str(i), START + i) for i in range(3000)])
    requests = 0

    def ignoring(request: httpx.Request) -> httpx.Response:
        nonlocal requests
        requests += 1
        params = {**dict(request.url.params), "numericFilters": f"created_at_i>={START}"}
        return httpx.Response(200, json=algolia.answer(params))

    async with httpx.AsyncClient(transport=httpx.MockTransport(ignoring)) as http:
        hn = source(http, ManualClock(), max_pages=100)
        with caplog.at_level(logging.WARNING, logger="listener.sources.hackernews"):
            got = await hn.search("acme", since_start())
    assert len(got) == 1000
    assert requests == 20  # the second query answered hits after its bound: stop there
    assert "the API ignored created_at_i<=" in caplog.text


async def test_a_poll_after_a_busy_hour_delivers_every_item_once() -> None:
    """The live path shares the request code: a poll of 1,500 new items delivered only
    the newest 1,000 and moved its cursor past the others."""
    items = [(str(10_000 + i), START + i) for i in range(1500)]
    items += [(str(20_000 + i), START + 700) for i in range(8)]  # at the first seam
    algolia = FakeAlgolia(items)
    clock = OnePoll(datetime.fromtimestamp(START + 1800, UTC))
    got: list[Mention] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(algolia.handle)) as http:
        hn = source(http, clock, initial_lookback_minutes=60, max_pages=20)
        await hn.start()
        with pytest.raises(OnePoll.End):
            async for mention in hn.mentions():
                got.append(mention)
                hn.delivered(mention)
    assert [m.id for m in got] == oldest_first(items)
    assert hn.health.page_caps == 0
