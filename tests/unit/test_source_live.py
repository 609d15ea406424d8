"""The common base of the live sources: cursor safety, backoff, rate limits, health;
and each HTTP source's polling protocol against httpx.MockTransport."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from core.clock import ManualClock
from core.events import Mention
from core.metrics import Metrics
from listener.backoff import Backoff, RateLimited, TransientError, check_response, retry_after
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
from listener.sources.youtube import Quota, YouTubeConfig, YouTubeSource

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"
T0 = datetime(2024, 9, 9, 20, 30, tzinfo=UTC)


class RecordingClock(ManualClock):
    """Sleeping moves time at once and is recorded (polling loops run without waiting)."""

    def __init__(self) -> None:
        super().__init__(T0)
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)


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
    store, clock = MemoryCursorStore(), RecordingClock()
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
    store, clock = MemoryCursorStore(), RecordingClock()
    source = Scripted(
        [(mention(1), "c1"), (None, "c1b"), (mention(2), "c2")], clock=clock, cursors=store
    )
    await source.start()
    got = await take(source.mentions(), 2)
    source.delivered(got[0])
    await source.save_cursor(force=True)
    assert store.cursors["scripted"] == "c1b"


async def test_a_restart_resumes_from_the_saved_cursor() -> None:
    store, clock = MemoryCursorStore(), RecordingClock()
    store.cursors["scripted"] = "c7"
    source = Scripted([(mention(8), "c8")], clock=clock, cursors=store)
    await source.start()
    await take(source.mentions(), 1)
    assert source.opened_with == ["c7"]


async def test_errors_reconnect_after_a_backoff_from_the_last_yielded_position() -> None:
    store, clock = MemoryCursorStore(), RecordingClock()
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
    store, clock = MemoryCursorStore(), RecordingClock()
    source = Scripted([SourceFatalError("credentials refused")], clock=clock, cursors=store)
    await source.start()
    with pytest.raises(SourceFatalError):
        await take(source.mentions(), 1)
    assert source.health.state == "failed"


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


def fixture(path: str) -> dict[str, object]:
    return json.loads((FIXTURES / path).read_text("utf-8"))


async def test_hn_honours_retry_after_then_pages_from_the_cursor() -> None:
    clock, metrics = RecordingClock(), Metrics()
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
    assert requests[2].url.params["numericFilters"] == "created_at_i>=1725913211"
    assert requests[2].url.params["tags"] == "(story,comment)"


async def test_hn_items_in_the_cursor_second_are_not_repeated() -> None:
    clock = RecordingClock()
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
    source, _, http = hn_source(lambda r: httpx.Response(403), RecordingClock())
    async with http:
        await source.start()
        with pytest.raises(SourceFatalError, match="HTTP 403"):
            await take(source.mentions(), 1)


# --- RSS over MockTransport ------------------------------------------------------------


async def test_rss_sends_validators_and_a_304_delivers_nothing_new() -> None:
    clock = RecordingClock()
    seen: list[httpx.Request] = []
    body = (FIXTURES / "rss/news_rss2.xml").read_bytes()

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            headers = {"ETag": '"v1"', "Last-Modified": "Mon, 09 Sep 2024 20:10:00 GMT"}
            return httpx.Response(200, content=body, headers=headers)
        if len(seen) == 2:
            return httpx.Response(304)
        return httpx.Response(401)  # ends the test's stream

    store = MemoryCursorStore()
    config = FeedsConfig(feeds=[{"url": "https://news.example.com/feed.xml"}], poll_seconds=60)
    got: list[Mention] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        source = FeedsSource(config, http, clock, store)
        await source.start()
        with pytest.raises(SourceFatalError):
            async for m in source.mentions():
                got.append(m)
                source.delivered(m)
        await source.stop()
    assert [m.created_at.day for m in got] == [8, 9]  # oldest first, once each
    assert "if-none-match" not in seen[0].headers
    assert seen[1].headers["if-none-match"] == '"v1"'
    assert seen[1].headers["if-modified-since"] == "Mon, 09 Sep 2024 20:10:00 GMT"
    assert clock.sleeps[:2] == [60, 60]
    saved = json.loads(store.cursors["rss"])["https://news.example.com/feed.xml"]
    assert saved["etag"] == '"v1"' and len(saved["seen"]) == 2


async def test_rss_a_restart_does_not_repeat_items() -> None:
    clock = RecordingClock()
    body = (FIXTURES / "rss/news_rss2.xml").read_bytes()
    store = MemoryCursorStore()
    config = FeedsConfig(feeds=[{"url": "https://news.example.com/feed.xml"}], poll_seconds=60)
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(200 if calls < 3 else 401, content=body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        first = FeedsSource(config, http, clock, store)
        await first.start()
        stream = first.mentions()
        taken = await take(stream, 2)
        for m in taken:
            first.delivered(m)
        await stream.aclose()
        await first.stop()

        second = FeedsSource(config, http, clock, store)  # a new process, same database
        await second.start()
        again: list[Mention] = []
        with pytest.raises(SourceFatalError):  # the third request ends the test
            async for m in second.mentions():
                again.append(m)
    assert len(taken) == 2 and again == []
    assert calls == 3  # the second run polled the same feed once and found nothing new


# --- Mastodon config and fallback ------------------------------------------------------


def test_mastodon_without_a_token_names_what_is_missing() -> None:
    with pytest.raises(ValidationError, match="needs access_token"):
        ListenerConfig.model_validate(
            {"sources": {"mastodon": [{"instance": "https://m.example"}]}}
        )


async def test_mastodon_falls_back_to_polling_when_streaming_is_unavailable() -> None:
    clock = RecordingClock()
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
    clock = RecordingClock()
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


# --- Telegram over MockTransport -------------------------------------------------------


async def test_telegram_fills_a_gap_with_older_pages_and_skips_service_messages() -> None:
    clock = RecordingClock()
    latest = (FIXTURES / "telegram/channel_page.html").read_text("utf-8")
    older = (FIXTURES / "telegram/channel_page_before_1840.html").read_text("utf-8")
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if len(requests) > 2:
            return httpx.Response(404)  # ends the test's stream
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
        with pytest.raises(SourceFatalError):
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
    clock = RecordingClock()  # 2024-09-09 20:30 UTC = 13:30 in Los Angeles
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
    clock = RecordingClock()  # 13:30 in Los Angeles
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
        source = YouTubeSource(config, http, RecordingClock(), MemoryCursorStore())
        assert source.poll_interval == 86_400 * 2 / 10


async def test_youtube_comments_disabled_skips_the_video() -> None:
    clock = RecordingClock()
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


def test_youtube_without_a_key_names_what_is_missing() -> None:
    with pytest.raises(ValidationError, match="needs api_key"):
        ListenerConfig.model_validate({"sources": {"youtube": {"videos": ["x"]}}})
