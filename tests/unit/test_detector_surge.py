"""The watch-level surge (its own Signal kind) and the sensitivity presets."""

from __future__ import annotations

from datetime import timedelta

from core.events import ScoredMention
from sentiment.detector.config import DetectorConfig
from sentiment.detector.detector import Detector
from sentiment.detector.policy import spread_level
from tests.unit.test_detector import T0, by_time, run, scored
from tests.unit.test_detector_policy import heat

COOL = 30.0


def independent(start: float, end: float, per_minute: float, tag: str) -> list[ScoredMention]:
    """Unrelated posts without text (each its own story) at a steady rate."""
    step = 1.0 / per_minute
    n = round((end - start) * per_minute)
    return [scored(f"{tag}{i}", start + i * step) for i in range(n)]


def test_a_short_flurry_is_not_a_surge() -> None:
    detector = Detector(DetectorConfig(downgrade_cooldown_minutes=COOL))
    stream = by_time(independent(0, 120, 1.0, "u"), independent(120, 125, 30.0, "w"))
    assert not [s for s in run(detector, stream) if s.kind == "surge"]


def test_many_stories_at_once_are_a_surge_that_ends_after_the_cooldown() -> None:
    detector = Detector(DetectorConfig(downgrade_cooldown_minutes=COOL))
    usual = independent(0, 120, 1.0, "u")  # two hours at one a minute
    wave = independent(120, 155, 30.0, "w")  # 35 minutes at 30 a minute, all separate
    after = independent(155, 240, 1.0, "a")
    signals = run(detector, by_time(usual, wave, after))
    surges = [s for s in signals if s.kind == "surge"]
    assert [s.tier for s in surges] == [1, 0]
    start, end = surges
    assert start.story_id == "acme:surge" and start.spread == 2
    assert start.explanation.startswith("Brand-wide surge:")
    # two consecutive hot 15-minute windows: early in the second one
    assert start.at - start.at.replace(minute=0) <= timedelta(minutes=20)
    assert end.at - start.at >= timedelta(minutes=COOL)
    assert all(s.kind == "story" for s in signals if s not in surges)


def test_a_surge_of_one_dominant_story_is_that_story_not_a_surge() -> None:
    detector = Detector(DetectorConfig(downgrade_cooldown_minutes=COOL))
    usual = independent(0, 120, 1.0, "u")
    root = [scored("root", 119.5, text="something happened at the acme store today")]
    reposts = [
        scored(f"r{i}", 120 + i / 30, repost_of="x:root", author=f"fan{i}") for i in range(1050)
    ]
    signals = run(detector, by_time(usual, root, reposts))
    assert not [s for s in signals if s.kind == "surge"]
    assert max(s.spread for s in signals if s.story_root == "x:root") >= 2


def test_a_late_mention_does_not_turn_one_dominant_story_into_a_surge() -> None:
    """A mention of the previous 15-minute window arriving minutes late (a source's late
    window, another scorer) overwrote the current window's largest story: "spread over
    many stories (the largest holds 0%)", a false brand-wide surge."""
    usual = independent(0, 120, 1.0, "u")
    root = [scored("root", 119.5, text="something happened at the acme store today")]
    reposts = [
        scored(f"r{i}", 120 + i / 100, repost_of="x:root", author=f"fan{i}") for i in range(3000)
    ]
    stream = by_time(usual, root, reposts)
    cut = next(
        i for i, m in enumerate(stream) if m.mention.created_at >= T0 + timedelta(minutes=139.5)
    )
    late = [scored("late", 134.9), scored("other", 135.2)]  # dated 134.9, arrives at 139.5
    signals = run(Detector(DetectorConfig()), stream[:cut] + late + stream[cut:])
    assert not [s for s in signals if s.kind == "surge"]
    assert max(s.spread for s in signals if s.story_root == "x:root") == 3


def test_the_surge_can_be_turned_off() -> None:
    detector = Detector(DetectorConfig(surge_enabled=False))
    stream = by_time(independent(0, 120, 1.0, "u"), independent(120, 155, 30.0, "w"))
    assert not [s for s in run(detector, stream) if s.kind == "surge"]


def test_sensitivity_presets_move_the_thresholds() -> None:
    balanced = DetectorConfig()
    fewer = DetectorConfig(sensitivity="fewer").effective()
    more = DetectorConfig(sensitivity="more").effective()
    assert balanced.effective() is balanced
    assert more.spread3_authors < balanced.spread3_authors < fewer.spread3_authors
    assert more.negative_share < balanced.negative_share < fewer.negative_share
    assert more.burst_alpha > balanced.burst_alpha > fewer.burst_alpha
    assert fewer.spread3_authors >= fewer.spread2_authors
    n = balanced.spread3_authors
    story = heat(
        mentions=n,
        authors=n,
        short_mentions=balanced.spread3_short_mentions,
        long_mentions=balanced.spread3_short_mentions,
    )
    assert spread_level(story, balanced) == 3
    assert spread_level(story, more) == 3
    assert spread_level(story, fewer) == 2
    # the detector decides with the preset's thresholds
    assert (
        Detector(DetectorConfig(sensitivity="more")).config.spread3_authors == more.spread3_authors
    )
