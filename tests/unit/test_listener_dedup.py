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
