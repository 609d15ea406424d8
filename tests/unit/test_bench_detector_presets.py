"""``bench/detector_presets.py``: the sensitivity presets move a brand's tier-2 alerts the
way their names say, on a generated stream of small stories (every story negative)."""

from __future__ import annotations

from bench.detector_presets import alerts, generated
from sentiment.detector.config import DetectorConfig


def test_fewer_alerts_is_fewer_and_more_is_more_on_small_stories() -> None:
    mentions = generated(seed=3, stories=120)
    got = {
        preset: alerts(mentions, DetectorConfig(sensitivity=preset))["tier2_alerts"]
        for preset in ("fewer", "balanced", "more")
    }
    assert 0 < got["fewer"] < got["balanced"] < got["more"], got
