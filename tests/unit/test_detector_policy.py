"""The tier policy: spread levels, crisis tiers, hysteresis, explanations (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from sentiment.detector.config import DetectorConfig
from sentiment.detector.heat import HeatSnapshot
from sentiment.detector.policy import (
    Held,
    crisis_tier,
    explain,
    format_count,
    hold,
    spread_level,
)

CFG = DetectorConfig()
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
COOL = timedelta(minutes=30)


def heat(**changes: object) -> HeatSnapshot:
    base = HeatSnapshot(
        mentions=1,
        short_mentions=1,
        short_minutes=10,
        long_mentions=1,
        long_minutes=60,
        authors=1,
        reach=0,
        negative_mentions=0,
        negative_share=0.0,
        platforms=1,
        age_minutes=0.0,
        rate_per_minute=1.0,
        rate_ratio=None,
        predicted_size=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# --- spread levels ----------------------------------------------------------------------


def test_a_lone_post_is_level_0() -> None:
    assert spread_level(heat(), CFG) == 0
    # many mentions by one author are still one voice
    assert spread_level(heat(mentions=5, short_mentions=5, long_mentions=5), CFG) == 0


def test_a_few_mentions_from_a_few_authors_is_level_1() -> None:
    assert spread_level(heat(mentions=3, authors=2), CFG) == 1
    assert spread_level(heat(mentions=2, authors=2), CFG) == 0


def test_one_post_with_a_wide_reach_is_level_1_or_2() -> None:
    assert spread_level(heat(reach=CFG.spread1_reach), CFG) == 1
    assert spread_level(heat(reach=CFG.spread2_reach), CFG) == 2


def test_growing_beyond_the_first_authors_is_level_2() -> None:
    assert spread_level(heat(mentions=12, authors=CFG.spread2_authors), CFG) == 2
    assert spread_level(heat(mentions=12, authors=CFG.spread2_authors - 1), CFG) == 1


def test_a_story_far_above_the_usual_rate_is_level_2() -> None:
    fast = heat(mentions=6, authors=3, short_mentions=6, rate_ratio=CFG.spread2_rate_ratio)
    assert spread_level(fast, CFG) == 2
    assert spread_level(replace(fast, rate_ratio=None), CFG) == 1
    assert spread_level(replace(fast, short_mentions=CFG.spread2_rate_min_mentions - 1), CFG) == 1


def many(**changes: object) -> HeatSnapshot:
    base: dict[str, object] = {
        "mentions": 400,
        "authors": 350,
        "short_mentions": 50,
        "long_mentions": 100,
    }
    return heat(**(base | changes))


def test_many_mentions_fast_from_many_authors_is_level_3() -> None:
    assert spread_level(many(), CFG) == 2
    assert spread_level(many(short_mentions=CFG.spread3_short_mentions), CFG) == 3
    assert spread_level(many(long_mentions=CFG.spread3_long_mentions), CFG) == 3


def test_a_large_projected_size_is_level_3_while_the_story_is_hot() -> None:
    assert CFG.spread3_predicted_size is not None
    big = many(predicted_size=CFG.spread3_predicted_size)
    assert spread_level(big, CFG) == 3
    cooled = replace(big, long_mentions=CFG.spread3_min_long_mentions - 1, short_mentions=0)
    assert spread_level(cooled, CFG) == 2
    off = DetectorConfig(spread3_predicted_size=None)
    assert spread_level(big, off) == 2


def test_level_3_needs_many_authors() -> None:
    few = heat(mentions=400, authors=CFG.spread3_authors - 1, short_mentions=400, long_mentions=400)
    assert spread_level(few, CFG) == 2


def test_local_spread_on_several_platforms_is_level_3() -> None:
    n = CFG.spread3_authors
    local = heat(mentions=n, authors=n, platforms=CFG.spread3_platforms)
    assert spread_level(local, CFG) == 3
    assert spread_level(replace(local, platforms=CFG.spread3_platforms - 1), CFG) == 2
    # local spread on several platforms from a handful of authors is not yet network-wide
    assert spread_level(replace(local, mentions=12, authors=12), CFG) == 2
    # several platforms alone, without local spread, is not network-wide
    assert spread_level(heat(mentions=3, authors=3, platforms=3), CFG) == 1


# --- crisis tiers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spread", "share", "cue", "tier"),
    [
        (0, 0.0, False, 0),
        (0, 1.0, False, 0),  # a lone grumble
        (0, 1.0, True, 1),  # a lone complaint
        (1, 0.9, False, 1),
        (2, 0.9, False, 2),
        (3, 0.9, False, 3),
        (3, 0.9, True, 3),
        (3, 0.1, True, 0),  # not negative: no tier, whatever the spread and the cues
        (2, 0.39, False, 0),
        (2, 0.4, False, 2),
    ],
)
def test_crisis_tier(spread: int, share: float, cue: bool, tier: int) -> None:
    assert crisis_tier(spread, share, cue, CFG) == tier


def test_crisis_tier_refuses_a_spread_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"0\.\.3"):
        crisis_tier(4, 1.0, False, CFG)


# --- hysteresis -------------------------------------------------------------------------


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_hold_raises_at_once() -> None:
    assert hold(Held(0), 3, at(0), COOL) == Held(3)
    assert hold(Held(1), 2, at(0), COOL).level == 2


def test_hold_lowers_only_after_the_cooldown() -> None:
    held = Held(3)
    held = hold(held, 1, at(0), COOL)
    assert held.level == 3
    held = hold(held, 1, at(29), COOL)
    assert held.level == 3
    held = hold(held, 1, at(30), COOL)
    assert held == Held(1)


def test_a_return_to_the_level_during_the_cooldown_restarts_it() -> None:
    held = hold(Held(3), 1, at(0), COOL)
    held = hold(held, 3, at(20), COOL)  # back up: the cool-down is void
    assert held == Held(3)
    held = hold(held, 1, at(25), COOL)
    held = hold(held, 1, at(50), COOL)
    assert held.level == 3
    assert hold(held, 1, at(55), COOL).level == 1


def test_hold_lowers_to_the_highest_level_seen_during_the_cooldown() -> None:
    held = hold(Held(3), 1, at(0), COOL)
    held = hold(held, 2, at(10), COOL)
    held = hold(held, 0, at(30), COOL)
    assert held.level == 2
    # the level seen now (0) starts a new cool-down towards it
    assert held.lower_since == at(30)
    assert hold(held, 0, at(59), COOL).level == 2
    assert hold(held, 0, at(60), COOL).level == 0


def test_hold_without_cooldown_follows_the_raw_level() -> None:
    assert hold(Held(3), 1, at(0), timedelta(0)) == Held(1)


# --- explanation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0"),
        (950, "950"),
        (1_000, "1 k"),
        (1_234, "1.2 k"),
        (123_456, "123 k"),
        (1_234_567, "1.2 M"),
        (2_000_000_000, "2 G"),
    ],
)
def test_format_count(n: int, text: str) -> None:
    assert format_count(n) == text


def test_explain_says_why_in_one_paragraph() -> None:
    text = explain(
        heat(
            mentions=230,
            short_mentions=41,
            long_mentions=120,
            authors=37,
            reach=1_234_567,
            negative_mentions=202,
            negative_share=0.88,
            platforms=3,
            rate_ratio=9.2,
            predicted_size=912.4,
            complaint_cues=("refund", "scam"),
        )
    )
    assert text == (
        "41 posts in the last 10 min (230 in all, 88% negative) from 37 authors, "
        "9.2\N{MULTIPLICATION SIGN} the usual rate; reach 1.2 M followers; projected 912 posts; "
        "spreading on 3 platforms; complaint cues: refund, scam."
    )


def test_explain_leaves_out_what_is_unknown_or_unremarkable() -> None:
    assert explain(heat()) == "1 post in the last 10 min from 1 author."
    text = explain(heat(mentions=5, short_mentions=0, authors=4, rate_ratio=1.0))
    assert text == "0 posts in the last 10 min (5 in all) from 4 authors."


def test_explain_names_high_reach_accounts_and_bursts() -> None:
    text = explain(heat(mentions=50, short_mentions=50, authors=45, high_reach_authors=2))
    assert "2 high-reach accounts involved" in text
    text = explain(heat(mentions=50, short_mentions=50, authors=45, burst_windows=(1, 5)))
    assert "bursting well above the usual volume (1 min, 5 min windows)" in text


def test_a_persistent_burst_is_local_spread() -> None:
    bursting = heat(mentions=8, short_mentions=8, authors=8, burst_windows=(5,))
    assert spread_level(bursting, CFG) == 2
    assert spread_level(replace(bursting, burst_windows=()), CFG) == 1
    assert spread_level(bursting, DetectorConfig(spread2_burst=False)) == 1
