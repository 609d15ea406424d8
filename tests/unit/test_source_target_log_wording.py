"""The log line of a failing target says what the source reads meanwhile, and names the
target so that an operator can find it. Was: "the other targets go on" whatever the
source held (a Hacker News source with its one query failing read nothing), and a Hacker
News query named by its text alone ("source hackernews: acme failed")."""

from __future__ import annotations

import logging

import httpx
import pytest

from listener.backoff import TargetUnavailable
from listener.cursors import MemoryCursorStore
from listener.health import Coverage, SourceHealth
from listener.sources.hackernews import HackerNewsConfig, HackerNewsSource
from listener.sources.targets import TargetBackoff
from tests.unit.test_source_live import T0, EndingClock, RecordingClock, deliver_all


def failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if " failed (" in r.getMessage()]


async def test_hn_one_query_failing_says_nothing_else_is_read_and_names_the_query(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = HackerNewsConfig(queries=["acme"], poll_seconds=60)
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(503))
    ) as http:
        source = HackerNewsSource(config, http, EndingClock(polls=2), MemoryCursorStore())
        await source.start()
        with caplog.at_level(logging.WARNING, logger="listener.sources.targets"):
            assert await deliver_all(source) == []
    line = failures(caplog)[0]
    assert line.startswith("source hackernews: hn.algolia.com query 'acme' failed (")
    assert line.endswith(
        "1 in a row); skipped for 60 s (the source's only target: nothing is read meanwhile)"
    )
    assert "other targets" not in line
    assert list(source.health.failing_targets) == ["hn.algolia.com query 'acme'"]


async def test_hn_with_several_queries_counts_those_that_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params["query"] == "broken":
            return httpx.Response(503)
        return httpx.Response(200, json={"hits": [], "nbPages": 0, "page": 0})

    config = HackerNewsConfig(queries=["acme", "broken", "x2"], poll_seconds=60)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        source = HackerNewsSource(config, http, EndingClock(polls=2), MemoryCursorStore())
        await source.start()
        with caplog.at_level(logging.WARNING, logger="listener.sources.targets"):
            await deliver_all(source)
    line = failures(caplog)[0]
    assert line.startswith("source hackernews: hn.algolia.com query 'broken' failed (")
    assert line.endswith("skipped for 60 s; the 2 other targets go on")


def test_what_goes_on_counts_the_other_targets_failing_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = RecordingClock(T0)
    health = SourceHealth("rss", "rss", Coverage(needs="nothing", covers="feeds"), clock)
    failing = TargetBackoff(health, clock, first=60)
    error = TargetUnavailable("HTTP 404")
    with caplog.at_level(logging.WARNING, logger="listener.sources.targets"):
        for target in ("a", "b", "c"):
            failing.failed(target, target, error, targets=3)
        failing.failed("m", "m", error)  # a source that does not say how many it reads
    assert [line.split("; skipped for 60 s")[1] for line in failures(caplog)] == [
        "; the 2 other targets go on",
        "; the other target goes on (1 more failing)",
        " (the 2 other targets fail too: nothing is read meanwhile)",
        "",
    ]
