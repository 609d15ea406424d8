"""Hacker News windows that Algolia's limits keep a search or a poll from covering.

Paging back past Algolia's 1,000 hits per query stops early in two cases: the API ignores
the ``created_at_i<=`` bound (paging makes no progress), or more than 1,000 hits share
one second (the time bound cannot split them). Both were only logged: ``crisiswatch
backfill`` reported the window as whole, and a live poll counted nothing an operator could
alert on. Now each is counted (``crisiswatch_source_window_cuts_total``, ``window_cuts``
and ``last_window_cut`` in ``GET /sources``) and named in the backfill report."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from api.backfill import run_backfill
from api.settings import Settings
from core.clock import ManualClock
from core.events import Mention
from core.metrics import Metrics
from listener.backfill import BackfillReport, backfill
from listener.config import ListenerConfig, WatchConfig
from listener.cursors import MemoryCursorStore
from listener.sources.hackernews import HackerNewsConfig, HackerNewsSource
from tests.source_servers import FakeAlgolia
from tests.support import OnePoll

START = 1_725_000_000
BUSY = START + 100
"""1,200 items share this second: a query gives 1,000 of them."""


def busy_second() -> list[tuple[str, int]]:
    items = [(str(20_000 + i), BUSY) for i in range(1200)]
    return items + [(str(30_000 + i), START + i) for i in range(50)]


def ignoring_upper_bound(algolia: FakeAlgolia) -> Callable[[httpx.Request], httpx.Response]:
    """An Algolia that ignores every filter but ``created_at_i>=START``."""

    def handle(request: httpx.Request) -> httpx.Response:
        params = {**dict(request.url.params), "numericFilters": f"created_at_i>={START}"}
        return httpx.Response(200, json=algolia.answer(params))

    return handle


def source(
    http: httpx.AsyncClient, clock: ManualClock, metrics: Metrics, **config: object
) -> HackerNewsSource:
    settings = HackerNewsConfig.model_validate(
        {"queries": ["acme"], "hits_per_page": 100, "max_pages": 100, **config}
    )
    return HackerNewsSource(settings, http, clock, MemoryCursorStore(), metrics)


def cuts(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value(
        "crisiswatch_source_window_cuts_total", {"source": "hackernews"}
    )


WATCH = WatchConfig.model_validate({"id": "acme", "terms": ["acme"]})


async def test_a_backfill_reports_a_second_with_more_hits_than_a_query_gives() -> None:
    metrics, report = Metrics(), BackfillReport()
    algolia = FakeAlgolia(busy_second())
    clock = ManualClock(datetime.fromtimestamp(START + 3600, UTC))
    async with httpx.AsyncClient(transport=httpx.MockTransport(algolia.handle)) as http:
        hn = source(http, clock, metrics)
        got = await backfill(
            [hn], WATCH, datetime.fromtimestamp(START, UTC), report=report, clock=clock
        )
    assert len(got) == 1050  # 200 of the busy second are missed
    assert hn.health.window_cuts == 1 and cuts(metrics) == 1
    lines = [line for line in report.lines() if "window cut" in line]
    assert lines == [
        "hackernews 'acme': window cut by the platform's limits, items in it not fetched: "
        f"hn.algolia.com query 'acme': more than 1000 hits in second {BUSY} "
        "(2024-08-30 06:41:40 UTC); those past the first 1000 are not fetched"
    ], report.lines()
    assert hn.health.as_dict()["window_cuts"] == 1
    assert "more than 1000 hits" in str(hn.health.as_dict()["last_window_cut"])


async def test_a_backfill_reports_an_api_that_ignores_the_upper_bound() -> None:
    metrics, report = Metrics(), BackfillReport()
    algolia = FakeAlgolia([(str(i), START + i) for i in range(3000)])
    clock = ManualClock(datetime.fromtimestamp(START + 3600, UTC))
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(ignoring_upper_bound(algolia))
    ) as http:
        hn = source(http, clock, metrics)
        got = await backfill(
            [hn], WATCH, datetime.fromtimestamp(START, UTC), report=report, clock=clock
        )
    assert len(got) == 1000
    assert hn.health.window_cuts == 1 and cuts(metrics) == 1
    (line,) = [line for line in report.lines() if "window cut" in line]
    assert "the API ignored created_at_i<=" in line
    assert "the hits from 2024-08-30 06:40:00 UTC to before 2024-08-30 07:13:20 UTC" in line


async def test_a_whole_backfill_reports_no_cut() -> None:
    metrics, report = Metrics(), BackfillReport()
    algolia = FakeAlgolia([(str(i), START + i // 3) for i in range(2500)])
    clock = ManualClock(datetime.fromtimestamp(START + 3600, UTC))
    async with httpx.AsyncClient(transport=httpx.MockTransport(algolia.handle)) as http:
        hn = source(http, clock, metrics)
        got = await backfill(
            [hn], WATCH, datetime.fromtimestamp(START, UTC), report=report, clock=clock
        )
    assert len(got) == 2500
    assert report.capped == [] and hn.health.window_cuts == 0


async def test_crisiswatch_backfill_names_the_cut_search_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through ``run_backfill`` (the command): the cut is on stderr with the report; the
    items that could be fetched are written (a cut is not a failure: asking again would
    miss the same items)."""
    now = datetime.now(UTC).replace(microsecond=0)
    start = int(now.timestamp()) - 3000
    busy = start + 100
    items = [(str(20_000 + i), busy) for i in range(1200)]
    items += [(str(30_000 + i), start + i) for i in range(50)]
    algolia = FakeAlgolia(items)
    settings = Settings(
        listener=ListenerConfig.model_validate(
            {
                "watches": [{"id": "acme", "terms": ["acme"]}],
                "sources": {"hackernews": {"queries": ["x"], "max_pages": 100}},
            }
        )
    )
    out = tmp_path / "o.jsonl"
    async with httpx.AsyncClient(transport=httpx.MockTransport(algolia.handle)) as http:
        written = await run_backfill(
            settings, "acme", timedelta(seconds=3600), out, http=http, progress=False
        )
    assert written == 1050
    err = capsys.readouterr().err
    assert (
        "backfill: hackernews 'acme': window cut by the platform's limits, items in it not "
        f"fetched: hn.algolia.com query 'acme': more than 1000 hits in second {busy}"
    ) in err


async def test_a_live_poll_that_cannot_cover_its_window_is_counted() -> None:
    """The poll delivers what it can (the 1,050 items a query can reach) and counts the
    cut in a metric an operator can alert on."""
    metrics = Metrics()
    algolia = FakeAlgolia(busy_second())
    clock = OnePoll(datetime.fromtimestamp(START + 1800, UTC))
    got: list[Mention] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(algolia.handle)) as http:
        hn = source(http, clock, metrics, initial_lookback_minutes=60)
        await hn.start()
        with pytest.raises(OnePoll.End):
            async for mention in hn.mentions():
                got.append(mention)
                hn.delivered(mention)
    assert len(got) == 1050
    assert hn.health.window_cuts == 1 and cuts(metrics) == 1
    assert "more than 1000 hits in second" in (hn.health.last_window_cut or "")
