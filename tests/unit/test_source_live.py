"""The common base of the live sources: cursor safety, backoff, rate limits, health;
and each HTTP source's polling protocol against httpx.MockTransport."""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from core.events import Mention
from core.metrics import Metrics
from listener import backoff
from listener.backoff import (
    MAX_SERVER_WAIT_S,
    MIN_SERVER_WAIT_S,
    Backoff,
    RateLimited,
    TransientError,
    check_response,
    get_at_most,
    retry_after,
    server_wait,
)
from listener.config import ListenerConfig
from listener.cursors import MemoryCursorStore
from listener.health import Coverage
from listener.sources.base import SourceFatalError
from listener.sources.feeds import FeedsConfig, FeedsSource
from listener.sources.hackernews import HackerNewsConfig, HackerNewsSource
from listener.sources.live import LiveSource, Step
from listener.sources.mastodon import MastodonConfig, MastodonSource
from listener.sources.reddit import RedditConfig, RedditSource
from listener.sources.telegram import TelegramConfig, TelegramSource
from listener.sources.timemark import poll_since
from listener.sources.youtube import Quota, YouTubeConfig, YouTubeSource
from tests.support import RecordingClock

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"

T0 = datetime(2024, 9, 9, 20, 30, tzinfo=UTC)


class EndOfTest(BaseException):
    """Raised by a test's fake server or clock to end an endless stream (not an
    ``Exception``: no source handles it)."""


class EndingClock(RecordingClock):
    """A RecordingClock that ends the test at its ``polls``-th sleep."""

    def __init__(self, polls: int) -> None:
        super().__init__(T0)
        self.polls = polls

    async def sleep(self, seconds: float) -> None:
        if len(self.sleeps) + 1 >= self.polls:
            raise EndOfTest
        await super().sleep(seconds)


def mention(i: int) -> Mention:
    return Mention(id=f"t:{i}", source="t", text=f"post {i}", created_at=T0)


class Scripted(LiveSource):
    kind = "scripted"
    coverage = Coverage(needs="nothing", covers="a test script")

    def __init__(self, steps: list[Step | Exception], **kw: object) -> None:
        super().__init__("scripted", kw.pop("clock"), kw.pop("cursors"))  # type: ignore[arg-type]
        self.steps = steps
        self.opened_with: list[str | None] = []

    async def stream(self, cursor: str | None) -> AsyncIterator[Step]:
        self.opened_with.append(cursor)
        while self.steps:
            step = self.steps.pop(0)
            if isinstance(step, Exception):
                raise step
            yield step


async def take(stream: AsyncIterator[Mention], n: int) -> list[Mention]:
    out: list[Mention] = []
    async for m in stream:
        out.append(m)
        if len(out) == n:
            break
    return out


async def deliver_all(source: LiveSource) -> list[Mention]:
    """Take (and report delivered) every mention until the test's fake server or clock
    ends the endless stream (``EndOfTest``)."""
    got: list[Mention] = []
    with pytest.raises(EndOfTest):
        async for m in source.mentions():
            got.append(m)
            source.delivered(m)
    return got


# --- backoff and responses -------------------------------------------------------------


def test_backoff_grows_with_jitter_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(1.0, 8.0, rng=random.Random(3))
    delays = [backoff.next_delay() for _ in range(6)]
    for delay, step in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert step / 2 <= delay <= step
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_retry_after_reads_seconds_and_dates() -> None:
    assert retry_after("120", T0, 5) == 120
    assert retry_after("Mon, 09 Sep 2024 20:31:00 GMT", T0, 5) == 60
    assert retry_after("soon", T0, 5) == 5
    assert retry_after(None, T0, 5) == 5
    assert retry_after("\u00b2", T0, 5) == 5  # a digit int() does not read: the default


@pytest.mark.parametrize(
    ("header", "wait"),
    [
        ("0", MIN_SERVER_WAIT_S),  # was 0: a busy loop of 429s
        ("Mon, 09 Sep 2024 20:00:00 GMT", MIN_SERVER_WAIT_S),  # a date already past
        ("99999999999", MAX_SERVER_WAIT_S),  # was 3,171 years
        ("9" * 20, MAX_SERVER_WAIT_S),  # was an OverflowError in a timedelta
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_SERVER_WAIT_S),
    ],
)
def test_a_wait_a_server_asks_for_is_bounded(header: str, wait: float) -> None:
    assert retry_after(header, T0, 5) == wait
    with pytest.raises(RateLimited) as info:
        check_response(httpx.Response(429, headers={"Retry-After": header}), T0, what="x")
    assert info.value.delay == wait
    T0 + timedelta(seconds=info.value.delay)  # usable as a timedelta


def test_server_wait_falls_back_on_what_is_not_a_finite_number() -> None:
    for asked in ("inf", "nan", "-inf", "soon", None, float("inf")):
        assert server_wait(asked, 60) == 60
    assert server_wait("1e12", 60) == MAX_SERVER_WAIT_S
    assert server_wait(-5, 60) == MIN_SERVER_WAIT_S


@pytest.mark.parametrize(
    ("status", "headers", "error"),
    [
        (429, {"Retry-After": "30"}, RateLimited),
        (503, {"Retry-After": "10"}, RateLimited),
        (401, {}, SourceFatalError),
        (403, {}, SourceFatalError),
        (500, {}, TransientError),
        (502, {}, TransientError),
    ],
)
def test_check_response_classifies_errors(
    status: int, headers: dict[str, str], error: type[Exception]
) -> None:
    response = httpx.Response(status, headers=headers)
    with pytest.raises(error):
        check_response(response, T0, what="test")


def test_check_response_accepts_success_and_not_modified() -> None:
    check_response(httpx.Response(200), T0, what="test")
    check_response(httpx.Response(304), T0, what="test")


# --- the base: cursor and reconnects ---------------------------------------------------


async def test_the_saved_cursor_never_runs_ahead_of_delivery() -> None:
    store, clock = MemoryCursorStore(), RecordingClock(T0)
    source = Scripted(
        [(mention(1), "c1"), (mention(2), "c2"), (mention(3), "c3")], clock=clock, cursors=store
    )
    await source.start()
    got = await take(source.mentions(), 3)
    source.delivered(got[0])
    source.delivered(got[1])
    await source.stop()  # mention 3 was yielded but never delivered
    assert store.cursors == {"scripted": "c2"}


async def test_positions_past_non_mentions_count_once_the_mention_before_is_delivered() -> None:
    store, clock = MemoryCursorStore(), RecordingClock(T0)
    source = Scripted(
        [(mention(1), "c1"), (None, "c1b"), (mention(2), "c2")], clock=clock, cursors=store
    )
    await source.start()
    got = await take(source.mentions(), 2)
    source.delivered(got[0])
    await source.save_cursor(force=True)
    assert store.cursors["scripted"] == "c1b"


async def test_a_mention_dated_ahead_of_the_clock_is_re_dated_to_now() -> None:
    """A client-set date (Bluesky ``createdAt``) or a feed's wrong time zone must not drag
    the detector's event time forward; within 5 minutes of skew it is left as it is."""
    store, clock = MemoryCursorStore(), RecordingClock(T0)
    ahead = mention(1).model_copy(update={"created_at": T0 + timedelta(hours=8)})
    skewed = mention(2).model_copy(update={"created_at": T0 + timedelta(seconds=200)})
    edited = mention(3).model_copy(
        update={"change": "edited", "edited_at": T0 + timedelta(days=365)}
    )
    metrics = Metrics()
    source = Scripted([(ahead, "c1"), (skewed, "c2"), (edited, "c3")], clock=clock, cursors=store)
    source.health.metrics = metrics
    await source.start()
    got = await take(source.mentions(), 3)
    assert [m.created_at for m in got] == [T0, T0 + timedelta(seconds=200), T0]
    assert got[2].edited_at == T0
    assert [m.id for m in got] == ["t:1", "t:2", "t:3"] and got[0].text == "post 1"
    assert source.health.future_dated == 2
    assert metrics.source_future_dated.labels("scripted")._value.get() == 2


async def test_a_restart_resumes_from_the_saved_cursor() -> None:
    store, clock = MemoryCursorStore(), RecordingClock(T0)
    store.cursors["scripted"] = "c7"
    source = Scripted([(mention(8), "c8")], clock=clock, cursors=store)
    await source.start()
    await take(source.mentions(), 1)
    assert source.opened_with == ["c7"]


async def test_errors_reconnect_after_a_backoff_from_the_last_yielded_position() -> None:
    store, clock = MemoryCursorStore(), RecordingClock(T0)
    steps: list[Step | Exception] = [
        (mention(1), "c1"),
        ConnectionError("reset"),
        (mention(2), "c2"),
    ]
    source = Scripted(steps, clock=clock, cursors=store)
    source.backoff = Backoff(1.0, 4.0, rng=random.Random(1))
    await source.start()
    got = await take(source.mentions(), 2)
    assert [m.id for m in got] == ["t:1", "t:2"]
    assert source.opened_with == [None, "c1"]
    assert len(clock.sleeps) == 1 and 0.5 <= clock.sleeps[0] <= 1.0
    assert (source.health.errors, source.health.reconnects) == (1, 1)
    assert "ConnectionError: reset" in (source.health.last_error or "")


async def test_a_fatal_error_ends_the_stream_and_marks_the_source_failed() -> None:
    store, clock = MemoryCursorStore(), RecordingClock(T0)
    source = Scripted([SourceFatalError("credentials refused")], clock=clock, cursors=store)
    await source.start()
    with pytest.raises(SourceFatalError):
        await take(source.mentions(), 1)
    assert source.health.state == "failed"


# --- the "since" polling loop ------------------------------------------------------------


class Indexed(LiveSource):
    """A "since" API over a search index; the test scripts what each poll answers."""

    kind = "indexed"
    coverage = Coverage(needs="nothing", covers="a test index")

    def __init__(self, polls: list[list[tuple[int, str]]], store: MemoryCursorStore) -> None:
        super().__init__("indexed", RecordingClock(T0), store)
        self.polls = polls
        self.asked: list[int] = []

    def stream(self, cursor: str | None) -> AsyncIterator[Step]:
        async def fetch(since: int) -> list[tuple[int, str]]:
            self.asked.append(since)
            if not self.polls:
                raise EndOfTest
            return [item for item in self.polls.pop(0) if item[0] >= since]

        return poll_since(
            self,
            cursor,
            [("q", fetch)],
            lambda item: item,
            lambda item: Mention(
                id=f"x:{item[1]}", source="x", created_at=datetime.fromtimestamp(item[0], UTC)
            ),
            interval=lambda: 60,
            lookback_minutes=60,
            late_window_seconds=300,
        )


async def delivered_by(source: Indexed) -> list[str]:
    got: list[str] = []
    await source.start()
    with pytest.raises(EndOfTest):
        async for m in source.mentions():
            got.append(m.id)
            source.delivered(m)
    await source.stop()
    return got


async def test_an_item_indexed_late_behind_the_mark_is_delivered_once() -> None:
    t = int(T0.timestamp())
    polls = [
        [(t + 10, "a")],
        [(t + 5, "late"), (t + 10, "a")],  # created before "a", indexed after it was read
        [(t + 5, "late"), (t + 10, "a"), (t + 20, "b")],
    ]
    source = Indexed(polls, MemoryCursorStore())
    assert await delivered_by(source) == ["x:a", "x:late", "x:b"]
    # the first poll asks from the lookback; the next ones from the mark less 300 s
    assert source.asked == [t - 3600, t + 10 - 300, t + 10 - 300, t + 20 - 300]


async def test_a_restart_does_not_repeat_the_items_of_the_late_window() -> None:
    t = int(T0.timestamp())
    store = MemoryCursorStore()
    first = Indexed([[(t + 10, "a")], [(t + 5, "late"), (t + 10, "a")]], store)
    assert await delivered_by(first) == ["x:a", "x:late"]
    assert json.loads(store.cursors["indexed"])["q"]["earlier"] == {"late": t + 5}
    second = Indexed([[(t + 5, "late"), (t + 10, "a"), (t + 12, "c")]], store)
    assert await delivered_by(second) == ["x:c"]


# --- Hacker News over MockTransport ----------------------------------------------------


def hn_source(
    handler: Callable[[httpx.Request], httpx.Response],
    clock: RecordingClock,
    metrics: Metrics | None = None,
) -> tuple[HackerNewsSource, MemoryCursorStore, httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    store = MemoryCursorStore()
    config = HackerNewsConfig(queries=["acme"], poll_seconds=60)
    return HackerNewsSource(config, http, clock, store, metrics), store, http


async def hn_poll(page: object, polls: int = 3) -> tuple[list[Mention], HackerNewsSource]:
    """What a Hacker News source answered ``page`` at every poll delivers in ``polls``."""
    source, _, http = hn_source(lambda r: httpx.Response(200, json=page), EndingClock(polls))
    async with http:
        await source.start()
        got = await deliver_all(source)
        await source.stop()
    return got, source


def fixture(path: str) -> dict[str, object]:
    return json.loads((FIXTURES / path).read_text("utf-8"))


async def test_hn_honours_retry_after_then_pages_from_the_cursor() -> None:
    clock, metrics = RecordingClock(T0), Metrics()
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if len(requests) == 1:
            return httpx.Response(
                429, headers={"Retry-After": "30"}, json=fixture("hackernews/rate_limited.json")
            )
        if len(requests) == 2:
            return httpx.Response(200, json=fixture("hackernews/search_by_date_story.json"))
        return httpx.Response(200, json=fixture("hackernews/search_by_date_comment.json"))

    source, _, http = hn_source(handler, clock, metrics)
    async with http:
        await source.start()
        got = await take(source.mentions(), 2)
    assert [m.id for m in got] == ["hackernews:41492001", "hackernews:41492110"]
    assert clock.sleeps[0] == 30
    assert source.health.rate_limited == 1
    assert (
        metrics.registry.get_sample_value(
            "crisiswatch_source_rate_limited_total", {"source": "hackernews"}
        )
        == 1
    )
    # from the newest item delivered, less the late window (5 min by default)
    assert requests[2].url.params["numericFilters"] == f"created_at_i>={1725913211 - 300}"
    assert requests[2].url.params["tags"] == "(story,comment)"


async def test_hn_items_in_the_cursor_second_are_not_repeated() -> None:
    clock = RecordingClock(T0)
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(200, json=fixture("hackernews/search_by_date_story.json"))
        both = fixture("hackernews/search_by_date_story.json")
        both["hits"] = [*both["hits"], *fixture("hackernews/search_by_date_comment.json")["hits"]]  # type: ignore[misc]
        return httpx.Response(200, json=both)

    source, _, http = hn_source(handler, clock)
    async with http:
        await source.start()
        got = await take(source.mentions(), 2)
    assert [m.id for m in got] == ["hackernews:41492001", "hackernews:41492110"]


async def test_hn_credentials_refused_is_fatal() -> None:
    source, _, http = hn_source(lambda r: httpx.Response(403), RecordingClock(T0))
    async with http:
        await source.start()
        with pytest.raises(SourceFatalError, match="HTTP 403"):
            await take(source.mentions(), 1)


async def test_hn_a_poll_cut_at_its_page_cap_is_counted() -> None:
    clock, metrics = EndingClock(polls=1), Metrics()  # one poll
    page = {**fixture("hackernews/search_by_date_story.json"), "nbPages": 3}
    config = HackerNewsConfig(queries=["acme"], max_pages=1)
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=page))
    ) as http:
        source = HackerNewsSource(config, http, clock, MemoryCursorStore(), metrics)
        await source.start()
        await deliver_all(source)
    assert gauge(metrics, "source_page_caps_total", "hackernews") == 1


# --- RSS over MockTransport ------------------------------------------------------------


async def test_rss_sends_validators_and_a_304_delivers_nothing_new() -> None:
    clock = RecordingClock(T0)
    seen: list[httpx.Request] = []
    body = (FIXTURES / "rss/news_rss2.xml").read_bytes()

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            headers = {"ETag": '"v1"', "Last-Modified": "Mon, 09 Sep 2024 20:10:00 GMT"}
            return httpx.Response(200, content=body, headers=headers)
        if len(seen) == 2:
            return httpx.Response(304)
        raise EndOfTest

    store = MemoryCursorStore()
    config = FeedsConfig(
        feeds=[{"url": "https://news.example.com/feed.xml"}],
        poll_seconds=60,
        initial_lookback_minutes=10**7,  # the fixture's items are from 2024
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        source = FeedsSource(config, http, clock, store)
        await source.start()
        got = await deliver_all(source)
        await source.stop()
    assert [m.created_at.day for m in got] == [8, 9]  # oldest first, once each
    assert "if-none-match" not in seen[0].headers
    assert seen[1].headers["if-none-match"] == '"v1"'
    assert seen[1].headers["if-modified-since"] == "Mon, 09 Sep 2024 20:10:00 GMT"
    assert clock.sleeps[:2] == [60, 60]
    saved = json.loads(store.cursors["rss"])["https://news.example.com/feed.xml"]
    assert saved["etag"] == '"v1"' and len(saved["seen"]) == 2


async def test_rss_a_restart_does_not_repeat_items() -> None:
    clock = RecordingClock(T0)
    body = (FIXTURES / "rss/news_rss2.xml").read_bytes()
    store = MemoryCursorStore()
    config = FeedsConfig(
        feeds=[{"url": "https://news.example.com/feed.xml"}],
        poll_seconds=60,
        initial_lookback_minutes=10**7,  # the fixture's items are from 2024
    )
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise EndOfTest
        return httpx.Response(200, content=body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        # stopped after its first poll (a stop within a poll's batch of new items repeats
        # that batch: test_source_feeds_cursor_batches)
        first = FeedsSource(config, http, EndingClock(polls=1), store)
        await first.start()
        taken = await deliver_all(first)
        await first.stop()

        second = FeedsSource(config, http, clock, store)  # a new process, same database
        await second.start()
        again: list[Mention] = []
        with pytest.raises(EndOfTest):  # the third request ends the test
            async for m in second.mentions():
                again.append(m)
    assert len(taken) == 2 and again == []
    assert calls == 3  # the second run polled the same feed once and found nothing new


def gauge(metrics: Metrics, name: str, source: str) -> float | None:
    return metrics.registry.get_sample_value(f"crisiswatch_{name}", {"source": source})


async def test_rss_a_broken_feed_is_backed_off_and_the_others_keep_being_polled() -> None:
    clock, metrics = EndingClock(polls=8), Metrics()  # 8 polls, 60 s apart
    body = (FIXTURES / "rss/news_rss2.xml").read_bytes()
    hits: dict[str, int] = {}
    moved_back = False

    def handler(request: httpx.Request) -> httpx.Response:
        host = request.url.host
        hits[host] = hits.get(host, 0) + 1
        if host == "moved.example" and not moved_back:
            return httpx.Response(404)  # a feed that moved
        if host == "rsshub.example":
            return httpx.Response(200, text="<html><body>captcha</body></html>")
        if host == "blocked.example":
            return httpx.Response(403)  # a blocked RSSHub route
        return httpx.Response(200, content=body)

    feeds = ["moved.example/feed", "rsshub.example/weibo/keyword/acme", "blocked.example/x"]
    config = FeedsConfig(
        feeds=[{"url": f"https://{f}"} for f in [*feeds, "news.example.com/feed.xml"]],
        poll_seconds=60,
        initial_lookback_minutes=10**7,  # the fixture's items are from 2024
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        source = FeedsSource(config, http, clock, MemoryCursorStore(), metrics)
        await source.start()
        got: list[Mention] = []
        with pytest.raises(EndOfTest):
            async for m in source.mentions():
                got.append(m)
                source.delivered(m)
                moved_back = True  # the moved feed is served again from now on
    assert len(got) == 4  # the good feed, after the broken ones, and the moved one once back
    assert hits["news.example.com"] == 8  # every poll
    # the broken feeds are retried 60, 120, 240 s after failing: 4 requests in 8 polls
    assert hits["rsshub.example"] == hits["blocked.example"] == 4
    assert hits["moved.example"] == 8  # failed once, read at the next poll, and recovered
    assert set(source.health.failing_targets) == {feeds[1], feeds[2]}
    assert "not an RSS or Atom feed" in source.health.failing_targets[feeds[1]]
    assert "HTTP 403" in source.health.failing_targets[feeds[2]]
    assert source.health.as_dict()["failing_targets"] == source.health.failing_targets
    assert gauge(metrics, "source_targets_failing", "rss") == 2
    assert gauge(metrics, "source_errors_total", "rss") == 9  # 1 + 4 + 4 failed requests
    assert source.health.state == "polling"
    assert gauge(metrics, "source_up", "rss") == 1


async def test_rss_every_feed_failing_is_not_up() -> None:
    clock, metrics = EndingClock(polls=3), Metrics()
    config = FeedsConfig(feeds=[{"url": "https://gone.example/feed"}], poll_seconds=60)
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(404))
    ) as http:
        source = FeedsSource(config, http, clock, MemoryCursorStore(), metrics)
        await source.start()
        with pytest.raises(EndOfTest):
            await take(source.mentions(), 1)
    assert source.health.state == "waiting"
    assert gauge(metrics, "source_up", "rss") == 0
    assert list(source.health.failing_targets) == ["gone.example/feed"]


# --- Mastodon config and fallback ------------------------------------------------------


def test_mastodon_without_a_token_names_what_is_missing() -> None:
    with pytest.raises(ValidationError, match="needs access_token"):
        ListenerConfig.model_validate(
            {"sources": {"mastodon": [{"instance": "https://m.example"}]}}
        )


@pytest.mark.parametrize("name", ["hackernews", "bluesky", "rss", "webhook"])
def test_a_mastodon_source_may_not_take_another_sources_name(name: str) -> None:
    """It would share that source's cursor and health line: each restart one of the two
    could not read the other's cursor and started as on its first run."""
    instance = {"instance": "https://m.example", "access_token": "t" * 20, "name": name}
    with pytest.raises(ValidationError, match=f"may not be named '{name}'"):
        ListenerConfig.model_validate({"sources": {"mastodon": [instance]}})
    ok = {**instance, "name": "mastodon-" + name}
    assert ListenerConfig.model_validate({"sources": {"mastodon": [ok]}})


async def test_mastodon_falls_back_to_polling_when_streaming_is_unavailable() -> None:
    clock = RecordingClock(T0)
    paths: list[str] = []
    page = (FIXTURES / "mastodon/timeline_public.json").read_bytes()

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        assert request.headers["authorization"] == "Bearer tok-123"
        if request.url.path.startswith("/api/v1/streaming"):
            return httpx.Response(404)
        if request.url.params.get("min_id") == "113107745413932185":
            return httpx.Response(200, content=page)
        return httpx.Response(200, json=[])

    store = MemoryCursorStore()
    store.cursors["mastodon"] = "113107745413932185"
    config = MastodonConfig(instance="https://m.example", access_token="tok-123")
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        source = MastodonSource(config, http, clock, store)
        await source.start()
        got = await take(source.mentions(), 2)
    assert [m.id for m in got] == [
        "mastodon-m.example:113107745413932190",
        "mastodon-m.example:113107745413932201",
    ]
    assert paths[0] == "/api/v1/streaming/public"
    assert paths[1] == "/api/v1/timelines/public"
    assert source.health.state == "polling"
    assert clock.now() < T0 + timedelta(minutes=10)


# --- Reddit over MockTransport ---------------------------------------------------------

REDDIT = {
    "client_id": "cid",
    "client_secret": "csecret-123",
    "user_agent": "server:crisiswatch-test:1.0 (by /u/tester)",
    "searches": ["acme"],
}


def test_reddit_without_credentials_names_what_is_missing() -> None:
    with pytest.raises(ValidationError, match="needs client_id, client_secret"):
        ListenerConfig.model_validate(
            {"sources": {"reddit": {"user_agent": "x", "searches": ["acme"]}}}
        )


async def test_reddit_token_rate_limit_headers_and_a_refreshed_token() -> None:
    clock = RecordingClock(T0)
    clock.set(datetime(2024, 9, 9, 20, 30, tzinfo=UTC))
    token = fixture("reddit/access_token.json")
    listing = fixture("reddit/listing_search_new.json")
    requests: list[httpx.Request] = []
    api_calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal api_calls
        requests.append(request)
        if request.url.path == "/api/v1/access_token":
            return httpx.Response(200, json=token)
        api_calls += 1
        if api_calls == 1:  # the first token is refused once: a new one is fetched
            return httpx.Response(401)
        if api_calls == 4:  # the next poll: end the test's stream
            return httpx.Response(403)
        if "after" in request.url.params:  # page 2: nothing older
            return httpx.Response(200, json={"kind": "Listing", "data": {"children": []}})
        headers = {
            "X-Ratelimit-Remaining": "0",
            "X-Ratelimit-Reset": "42",
            "X-Ratelimit-Used": "100",
        }
        return httpx.Response(200, json=listing, headers=headers)

    store = MemoryCursorStore()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        source = RedditSource(RedditConfig.model_validate(REDDIT), http, clock, store)
        await source.start()
        got: list[Mention] = []
        with pytest.raises(SourceFatalError):
            async for m in source.mentions():
                got.append(m)
                source.delivered(m)
        await source.stop()
    assert [m.id for m in got] == ["reddit:t3_1fcz0aa", "reddit:t3_1fcz1bb"]  # oldest first
    token_requests = [r for r in requests if r.url.path == "/api/v1/access_token"]
    assert len(token_requests) == 2
    assert token_requests[0].headers["authorization"].startswith("Basic ")
    assert b"grant_type=client_credentials" in token_requests[0].content
    api = [r for r in requests if r.url.path == "/search"]
    assert api[0].headers["user-agent"] == REDDIT["user_agent"]
    assert api[1].headers["authorization"] == f"bearer {token['access_token']}"
    assert api[1].url.params["sort"] == "new" and api[1].url.params["q"] == "acme"
    # a page answered "0 remaining, reset in 42 s": the next request waited for the reset
    assert 42 in clock.sleeps
    assert source.health.rate_limited >= 1
    assert json.loads(store.cursors["reddit"])["search:acme"]["t"] == 1725913311


@pytest.mark.parametrize(
    ("status", "headers", "wait"),
    [
        (200, {"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "3e9"}, MAX_SERVER_WAIT_S),
        (200, {"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "1e12"}, MAX_SERVER_WAIT_S),
        (200, {"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "inf"}, 60.0),
        (429, {"X-Ratelimit-Reset": "soon"}, 60.0),
        (429, {"X-Ratelimit-Reset": "0"}, MIN_SERVER_WAIT_S),
    ],
)
async def test_reddit_rate_limit_headers_out_of_bounds_are_bounded(
    status: int, headers: dict[str, str], wait: float
) -> None:
    """A reset of 95 years slept it; 1e12 or inf raised OverflowError on every poll (the
    listing never delivered); a 429 whose reset is not a number was taken for the
    listing's own error (backed off up to an hour)."""
    clock = EndingClock(polls=3)
    token = fixture("reddit/access_token.json")
    listing = fixture("reddit/listing_search_new.json")
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        if request.url.path == "/api/v1/access_token":
            return httpx.Response(200, json=token)
        if "after" in request.url.params:  # page 2: nothing older
            return httpx.Response(200, json={"kind": "Listing", "data": {"children": []}})
        calls += 1
        if calls == 1:
            return httpx.Response(status, json=listing if status == 200 else {}, headers=headers)
        return httpx.Response(200, json=listing)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        source = RedditSource(RedditConfig.model_validate(REDDIT), http, clock, MemoryCursorStore())
        await source.start()
        got = await deliver_all(source)
        await source.stop()
    assert wait in clock.sleeps, clock.sleeps
    assert max(clock.sleeps) <= MAX_SERVER_WAIT_S
    assert [m.id for m in got] == ["reddit:t3_1fcz0aa", "reddit:t3_1fcz1bb"]
    assert source.health.failing_targets == {}
    # a 429 ends the poll and the source comes back after the wait; no target failed
    reconnects = 1 if status == 429 else 0
    assert (source.health.reconnects, source.health.rate_limited) == (reconnects, 1)


async def test_reddit_a_private_or_banned_subreddit_does_not_stop_the_other_listings() -> None:
    clock, metrics = EndingClock(polls=3), Metrics()
    token = fixture("reddit/access_token.json")
    listing = fixture("reddit/listing_search_new.json")
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/access_token":
            return httpx.Response(200, json=token)
        paths.append(request.url.path)
        if request.url.path == "/r/closed/new":
            return httpx.Response(403, json=fixture("reddit/error_subreddit_private.json"))
        if request.url.path == "/r/gone/new":
            return httpx.Response(404, json=fixture("reddit/error_subreddit_banned.json"))
        if "after" in request.url.params:
            return httpx.Response(200, json={"kind": "Listing", "data": {"children": []}})
        return httpx.Response(200, json=listing)

    config = RedditConfig.model_validate({**REDDIT, "subreddits": ["closed", "gone"]})
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        source = RedditSource(config, http, clock, MemoryCursorStore(), metrics)
        await source.start()
        got = await deliver_all(source)
    assert [m.id for m in got] == ["reddit:t3_1fcz0aa", "reddit:t3_1fcz1bb"]
    assert paths.count("/search") >= 3  # the search kept being polled
    assert paths.count("/r/closed/new") == 2  # retried at the next poll, then not for 120 s
    assert set(source.health.failing_targets) == {"r/closed/new", "r/gone/new"}
    assert "HTTP 403" in source.health.failing_targets["r/closed/new"]
    assert gauge(metrics, "source_targets_failing", "reddit") == 2
    assert source.health.state == "polling"


async def test_reddit_a_poll_cut_at_its_page_cap_is_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, metrics = EndingClock(polls=1), Metrics()  # one poll
    token = fixture("reddit/access_token.json")
    listing = fixture("reddit/listing_search_new.json")  # "after" names a next page

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/access_token":
            return httpx.Response(200, json=token)
        return httpx.Response(200, json=listing)

    config = RedditConfig.model_validate({**REDDIT, "max_pages": 1})
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        source = RedditSource(config, http, clock, MemoryCursorStore(), metrics)
        await source.start()
        await deliver_all(source)
    assert source.health.page_caps == 1
    assert gauge(metrics, "source_page_caps_total", "reddit") == 1
    assert "reddit /search stopped at its cap of 1 pages" in caplog.text


# --- Telegram over MockTransport -------------------------------------------------------


async def test_telegram_fills_a_gap_with_older_pages_and_skips_service_messages() -> None:
    clock = RecordingClock(T0)
    latest = (FIXTURES / "telegram/channel_page.html").read_text("utf-8")
    older = (FIXTURES / "telegram/channel_page_before_1840.html").read_text("utf-8")
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if len(requests) > 2:
            raise EndOfTest  # ends the test's stream (a 404 only backs the channel off)
        if request.url.params.get("before") == "1840":
            return httpx.Response(200, text=older)
        return httpx.Response(200, text=latest)

    store = MemoryCursorStore()
    store.cursors["telegram"] = json.dumps({"acmewatch": 1838})
    config = TelegramConfig(channels=["acmewatch"])
    got: list[Mention] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        source = TelegramSource(config, http, clock, store)
        await source.start()
        with pytest.raises(EndOfTest):
            async for m in source.mentions():
                got.append(m)
                source.delivered(m)
        await source.stop()
    assert [m.id for m in got] == [
        "telegram:acmewatch/1839",
        "telegram:acmewatch/1840",
        "telegram:acmewatch/1842",
    ]
    assert requests[0].url.path == "/s/acmewatch"
    assert json.loads(store.cursors["telegram"]) == {"acmewatch": 1842}


def test_telegram_channel_names_are_checked() -> None:
    with pytest.raises(ValidationError, match="not a public channel username"):
        TelegramConfig(channels=["../etc"])


# --- YouTube over MockTransport --------------------------------------------------------


def youtube_config(**extra: object) -> YouTubeConfig:
    return YouTubeConfig.model_validate(
        {"api_key": "yt-key-123", "videos": ["dQw4w9WgXcQ"], **extra}
    )


async def test_youtube_key_in_a_header_quota_exceeded_waits_for_the_next_api_day() -> None:
    clock = RecordingClock(T0)  # 2024-09-09 20:30 UTC = 13:30 in Los Angeles
    page = fixture("youtube/comment_threads_page.json")
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if len(requests) == 1:
            return httpx.Response(403, json=fixture("youtube/error_quota_exceeded.json"))
        if len(requests) == 2:
            return httpx.Response(200, json={**page, "nextPageToken": None})
        return httpx.Response(400, json=fixture("youtube/error_key_invalid.json"))

    store = MemoryCursorStore()
    got: list[Mention] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        source = YouTubeSource(youtube_config(), http, clock, store)
        await source.start()
        with pytest.raises(SourceFatalError, match="API key was refused"):
            async for m in source.mentions():
                got.append(m)
                source.delivered(m)
        await source.stop()
    # midnight Pacific (07:00 UTC) is 10.5 hours after 20:30 UTC
    assert clock.sleeps[0] == 10.5 * 3600
    assert [m.id for m in got] == [
        "youtube:UgxOlder456EeFfGgHh4AaABAg",
        "youtube:UgzNewest123AaBbCcDd4AaABAg",
    ]
    assert requests[0].headers["x-goog-api-key"] == "yt-key-123"
    assert "yt-key-123" not in str(requests[0].url)
    assert requests[0].url.params["videoId"] == "dQw4w9WgXcQ"
    assert requests[0].url.params["order"] == "time"


def test_youtube_spends_no_more_than_its_daily_budget() -> None:
    clock = RecordingClock(T0)  # 13:30 in Los Angeles
    quota = Quota(10, clock)
    for _ in range(10):
        quota.spend()
    with pytest.raises(RateLimited) as waited:
        quota.spend()
    assert waited.value.delay == 10.5 * 3600  # until midnight Pacific
    clock.advance(10.5 * 3600)
    quota.spend()  # a new API day
    assert quota.used == 1


async def test_youtube_polls_are_stretched_to_fit_the_budget() -> None:
    async with httpx.AsyncClient() as http:
        config = youtube_config(daily_quota_units=10, videos=["a", "b"])
        source = YouTubeSource(config, http, RecordingClock(T0), MemoryCursorStore())
        assert source.poll_interval == 86_400 * 2 / 10


async def test_youtube_comments_disabled_skips_the_video() -> None:
    clock = RecordingClock(T0)
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.url.params.get("videoId") == "closed":
            return httpx.Response(403, json=fixture("youtube/error_comments_disabled.json"))
        if len(requests) > 2:
            return httpx.Response(401)
        return httpx.Response(
            200, json={**fixture("youtube/comment_threads_page.json"), "nextPageToken": None}
        )

    got: list[Mention] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        config = youtube_config(videos=["closed", "dQw4w9WgXcQ"])
        source = YouTubeSource(config, http, clock, MemoryCursorStore())
        await source.start()
        with pytest.raises(SourceFatalError):
            async for m in source.mentions():
                got.append(m)
    assert len(got) == 2


async def test_youtube_a_deleted_video_does_not_stop_the_other_targets() -> None:
    clock, metrics = EndingClock(polls=2), Metrics()
    requested: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        video = request.url.params.get("videoId")
        requested.append(video)
        if video == "gone":
            return httpx.Response(404, json=fixture("youtube/error_video_not_found.json"))
        return httpx.Response(
            200, json={**fixture("youtube/comment_threads_page.json"), "nextPageToken": None}
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        config = youtube_config(videos=["gone", "dQw4w9WgXcQ"])
        source = YouTubeSource(config, http, clock, MemoryCursorStore(), metrics)
        await source.start()
        got = await deliver_all(source)
    assert len(got) == 2
    # the next poll retries it (and doubles its wait); the other video is read every poll
    assert requested == ["gone", "dQw4w9WgXcQ", "gone", "dQw4w9WgXcQ"]
    assert list(source.health.failing_targets) == ["video:gone"]
    assert "HTTP 404" in source.health.failing_targets["video:gone"]
    assert gauge(metrics, "source_targets_failing", "youtube") == 1


async def test_youtube_a_refused_key_still_stops_the_source() -> None:
    forbidden = {"error": {"code": 403, "errors": [{"reason": "accessNotConfigured"}]}}
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(403, json=forbidden))
    ) as http:
        source = YouTubeSource(youtube_config(), http, RecordingClock(T0), MemoryCursorStore())
        await source.start()
        with pytest.raises(SourceFatalError, match="HTTP 403"):
            await take(source.mentions(), 1)
    assert source.health.state == "failed"


def youtube_answers(
    forbidden: dict[int, set[str]], requested: list[tuple[int, str | None]], clock: RecordingClock
) -> Callable[[httpx.Request], httpx.Response]:
    """Answers a 403 ``forbidden`` to the videos listed for the poll (counted by the
    clock's sleeps), a page to the others."""

    def handler(request: httpx.Request) -> httpx.Response:
        poll, video = len(clock.sleeps), request.url.params.get("videoId")
        requested.append((poll, video))
        if video in forbidden.get(poll, set()):
            return httpx.Response(403, json=fixture("youtube/error_forbidden.json"))
        return httpx.Response(
            200, json={**fixture("youtube/comment_threads_page.json"), "nextPageToken": None}
        )

    return handler


async def test_youtube_a_private_video_does_not_stop_the_other_targets() -> None:
    """A 403 ``forbidden`` for one video while another is readable is that video's (a
    private or members-only one), not the key's: it was fatal to the whole source."""
    clock, metrics = EndingClock(polls=3), Metrics()
    requested: list[tuple[int, str | None]] = []
    handler = youtube_answers({0: {"private"}, 1: {"private"}}, requested, clock)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        config = youtube_config(videos=["private", "dQw4w9WgXcQ"])
        source = YouTubeSource(config, http, clock, MemoryCursorStore(), metrics)
        await source.start()
        got = await deliver_all(source)
    assert len(got) == 2 and source.health.state != "failed"
    # refused twice, it waits 600 s: poll 2 (300 s on) reads the other video only
    assert requested == [
        (0, "private"),
        (0, "dQw4w9WgXcQ"),
        (1, "private"),
        (1, "dQw4w9WgXcQ"),
        (2, "dQw4w9WgXcQ"),
    ]
    assert list(source.health.failing_targets) == ["video:private"]
    assert "403 forbidden" in source.health.failing_targets["video:private"]
    assert gauge(metrics, "source_targets_failing", "youtube") == 1


async def test_youtube_forbidden_for_every_target_stops_the_source() -> None:
    """Each target refused in turn (none readable since): the key is barred."""
    clock = EndingClock(polls=5)
    requested: list[tuple[int, str | None]] = []
    # poll 0: a refused, b read; poll 1: a read again, b refused (not fatal: a is
    # readable); poll 2: a refused too, while b is still refused
    refused = {0: {"a"}, 1: {"b"}, 2: {"a", "b"}}
    handler = youtube_answers(refused, requested, clock)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        config = youtube_config(videos=["a", "b"], poll_seconds=3600)  # a is due every poll
        source = YouTubeSource(config, http, clock, MemoryCursorStore())
        await source.start()
        with pytest.raises(SourceFatalError, match="forbidden for every video and channel"):
            async for m in source.mentions():
                source.delivered(m)
    assert requested == [(0, "a"), (0, "b"), (1, "a"), (1, "b"), (2, "a")]
    assert source.health.state == "failed"


async def test_youtube_a_target_whose_last_answer_is_not_forbidden_is_not_counted() -> None:
    """a refused, then gone (404 from then on): its last answer is not ``forbidden`` any
    more, so b refused afterwards is not "every target"."""
    clock = EndingClock(polls=4)
    requested: list[tuple[int, str | None]] = []
    refused = youtube_answers({0: {"a"}, 2: {"b"}}, requested, clock)

    def handler(request: httpx.Request) -> httpx.Response:
        poll = len(clock.sleeps)
        if poll >= 1 and request.url.params.get("videoId") == "a":
            requested.append((poll, "a"))
            return httpx.Response(404, json=fixture("youtube/error_video_not_found.json"))
        return refused(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        config = youtube_config(videos=["a", "b"], poll_seconds=3600)  # a is due every poll
        source = YouTubeSource(config, http, clock, MemoryCursorStore())
        await source.start()
        got = await deliver_all(source)  # was: fatal at poll 2
    assert got and source.health.state != "failed"
    assert (1, "a") in requested and (2, "b") in requested


async def test_youtube_a_video_listed_twice_counts_once_among_the_targets() -> None:
    clock = EndingClock(polls=3)
    requested: list[tuple[int, str | None]] = []
    handler = youtube_answers({0: {"a"}}, requested, clock)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        source = YouTubeSource(youtube_config(videos=["a", "a"]), http, clock, MemoryCursorStore())
        await source.start()
        with pytest.raises(SourceFatalError, match="forbidden for every video and channel"):
            await take(source.mentions(), 1)


async def test_youtube_forbidden_naming_the_key_stops_the_source_at_once() -> None:
    blocked = fixture("youtube/error_key_service_blocked.json")
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(403, json=blocked))
    ) as http:
        config = youtube_config(videos=["a", "b", "c"])
        source = YouTubeSource(config, http, RecordingClock(T0), MemoryCursorStore())
        await source.start()
        with pytest.raises(SourceFatalError, match="API_KEY_SERVICE_BLOCKED"):
            await take(source.mentions(), 1)
    assert source.health.state == "failed"


async def test_youtube_forbidden_with_an_error_info_about_the_video_is_the_videos() -> None:
    """An ErrorInfo whose reason is not about the key or its project is left to the
    ambiguous rule: that video is skipped, the other one read."""
    clock = EndingClock(polls=2)
    body = fixture("youtube/error_forbidden.json")
    body["error"]["details"] = [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "VIDEO_PRIVATE"}
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("videoId") == "private":
            return httpx.Response(403, json=body)
        return httpx.Response(
            200, json={**fixture("youtube/comment_threads_page.json"), "nextPageToken": None}
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        config = youtube_config(videos=["private", "dQw4w9WgXcQ"])
        source = YouTubeSource(config, http, clock, MemoryCursorStore())
        await source.start()
        got = await deliver_all(source)
    assert len(got) == 2 and list(source.health.failing_targets) == ["video:private"]


async def test_youtube_a_poll_cut_at_its_page_cap_is_counted() -> None:
    clock, metrics = EndingClock(polls=1), Metrics()  # one poll
    page = fixture("youtube/comment_threads_page.json")  # with a nextPageToken
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=page))
    ) as http:
        source = YouTubeSource(
            youtube_config(max_pages=1), http, clock, MemoryCursorStore(), metrics
        )
        await source.start()
        await deliver_all(source)
    assert gauge(metrics, "source_page_caps_total", "youtube") == 1


def test_youtube_without_a_key_names_what_is_missing() -> None:
    with pytest.raises(ValidationError, match="needs api_key"):
        ListenerConfig.model_validate({"sources": {"youtube": {"videos": ["x"]}}})


def test_a_target_error_backs_off_long_an_outage_briefly() -> None:
    """A gone or blocked target waits up to an hour; a dropped connection or a 5xx (the
    platform or the network, for every target at once) at most a poll interval or two
    minutes: the source was blind for as long again as the outage lasted."""
    from listener.backoff import TargetUnavailable
    from listener.health import SourceHealth
    from listener.sources.targets import TargetBackoff

    clock = RecordingClock(T0)
    health = SourceHealth("hn", "hackernews", Coverage(needs="-", covers="-"), clock, None)
    failing = TargetBackoff(health, clock, first=60.0)
    gone = [failing.failed("a", "a", TargetUnavailable("404")) for _ in range(8)]
    down = [failing.failed("b", "b", httpx.ConnectError("network down")) for _ in range(8)]
    assert gone == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert down == [60, 120, 120, 120, 120, 120, 120, 120]
    rss = TargetBackoff(health, clock, first=300.0)  # a poll interval above two minutes
    assert [rss.failed("c", "c", TransientError("503")) for _ in range(3)] == [300] * 3
    # an API answering something that is not JSON (an HTML error page with 200, a proxy's
    # login page) is the platform's trouble, not one target's: a short wait, as a 5xx
    html = json.JSONDecodeError("Expecting value", "<html>", 0)
    assert [failing.failed("d", "d", html) for _ in range(4)] == [60, 120, 120, 120]


def test_a_time_mark_keeps_its_floor_across_a_restart() -> None:
    """Restarted before anything was delivered, a source asked up to the late window
    further back than its configured lookback: items from before it were delivered."""
    from listener.sources.timemark import TimeMark, dump_marks, load_marks

    fresh = TimeMark(1_000, floor=1_000)
    assert load_marks(dump_marks({"q": fresh}))["q"].since(300) == 1_000
    moved = TimeMark(2_000, ["a"], {"b": 1_900}, floor=1_000)
    assert load_marks(dump_marks({"q": moved}))["q"] == moved
    assert load_marks('{"q": {"t": 5, "ids": []}}')["q"].floor == 0  # cursors of before


async def test_get_at_most_reads_an_answer_bounded() -> None:
    payload = json.dumps({"hits": ["é" * 50]}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100_000):  # 100 MB offered
            yield b"x" * 1000

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/huge":  # chunked: no Content-Length to refuse it by
            return httpx.Response(200, content=chunks())
        if request.url.path == "/declared":
            return httpx.Response(200, headers={"Content-Length": str(10**10)}, content=b"")
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        return httpx.Response(200, headers=headers, content=gzip.compress(payload))

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        answer = await get_at_most(http, "https://api.test/ok", what="ok", params={"q": "a"})
        assert answer.json() == json.loads(payload)  # decoded once, as http.get gives it
        assert answer.request.url.params["q"] == "a"
        for path in ("/huge", "/declared"):
            with pytest.raises(TransientError, match="larger than 1,000,000 bytes"):
                await get_at_most(http, f"https://api.test{path}", what="x", limit=1_000_000)
        with pytest.raises(TransientError, match="larger than"):  # a gzip bomb is cut too
            await get_at_most(http, "https://api.test/ok", what="x", limit=100)


async def test_hn_an_answer_over_max_api_bytes_is_a_transient_error_not_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(backoff, "MAX_API_BYTES", 10_000)
    page = {"hits": [{"objectID": str(i), "title": "x" * 100} for i in range(200)], "nbPages": 1}
    got, source = await hn_poll(page)
    assert got == []
    assert "larger than 10,000 bytes" in (source.health.last_error or "")
