"""The RSS source's cursor (every feed's validators and remembered item keys) is written
once per batch of ``CHECKPOINT_ITEMS`` new items, and only the feeds whose state changed
are serialised again. Was: the whole cursor re-serialised for every item (about 11 ms an
item with 50 feeds: a minute of event-loop time for a first poll of 5,000 items).

At-least-once is kept: a saved cursor holds an item's key only once the item and every
one before it were delivered; a crash (the process gone, whatever cursor it saved last)
never skips an undelivered item, it may only repeat some (dedup drops them)."""

from __future__ import annotations

import json
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from core.events import Mention
from listener.cursors import MemoryCursorStore
from listener.sources import feeds
from listener.sources.feeds import (
    CHECKPOINT_ITEMS,
    FeedsConfig,
    FeedsSource,
    FeedState,
    _Cursor,
    _dump,
    item_key,
)
from tests.source_servers import rss_feed
from tests.unit.test_source_live import T0, EndingClock, EndOfTest, deliver_all

URL = "https://news.example.com/feed.xml"
N = 2 * CHECKPOINT_ITEMS + 50
OLD = 30  # dated before the lookback: the first read's backlog
MAPPABLE = [i for i in range(OLD, N) if i % 10 != 5]  # the items published


def listed(n: int = N) -> bytes:
    """``n`` items, newest first; the ``OLD`` oldest dated before the default lookback, one
    item in ten with a link that cannot be mapped (skipped, as a malformed item)."""

    def when(i: int) -> Any:
        return T0 - timedelta(hours=3) if i < OLD else T0 - timedelta(seconds=n - i)

    body = rss_feed([(f"g{i}", when(i)) for i in reversed(range(n))])
    for i in range(5, n, 10):  # a link longer than a mention's
        long = f"<title>acme g{i}</title><link>https://x.example/{'a' * 9000}</link>"
        body = body.replace(f"<title>acme g{i}</title>".encode(), long.encode())
    return body


def key(i: int) -> str:
    return item_key(URL, f"g{i}")


def source(store: MemoryCursorStore, http: httpx.AsyncClient) -> FeedsSource:
    config = FeedsConfig(feeds=[{"url": URL}], poll_seconds=60)
    return FeedsSource(config, http, EndingClock(polls=2), store)


def test_the_cursor_is_the_json_it_always_was() -> None:
    states = {
        URL: FeedState('"v1"', "Mon, 09 Sep 2024 20:10:00 GMT", ["a", "b"]),
        "https://ünïcode.example/f": FeedState(None, None, ["c"]),
    }
    cursor = _Cursor(states)
    assert cursor.dump() == _dump(states)
    states[URL].seen.append("d")
    cursor.changed(URL)
    assert cursor.dump() == _dump(states)
    assert feeds._load(cursor.dump()) == states


@pytest.mark.parametrize(
    "taken",
    [0, 1, CHECKPOINT_ITEMS - 1, CHECKPOINT_ITEMS, CHECKPOINT_ITEMS + 1, len(MAPPABLE)],
)
async def test_a_crash_at_any_point_never_skips_an_undelivered_item(taken: int) -> None:
    """The first process takes ``taken`` mentions, delivers them and saves its cursor, then
    dies (no stop). The second, from that cursor, delivers every item the first did not:
    nothing is lost; what the first delivered may come again."""
    store = MemoryCursorStore()
    body = listed()
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=body))
    ) as http:
        first = source(store, http)
        await first.start()
        stream = first.mentions()
        delivered: list[Mention] = []
        while len(delivered) < taken:
            mention = await anext(stream)
            first.delivered(mention)
            delivered.append(mention)
        await first.save_cursor(force=True)
        await stream.aclose()  # the crash: no stop(), nothing saved after this
        saved = store.cursors.get("rss")

        second = source(store, http)
        await second.start()
        again = await deliver_all(second)
    published = {m.id for m in delivered} | {m.id for m in again}
    assert published == {f"news:{key(i)}" for i in MAPPABLE}  # none lost, no backlog item published
    assert len(again) == len({m.id for m in again})  # the second process: each once
    if saved is not None:
        seen = set(json.loads(saved)[URL]["seen"])
        backlog = {key(i) for i in range(OLD)}
        assert backlog <= seen  # the first read's backlog is there as soon as the feed is
        # and the only other keys are those of delivered items (or skipped ones before them)
        last = max((int(m.text.split()[-1].removeprefix("g")) for m in delivered), default=-1)
        assert seen - backlog <= {key(i) for i in range(OLD, last + 1)}


async def test_a_publish_that_fails_never_lets_the_cursor_pass_the_item() -> None:
    """The listener reports ``delivered`` only once a batch is published: the mentions
    taken but not delivered keep the saved cursor behind them."""
    store = MemoryCursorStore()
    body = listed()
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=body))
    ) as http:
        first = source(store, http)
        await first.start()
        stream = first.mentions()
        taken = [await anext(stream) for _ in range(CHECKPOINT_ITEMS + 20)]
        for mention in taken[:10]:  # the rest: their batch failed to publish
            first.delivered(mention)
        await first.save_cursor(force=True)
        await stream.aclose()
    seen = set(json.loads(store.cursors["rss"])[URL]["seen"])
    assert all(f"news:{k}" not in {m.id for m in taken[10:]} for k in seen)


async def test_a_stop_after_a_poll_repeats_nothing() -> None:
    store = MemoryCursorStore()
    body = listed()
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=body))
    ) as http:
        first = source(store, http)
        await first.start()
        assert len(await deliver_all(first)) == len(MAPPABLE)
        await first.stop()
        second = source(store, http)
        await second.start()
        assert await deliver_all(second) == []


async def test_a_poll_serialises_what_changed_not_the_whole_cursor_per_item(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """50 feeds remembering 500 keys each; one lists 1,000 new items, the others answer
    304. The JSON written in two polls: the cursor once, then the changed feed's part per
    batch of new items. (Was: the whole cursor for every item, 1,000 times its size.)"""
    urls = [f"https://f{i}.example/feed.xml" for i in range(50)]
    remembered = [f"{j:032x}" for j in range(500)]
    cursor = json.dumps({u: {"etag": '"e"', "modified": None, "seen": remembered} for u in urls})
    written = 0

    def dumps(value: object, **kw: Any) -> str:
        nonlocal written
        out = json.dumps(value, **kw)
        written += len(out)
        return out

    monkeypatch.setattr(feeds, "json", SimpleNamespace(dumps=dumps, loads=json.loads))
    big = rss_feed([(f"g{i}", T0) for i in range(1000)])

    def handler(request: httpx.Request) -> httpx.Response:
        first = request.headers.get("if-none-match") == '"e"'
        if str(request.url) == urls[-1] and first:
            return httpx.Response(200, content=big, headers={"etag": '"e2"'})
        return httpx.Response(304)

    config = FeedsConfig(feeds=[{"url": u} for u in urls], poll_seconds=60)
    got = 0
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        rss = FeedsSource(config, http, EndingClock(polls=2), MemoryCursorStore())
        with pytest.raises(EndOfTest):
            async for mention, _ in rss.stream(cursor):
                got += mention is not None
    assert got == 1000
    part = len(
        json.dumps({"etag": '"e2"', "modified": None, "seen": remembered + ["k" * 32] * 1000})
    )
    assert written <= len(cursor) + (1000 // CHECKPOINT_ITEMS + 2) * part
