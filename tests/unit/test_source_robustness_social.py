"""Mastodon, Telegram and YouTube against what a platform (or something between) can send:
a stream ``delete`` that is not a status id, an event or a timeline page without end, a
time without an offset (read as UTC on every host), a post longer than a Mention holds,
a Telegram channel far ahead of the cursor or with one absurd post number, and HTML the
stdlib parser gives up on. Each is skipped and counted, cut to fit or read as text: the
rest is delivered and the cursor moves on as it would without it."""

from __future__ import annotations

import json
import logging
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from core.events import MAX_TEXT_CHARS
from core.metrics import Metrics
from listener.cursors import MemoryCursorStore
from listener.sources.mastodon import MastodonConfig, MastodonSource, map_status, sse_lines
from listener.sources.telegram import (
    Post,
    TelegramConfig,
    TelegramSource,
    in_sequence,
    map_post,
    parse_page,
)
from listener.sources.youtube import map_thread, stamp
from tests.unit.test_source_live import FIXTURES, EndingClock, deliver_all, gauge

UPDATE = (FIXTURES / "mastodon/update.sse").read_bytes()
UPDATE_ID = "mastodon-m.example:113107745413932185"
SSE = {"content-type": "text/event-stream"}


def mastodon(http: httpx.AsyncClient, clock: EndingClock, **config: Any) -> MastodonSource:
    settings = MastodonConfig(instance="https://m.example", access_token="tok", **config)
    return MastodonSource(settings, http, clock, MemoryCursorStore(), Metrics())


# --- Mastodon: a delete that is not a status id ----------------------------------------


async def test_mastodon_a_delete_that_is_not_a_status_id_is_skipped_not_a_dropped_stream() -> None:
    bad = ["1131 0774", "9" * 600]
    body = "".join(f"event: delete\ndata: {b}\n\n" for b in bad).encode()
    body += b"event: delete\ndata: 113107745413932100\n\n" + UPDATE

    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/api/v1/streaming"):
            return httpx.Response(200, content=body, headers=SSE)
        return httpx.Response(200, json=[])

    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
        source = mastodon(http, EndingClock(polls=1))
        await source.start()
        got = await deliver_all(source)  # one connection: the stream read to its end
    # was: the first bad delete raised ValidationError, the connection dropped (a failure)
    assert [(m.id, m.change) for m in got] == [
        ("mastodon-m.example:113107745413932100", "deleted"),
        (UPDATE_ID, "created"),
    ]
    assert source.skips.count == source.health.errors == len(bad)
    assert "not a status id" in (source.health.last_error or "")


# --- Mastodon: bounded stream events and timeline pages ----------------------------------


async def chunks(*parts: bytes, filler: int = 0, size: int = 1 << 16) -> AsyncIterator[bytes]:
    """``parts[0]``, then ``filler`` chunks of ``size`` bytes of one line, then the rest."""
    yield parts[0]
    for _ in range(filler):
        yield b"x" * size
    for part in parts[1:]:
        yield part


async def test_mastodon_an_event_larger_than_max_bytes_is_skipped_never_held_whole() -> None:
    limit = 100_000
    stream = chunks(
        b'event: update\ndata: {"id": "1", "content": "', b'"}\n\n' + UPDATE, filler=160
    )

    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/api/v1/streaming"):
            return httpx.Response(200, content=stream, headers=SSE)
        return httpx.Response(200, json=[])

    tracemalloc.start()
    try:
        async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
            source = mastodon(http, EndingClock(polls=1), max_bytes=limit)
            await source.start()
            got = await deliver_all(source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4_000_000  # the line was 10 MB: was held whole (and copied) before
    assert [m.id for m in got] == [UPDATE_ID]  # the stream goes on after it
    assert source.skips.count == source.health.errors == 1
    assert "larger than max_bytes (100000)" in (source.health.last_error or "")


async def test_an_event_stream_ending_inside_a_line_too_long_still_counts_it() -> None:
    lines = [line async for line in sse_lines(chunks(b"data: ", filler=4, size=1000), 2000)]
    assert lines == [None]


@pytest.mark.parametrize(
    "parts",
    [
        [b"event: update\r", b"\ndata: a\r\ndata: b\r\r\n"],  # CRLF split between chunks
        [b"event: update\rdata: a\rdata: b\r\r"],  # CR alone ends a line too
        [b"event: upd", b"ate\ndata: a\nda", b"ta: b\n\n"],
    ],
)
async def test_event_stream_lines_end_with_crlf_lf_or_cr(parts: list[bytes]) -> None:
    lines = [line async for line in sse_lines(chunks(*parts), 100)]
    assert lines == ["event: update", "data: a", "data: b", ""]


async def test_a_line_over_the_limit_is_dropped_and_the_next_one_read() -> None:
    stream = chunks(b"data: " + b"y" * 50, b"z" * 60 + b"\ndata: ok\n")
    assert [line async for line in sse_lines(stream, 100)] == [None, "data: ok"]


async def test_mastodon_a_timeline_page_larger_than_max_bytes_is_not_read_whole() -> None:
    limit = 100_000
    status = json.loads(UPDATE.decode().split("data: ", 1)[1])
    sent = 0

    async def page() -> AsyncIterator[bytes]:
        nonlocal sent
        for i in range(40):  # 40 statuses of ~50 KB: 2 MB
            status["id"], status["content"] = str(200 + i), "w" * 50_000
            chunk = ("[" if i == 0 else ",") + json.dumps(status) + ("]" if i == 39 else "")
            sent += 1
            yield chunk.encode()

    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=page(), headers={"content-type": "application/json"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
        source = mastodon(http, EndingClock(polls=2), mode="poll", max_bytes=limit)
        source.cursors.cursors[source.name] = "100"  # type: ignore[attr-defined]
        await source.start()
        got = await deliver_all(source)
    assert got == []  # was: the 2 MB page read whole and delivered
    assert sent < 5  # given up as soon as it was too large
    assert "larger than max_bytes" in (source.health.last_error or "")
    assert source.health.failing_targets == {}  # the instance's trouble, not the timeline's


# --- times without an offset are UTC, on every host -------------------------------------


@pytest.fixture(params=["Asia/Tokyo", "America/Los_Angeles", "UTC"])
def host_zone(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


NAIVE = "2024-09-09T20:00:00"
AT = datetime(2024, 9, 9, 20, 0, tzinfo=UTC)


@pytest.mark.usefixtures("host_zone")
def test_a_time_without_an_offset_is_utc_whatever_the_host_zone() -> None:
    status = {"id": "1", "created_at": NAIVE, "content": "x"}
    assert map_status(status, "mastodon-m.example").created_at == AT
    comment = {"publishedAt": NAIVE, "textOriginal": "x"}
    thread = {"id": "Ug1", "snippet": {"topLevelComment": {"snippet": comment}}}
    assert map_thread(thread).created_at == AT
    assert stamp(thread) == (int(AT.timestamp()), "Ug1")
    [post] = parse_page(telegram_page([5], when=NAIVE))
    assert post.published == AT
    # a time with an offset is read as before
    [post] = parse_page(telegram_page([5], when="2024-09-09T22:00:00+02:00"))
    assert post.published == AT


# --- texts longer than a Mention holds are cut, not lost ----------------------------------


def test_a_post_longer_than_a_mention_holds_is_cut_to_fit_not_lost() -> None:
    status = {"id": "1", "created_at": "2024-09-09T20:00:00Z", "content": "<p>" + "w" * 50_000}
    assert map_status(status, "mastodon-m.example").text == "w" * MAX_TEXT_CHARS
    comment = {"publishedAt": "2024-09-09T20:00:00Z", "textOriginal": "y" * 50_000}
    thread = {"id": "Ug1", "snippet": {"topLevelComment": {"snippet": comment}}}
    assert len(map_thread(thread).text) == MAX_TEXT_CHARS
    assert len(map_post(Post("acme", 1, text="z" * 50_000), AT).text) == MAX_TEXT_CHARS


# --- Telegram -------------------------------------------------------------------------


def telegram_page(numbers: Any, when: str = "2024-09-09T20:00:00+00:00", text: str = "") -> str:
    posts = "".join(
        f'<div class="tgme_widget_message" data-post="acmewatch/{n}">'
        f'<div class="tgme_widget_message_text">{text or f"post {n}"}</div>'
        f'<time datetime="{when}"></time></div>'
        for n in numbers
    )
    return f"<html><body>{posts}</body></html>"


async def telegram_run(
    pages: Any, cursor: int | None, polls: int, **config: Any
) -> tuple[TelegramSource, list[int], dict[str, int]]:
    """Run a Telegram source over ``pages(poll, before)`` (the HTML of each request)."""
    store = MemoryCursorStore()
    if cursor is not None:
        store.cursors["telegram"] = json.dumps({"acmewatch": cursor})
    requests = 0

    def serve(request: httpx.Request) -> httpx.Response:
        nonlocal requests
        before = request.url.params.get("before")
        html = pages(requests, int(before) if before else None)
        requests += 1
        return httpx.Response(200, text=html)

    settings = TelegramConfig(channels=["acmewatch"], **config)
    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
        source = TelegramSource(settings, http, EndingClock(polls=polls), store, Metrics())
        await source.start()
        got = await deliver_all(source)
        await source.stop()
    numbers = [int(m.id.rsplit("/", 1)[1]) for m in got]
    return source, numbers, json.loads(store.cursors["telegram"])


async def test_telegram_a_gap_beyond_max_pages_is_a_counted_page_cap(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def pages(_: int, before: int | None) -> str:  # the channel is at post 300
        before = before or 301
        return telegram_page(range(max(1, before - 20), before))

    source, numbers, _ = await telegram_run(pages, cursor=100, polls=2, max_pages=5)
    assert numbers == list(range(201, 301))
    # was: posts 101..200 passed over with no log line and no metric
    assert source.health.page_caps == 1
    assert source.health.metrics is not None
    assert gauge(source.health.metrics, "source_page_caps_total", "telegram") == 1
    assert "t.me/s/acmewatch stopped at its cap of 5 pages" in caplog.text


async def test_telegram_a_gap_filled_within_max_pages_is_no_page_cap() -> None:
    def pages(_: int, before: int | None) -> str:
        before = before or 301
        return telegram_page(range(max(1, before - 20), before))

    source, numbers, _ = await telegram_run(pages, cursor=220, polls=2, max_pages=5)
    assert numbers == list(range(221, 301))
    assert source.health.page_caps == 0


async def test_telegram_one_absurd_post_number_does_not_move_the_cursor_past_real_posts() -> None:
    polls = [[10, 11, 99999999], [10, 11, 12, 13, 99999999]]
    source, numbers, cursor = await telegram_run(
        lambda poll, _: telegram_page(polls[min(poll, 1)]), cursor=9, polls=3
    )
    # was: 10, 11, 99999999 delivered, the cursor at 99999999, posts 12 and 13 lost
    assert numbers == [10, 11, 12, 13]
    assert cursor == {"acmewatch": 13}
    assert source.skips.count == source.health.errors == 1  # counted once, read twice
    assert "acmewatch/99999999 skipped" in (source.health.last_error or "")


async def test_telegram_a_real_jump_in_numbers_is_followed_once_most_posts_are_past_it() -> None:
    # posts 11..299 deleted at once: as many posts before the jump as after it, then more
    polls = [[*range(1, 11), *range(300, 310)], [*range(2, 11), *range(300, 311)]]
    source, numbers, cursor = await telegram_run(
        lambda poll, _: telegram_page(polls[min(poll, 1)]), cursor=10, polls=3
    )
    assert numbers == list(range(300, 311))  # delivered a poll late, not lost
    assert cursor == {"acmewatch": 310}
    assert source.skips.count == 10  # skipped (counted) on the first poll


def test_in_sequence_keeps_the_longest_run_and_the_older_on_a_tie() -> None:
    def posts(*numbers: int) -> list[Post]:
        return [Post("acme", n) for n in numbers]

    def split(*numbers: int) -> tuple[list[int], list[int]]:
        found, outliers = in_sequence(posts(*numbers))
        return [p.number for p in found], [p.number for p in outliers]

    assert split(13, 10, 99999999, 11, 12) == ([10, 11, 12, 13], [99999999])
    assert split(5, 1, 2, 1000, 1001, 1002, 1003) == ([1000, 1001, 1002, 1003], [1, 2, 5])
    assert split(1, 2, 500, 501) == ([1, 2], [500, 501])
    assert split(1, 60, 130) == ([1, 60, 130], [])  # gaps up to MAX_GAP: one sequence
    assert split() == ([], [])


@pytest.mark.parametrize("markup", ["<![ x", "<![ CDATA[ a ]]> b", "a <![", "<![if mso]>a"])
def test_telegram_html_the_stdlib_parser_gives_up_on_is_read_not_a_failed_page(
    markup: str,
) -> None:
    page = telegram_page([1]) + telegram_page([2], text=markup) + telegram_page([3])
    posts = parse_page(page)  # was: AssertionError, the channel a failing target
    assert [p.number for p in posts] == [1, 2, 3]
    assert [p.text for p in posts][::2] == ["post 1", "post 3"]
    assert posts[1].text.replace("<![if mso]>", "") in {markup, "a"}


async def test_telegram_a_channel_page_with_a_marked_section_is_delivered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    page = telegram_page([10]) + telegram_page([11], text="<![ CDATA[ x") + telegram_page([12])
    source, numbers, cursor = await telegram_run(lambda *_: page, cursor=9, polls=2)
    assert numbers == [10, 11, 12]
    assert cursor == {"acmewatch": 12}
    assert source.health.failing_targets == {} and source.health.errors == 0
