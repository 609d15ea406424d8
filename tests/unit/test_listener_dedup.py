"""Bounded dedup and the cascade index."""

from __future__ import annotations

import pytest

from core.events import WatchMatch
from listener.cascade import CascadeIndex
from listener.dedup import Deduplicator


def test_seen_marks_and_reports() -> None:
    d = Deduplicator(10)
    assert d.seen("x:1") is False
    assert d.seen("x:1") is True
    assert d.seen("x:2") is False


def test_capacity_bounds_memory_and_forgets_the_least_recently_seen() -> None:
    d = Deduplicator(3)
    for i in range(3):
        d.seen(f"x:{i}")
    d.seen("x:0")  # refresh: x:1 is now the oldest
    d.seen("x:3")
    assert len(d) == 3
    assert "x:1" not in d
    assert "x:0" in d
    assert d.seen("x:1") is False  # forgotten, so accepted again


def test_forget_lets_an_id_through_again() -> None:
    d = Deduplicator()
    d.seen("x:1")
    d.forget("x:1")
    d.forget("x:never")
    assert d.seen("x:1") is False


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Deduplicator(0)


def test_cascade_index_is_bounded_and_keeps_active_cascades() -> None:
    c = CascadeIndex(2)
    a = WatchMatch(id="a", terms=("acme",))
    c.remember("x:1", [a])
    c.remember("x:2", [a])
    c.remember("x:none", [])  # unmatched mentions are not remembered
    assert c.watches_of("x:1") == {"a": a}  # refreshes x:1
    c.remember("x:3", [a])
    assert c.watches_of("x:2") == {}
    assert c.watches_of("x:1") == {"a": a}
    assert c.watches_of(None) == {}
    assert len(c) == 2


def test_memory_per_remembered_id_does_not_grow_with_the_id() -> None:
    """The ids themselves were kept: a 500-character id (an RSS item keyed by its long
    link, a webhook sender's) cost ~620 bytes, a CJK one ~1,100, not the documented ~180:
    several GB at the default capacity of one million."""
    import tracemalloc

    d = Deduplicator(10_000)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i in range(5_000):
            d.seen(f"custom:{i:0500d}")
            d.seen(f"weibo:{i}{'中' * 500}")
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(d) == 10_000
    assert (after - before) / len(d) < 200
    assert d.seen("weibo:7" + "中" * 500) is True and d.seen("weibo:7" + "中" * 499) is False


async def test_in_flight_keys_make_a_second_claim_wait_for_the_first_to_end() -> None:
    import asyncio

    from listener.dedup import InFlight

    held = InFlight()
    order: list[str] = []
    release = asyncio.Event()

    async def first() -> None:
        async with held.claim(["x:1", "x:2"]):
            order.append("first in")
            await release.wait()
            raise ConnectionError("publication failed")  # released on failure too

    async def second() -> None:
        async with held.claim(["x:2", "x:3"]):
            order.append("second in")

    one = asyncio.create_task(first())
    while not held.holds(["x:1"]):
        await asyncio.sleep(0)
    two = asyncio.create_task(second())
    while not held.waiting:
        await asyncio.sleep(0)
    async with held.claim(["x:3", "x:4"]):  # no key in common: not held up
        order.append("third in")
    release.set()
    with pytest.raises(ConnectionError):
        await one
    await two
    assert order == ["first in", "third in", "second in"]
    assert len(held) == 0 and held.waiting == 0
