"""Hostile mention texts (attacker-controlled, 40,000+ characters) must not stall the
listener: the camel-case tag scan and the prefold's loose-mark check were quadratic."""

from __future__ import annotations

import time

import pytest

from listener.config import WatchConfig
from listener.query import Prefold
from listener.query.fold import camel_cuts
from listener.watches import WatchMatcher

LIMIT_S = 3.0
"""Not a timing goal but a guard against quadratic time: with these sizes each took 7 s
to 20 s and more before the fix (1.7 s to 70 s at half of them), 5-60 ms after; the
margin keeps a loaded CI box from failing it."""


def _timed(call: object, *args: object) -> tuple[object, float]:
    start = time.thread_time()  # this thread's CPU: other jobs on a loaded box do not count
    result = call(*args)  # type: ignore[operator]
    return result, time.thread_time() - start


@pytest.mark.parametrize(
    "text",
    [
        "#a_" * 26_000 + " acme",  # ASCII: the lazy tag regex read each run from every sign
        "#é_" * 26_000 + " acme",  # non-ASCII: a run without a capital was read per sign
        "＃ａ_" * 26_000 + " acme",
        "#A😀" * 26_000,  # the scan stops at the emoji, the run does not
    ],
    ids=["ascii", "accented", "full-width", "emoji"],
)
def test_camel_cuts_is_linear_in_a_run_of_many_signs(text: str) -> None:
    camel_cuts("#AcmeRefund é")  # build the tables first
    cuts, elapsed = _timed(camel_cuts, text)
    assert cuts == []
    assert elapsed < LIMIT_S, elapsed


def test_matching_a_hostile_tag_run_with_near_is_fast() -> None:
    matcher = WatchMatcher([WatchConfig(id="w", query="acme NEAR/3 refund")])
    matcher.match("#AcmeRefund é")
    found, elapsed = _timed(matcher.match, "#é_" * 26_000 + " acme refund")
    assert [m.id for m in found] == ["w"]  # type: ignore[attr-defined]
    assert elapsed < LIMIT_S, elapsed


def test_prefold_skips_a_long_run_of_marks_after_a_symbol_at_once() -> None:
    prefold = Prefold(set("acme"))
    text = "•" + "\u0301" * 20_000 + " ACME"  # a kaomoji's accent, repeated
    low, elapsed = _timed(prefold, text)
    assert low == text.lower()  # fold keeps marks after a symbol: the fast path
    assert elapsed < LIMIT_S, elapsed
    # a mark after a letter still takes the full fold
    assert prefold("•" + "\u0301" * 100 + " Ac\u0301me") == "•" + "\u0301" * 100 + " acme"
