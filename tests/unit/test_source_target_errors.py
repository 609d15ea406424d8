"""One target's errors in Telegram and Mastodon: a channel, a timeline or a hashtag that is
gone, private or forbidden is backed off as a target (listed in the source's health,
counted in ``crisiswatch_source_targets_failing``) and the rest goes on; only a refused
credential stops a source. One unreadable item does not hold up a source either."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from core.metrics import Metrics
from listener.cursors import MemoryCursorStore
from listener.sources.base import SourceFatalError
from listener.sources.mastodon import MastodonConfig, MastodonSource
from listener.sources.telegram import TelegramConfig, TelegramSource, parse_views
from tests.unit.test_source_live import (
    FIXTURES,
    EndingClock,
    EndOfTest,
    RecordingClock,
    deliver_all,
    gauge,
    take,
)

# --- Telegram ---------------------------------------------------------------------------


async def test_telegram_a_gone_forbidden_or_unpreviewed_channel_does_not_stop_the_others() -> None:
    clock, metrics = EndingClock(polls=3), Metrics()  # 3 polls, 120 s apart
    page = (FIXTURES / "telegram/channel_page.html").read_text("utf-8")
    hits: dict[str, int] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        channel = request.url.path.removeprefix("/s/")
        hits[channel] = hits.get(channel, 0) + 1
        if channel == "gonechannel":
            return httpx.Response(404)  # deleted or renamed
        if channel == "blockedchannel":
            return httpx.Response(403)
        if channel == "someuser":  # no public preview: t.me sends it to its /<name> page
            return httpx.Response(302, headers={"Location": "https://t.me/someuser"})
        if channel == "flakychannel":
            return httpx.Response(502)  # an outage: retried within two minutes
        return httpx.Response(200, text=page)

    broken = ["gonechannel", "blockedchannel", "someuser", "flakychannel"]
    config = TelegramConfig(channels=[*broken, "acmewatch"])
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        source = TelegramSource(config, http, clock, MemoryCursorStore(), metrics)
        await source.start()
        got = await deliver_all(source)
    # the channel after the broken ones is read every poll; its posts are delivered once
    assert [m.id for m in got] == ["telegram:acmewatch/1840", "telegram:acmewatch/1842"]
    assert hits["acmewatch"] == 3
    # retried at the next poll, then after 240 s; the outage after at most 120 s
    assert hits["gonechannel"] == hits["blockedchannel"] == hits["someuser"] == 2
    assert hits["flakychannel"] == 3
    failing = source.health.failing_targets
    assert set(failing) == set(broken)
    assert "HTTP 404" in failing["gonechannel"] and "HTTP 403" in failing["blockedchannel"]
    assert "no public web preview" in failing["someuser"]
    assert "HTTP 502" in failing["flakychannel"]
    assert source.health.as_dict()["failing_targets"] == failing
    assert gauge(metrics, "source_targets_failing", "telegram") == 4
    assert source.health.state == "polling"
    assert gauge(metrics, "source_up", "telegram") == 1


async def test_telegram_every_channel_failing_is_not_up_and_a_channel_back_is_read() -> None:
    clock, metrics = EndingClock(polls=4), Metrics()
    page = (FIXTURES / "telegram/channel_page.html").read_text("utf-8")
    requests = 0
    states: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal requests
        requests += 1
        if requests <= 2:  # private for two polls, then public again
            return httpx.Response(403)
        states.append(source.health.state)
        return httpx.Response(200, text=page)

    config = TelegramConfig(channels=["acmewatch"], poll_seconds=60)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        source = TelegramSource(config, http, clock, MemoryCursorStore(), metrics)
        await source.start()
        got = await deliver_all(source)
    assert states == ["waiting"]  # while its one channel failed, the source was not up
    assert clock.sleeps == [60, 60, 60]  # retried 60 s, then 120 s after failing
    assert len(got) == 2
    assert source.health.failing_targets == {}
    assert gauge(metrics, "source_targets_failing", "telegram") == 0
    assert source.health.state == "polling"


async def test_telegram_a_rate_limit_pauses_the_whole_source() -> None:
    """t.me limits by client, not by channel: a 429 waits its Retry-After for all."""
    clock = EndingClock(polls=2)
    page = (FIXTURES / "telegram/channel_page.html").read_text("utf-8")
    requests = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal requests
        requests += 1
        if requests == 1:
            return httpx.Response(429, headers={"Retry-After": "45"})
        return httpx.Response(200, text=page)

    config = TelegramConfig(channels=["acmewatch", "othernews"])
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        source = TelegramSource(config, http, clock, MemoryCursorStore())
        await source.start()
        await deliver_all(source)
    assert clock.sleeps[0] == 45
    assert source.health.rate_limited == 1
    assert source.health.failing_targets == {}


def test_telegram_an_unreadable_view_count_is_no_count() -> None:
    assert parse_views("12.4K") == 12_400
    assert parse_views("1.2.3") is None  # was a ValueError: the channel's page unreadable
    assert parse_views(".") is None


# --- Mastodon ---------------------------------------------------------------------------

PAGE = json.loads((FIXTURES / "mastodon/timeline_public.json").read_text("utf-8"))
CURSOR = "113107745413932185"  # just before the fixture page
INSTANCE = {"instance": "https://m.example", "access_token": "tok-123", "name": "acme-tag"}
TARGETS = ("source_targets_failing", "acme-tag")


def mastodon(
    handler: Callable[[httpx.Request], httpx.Response], **config: object
) -> tuple[httpx.AsyncClient, MastodonConfig]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return http, MastodonConfig.model_validate({**INSTANCE, **config})


async def test_mastodon_a_hashtag_the_instance_does_not_know_is_backed_off_not_fatal() -> None:
    clock, metrics = RecordingClock(), Metrics()
    seen: list[tuple[str, dict[str, str], float | None]] = []
    requests = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal requests
        requests += 1
        assert request.url.path == "/api/v1/timelines/tag/acme"
        if requests > 1:  # what the source showed while the hashtag was failing
            failing = dict(source.health.failing_targets)
            seen.append((source.health.state, failing, gauge(metrics, *TARGETS)))
        if requests <= 2:
            return httpx.Response(404, json={"error": "Record not found"})
        if request.url.params["min_id"] == CURSOR:
            return httpx.Response(200, json=PAGE)
        return httpx.Response(200, json=[])

    store = MemoryCursorStore()
    store.cursors["acme-tag"] = CURSOR
    http, config = mastodon(handler, timeline="hashtag", hashtag="acme", mode="poll")
    async with http:
        source = MastodonSource(config, http, clock, store, metrics)
        await source.start()
        got = await take(source.mentions(), 2)  # was: SourceFatalError (HTTP 404)
    assert [m.id for m in got] == [
        "mastodon-m.example:113107745413932190",
        "mastodon-m.example:113107745413932201",
    ]
    message = "TargetUnavailable: acme-tag timeline: HTTP 404 (Record not found)"
    assert seen[0] == ("waiting", {"m.example #acme": message}, 1.0)
    assert clock.sleeps[:2] == [30, 60]  # retried after poll_seconds, then twice that
    assert source.health.failing_targets == {}  # back: read again from its cursor
    assert gauge(metrics, *TARGETS) == 0
    assert source.health.state == "polling"
    assert source.health.errors == 2


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, "The access token is invalid"),
        (403, "This action is outside the authorized scopes"),
        (403, "Your login is currently disabled"),
        (422, "This method requires an authenticated user"),
    ],
)
@pytest.mark.parametrize("mode", ["stream", "poll"])
async def test_mastodon_a_refused_token_still_stops_the_source(
    status: int, error: str, mode: str
) -> None:
    clock = EndingClock(polls=5)  # a source that retries for ever ends the test here
    http, config = mastodon(lambda r: httpx.Response(status, json={"error": error}), mode=mode)
    async with http:
        source = MastodonSource(config, http, clock, MemoryCursorStore())
        await source.start()
        with pytest.raises(SourceFatalError) as refused:
            await take(source.mentions(), 1)
    assert f"HTTP {status}, the access token was refused ({error})" in str(refused.value)
    assert "create a new one on https://m.example" in str(refused.value)
    assert source.health.state == "failed"
    assert source.health.failing_targets == {}


async def test_mastodon_a_forbidden_stream_is_read_by_polling() -> None:
    """A 403 without a word about the token (a proxy's page, streaming closed to us)
    on the streaming endpoint: the timeline may still be readable, and is."""
    clock = RecordingClock()
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path.startswith("/api/v1/streaming"):
            return httpx.Response(403, text="<html>Forbidden</html>")
        if request.url.params.get("min_id") == CURSOR:
            return httpx.Response(200, json=PAGE)
        return httpx.Response(200, json=[])

    store = MemoryCursorStore()
    store.cursors["acme-tag"] = CURSOR
    http, config = mastodon(handler)
    async with http:
        source = MastodonSource(config, http, clock, store)
        await source.start()
        got = await take(source.mentions(), 2)  # was: SourceFatalError (HTTP 403)
    assert len(got) == 2
    assert paths[:2] == ["/api/v1/streaming/public", "/api/v1/timelines/public"]
    assert source.health.state == "polling"


async def test_mastodon_a_forbidden_timeline_is_a_failing_target() -> None:
    clock, metrics = EndingClock(polls=3), Metrics()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, text="<html>Access denied</html>")  # a WAF's page

    store = MemoryCursorStore()
    store.cursors["acme-tag"] = CURSOR
    http, config = mastodon(handler, mode="poll")
    async with http:
        source = MastodonSource(config, http, clock, store, metrics)
        await source.start()
        with pytest.raises(EndOfTest):  # was: SourceFatalError (HTTP 403)
            await take(source.mentions(), 1)
    assert source.health.failing_targets == {
        "m.example public": "TargetUnavailable: acme-tag timeline: HTTP 403 (forbidden)"
    }
    assert gauge(metrics, *TARGETS) == 1
    assert source.health.state == "waiting"
    assert clock.sleeps == [30, 60]


async def test_mastodon_an_unreadable_status_in_a_page_is_skipped_not_a_stuck_source() -> None:
    clock = EndingClock(polls=3)
    odd = [{"id": "not-a-number", "created_at": "2024-09-09T19:47:00.000Z"}, "junk", {}]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("min_id") == CURSOR:
            return httpx.Response(200, json=[*odd, *PAGE])
        return httpx.Response(200, json=[])

    store = MemoryCursorStore()
    store.cursors["acme-tag"] = CURSOR
    http, config = mastodon(handler, mode="poll")
    async with http:
        source = MastodonSource(config, http, clock, store)
        await source.start()
        got = await deliver_all(source)  # was: nothing, the page failing for ever
        await source.stop()
    assert [m.id for m in got] == [
        "mastodon-m.example:113107745413932190",
        "mastodon-m.example:113107745413932201",
    ]
    assert store.cursors["acme-tag"] == "113107745413932201"
    assert source.health.reconnects == 0
    assert "3 unreadable status(es)" in (source.health.last_error or "")


async def test_mastodon_an_unreadable_stream_event_is_skipped_without_reconnecting() -> None:
    clock = EndingClock(polls=3)
    update = (FIXTURES / "mastodon/update.sse").read_text("utf-8")
    broken = 'event: update\ndata: {"id": "1131077454139321\n\nevent: update\ndata: [1]\n\n'

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/api/v1/streaming"):
            body = (broken + update).encode()
            return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json=[])

    http, config = mastodon(handler)
    async with http:
        source = MastodonSource(config, http, clock, MemoryCursorStore())
        await source.start()
        got = await take(source.mentions(), 1)  # was: a reconnect per bad event
    assert [m.id for m in got] == ["mastodon-m.example:113107745413932185"]
    assert source.health.reconnects == 0
    assert source.health.errors == 2
