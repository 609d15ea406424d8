"""bench/detection_margin.py: the spread-3 scores of a subset of stories, and the share of
bootstrap resamples that meet each goal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from api.bench import Truth
from bench.detection_margin import Calls, margin, parse_set

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def truth(root: str, tier: int, t50: float = 60.0) -> Truth:
    return Truth(root, T0, 1000 if tier == 3 else 10, 5.0, t50, tier)


def test_scores_count_calls_against_tier_3_and_the_lead_before_t50() -> None:
    stories = {
        "a": truth("a", 3),  # called 30 min before T50
        "b": truth("b", 3),  # called 10 min before T50
        "c": truth("c", 3),  # missed
        "d": truth("d", 1),  # a false call
        "e": truth("e", 2),  # rightly not called
    }
    calls = Calls(
        stories, {"a": T0 + timedelta(minutes=30), "b": T0 + timedelta(minutes=50), "d": T0}
    )
    s = calls.scores(np.arange(5))
    # tp 2, fp 1, fn 1: F1 = 4 / 6
    assert s["f1"] == pytest.approx(2 / 3)
    assert s["false_per_100"] == pytest.approx(20.0)
    assert s["lead_median"] == pytest.approx(20.0)
    # a resample counts a story as often as it is drawn
    twice_a = calls.scores(np.array([0, 0, 3]))
    assert twice_a["f1"] == pytest.approx(4 / 5) and twice_a["lead_median"] == 30.0


def test_margin_shares_follow_the_goals() -> None:
    stories = {f"s{i}": truth(f"s{i}", 3 if i < 10 else 1) for i in range(100)}
    early = {f"s{i}": T0 for i in range(10)}  # every tier-3 story called 60 min before T50
    calls = Calls(stories, early)
    easy = margin(calls, {"f1": 0.6, "false": 3.0, "lead": 20.0}, resamples=200, seed=1)
    assert easy["all_stories"] == {"f1": 1.0, "false_per_100": 0.0, "lead_median": 60.0}
    assert easy["bootstrap"]["share_met"]["all"] == 1.0
    hard = margin(calls, {"f1": 0.6, "false": 3.0, "lead": 61.0}, resamples=200, seed=1)
    assert hard["bootstrap"]["share_met"] == {
        "f1": 1.0,
        "false_calls": 1.0,
        "lead": 0.0,
        "all": 0.0,
    }
    assert len(easy["sha256_halves"]) == 2


def test_set_values_are_read_as_yaml_and_a_bare_key_is_refused() -> None:
    assert parse_set(["spread3_predicted_size=1100", "level_predictor=power_law"]) == {
        "spread3_predicted_size": 1100,
        "level_predictor": "power_law",
    }
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        parse_set(["spread3_predicted_size"])
