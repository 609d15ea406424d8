"""Forecast reports (``detector.forecast_report_minutes``): a Signal with a story's forecast
at fixed ages after its first mention, its levels unchanged; only reported stories unless
``forecast_report_quiet``; none without a forecast; planned again after a restore."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from core.events import ScoredMention, Signal
from sentiment.detector.config import DetectorConfig
from sentiment.detector.detector import REPORT_AHEAD, Detector
from tests.unit.test_detector import COMPLAINT, T0, WATCH, by_time, chatter, complaint, run, scored

AGES = [5.0, 15.0, 30.0, 60.0]
FORECAST_AGES = AGES[1:]  # at 5 minutes the complaint has 4 mentions: no forecast yet


def reporting(**extra: object) -> DetectorConfig:
    return DetectorConfig.model_validate({"forecast_report_minutes": AGES, **extra})


def stream() -> list[ScoredMention]:
    # the complaint starts at minute 120; chatter goes on past its 60-minute age
    return by_time(chatter(0, 240), complaint(120))


def test_a_reported_story_gets_its_forecast_at_each_age() -> None:
    items = stream()
    signals = run(Detector(reporting()), items)
    forecasts = [s for s in signals if s.forecast_minutes is not None]
    start = T0 + timedelta(minutes=120)
    assert [(s.story_id, s.forecast_minutes) for s in forecasts] == [
        ("acme:x:root", age) for age in FORECAST_AGES
    ]
    assert [s.at for s in forecasts] == [
        start + timedelta(minutes=age) - REPORT_AHEAD for age in FORECAST_AGES
    ]
    # the levels are those last reported: tier and spread unchanged, no escalation
    for forecast in forecasts:
        before = [
            s
            for s in signals[: signals.index(forecast)]
            if s.story_id == forecast.story_id and s.forecast_minutes is None
        ]
        assert (forecast.tier, forecast.spread) == (before[-1].tier, before[-1].spread)
        assert forecast.previous_tier == forecast.tier
        assert forecast.explanation.startswith(f"Forecast at {forecast.forecast_minutes:g} min: ")
        assert forecast.heat.predicted_size is not None
        assert forecast.evidence and forecast.watch == WATCH
    # the forecast is the one the story has at that age (read without reports)
    plain = Detector(DetectorConfig())
    due = iter(forecasts)
    expect = next(due)
    for item in items:
        while expect is not None and item.mention.created_at > expect.at:
            decision = plain.evaluate(WATCH.id, "acme:x:root", at=expect.at + REPORT_AHEAD)
            assert decision is not None
            # (a Signal's heat rounds to 0.1)
            assert decision.heat.predicted_size == pytest.approx(
                expect.heat.predicted_size, abs=0.051
            )
            expect = next(due, None)
        plain.observe(item)
    assert expect is None
    # the level changes are the same as without reports (only their numbers move on)
    changes = [(s.at, s.tier, s.spread) for s in signals if s.forecast_minutes is None]
    assert changes == [(s.at, s.tier, s.spread) for s in run(Detector(DetectorConfig()), items)]
    ids = [s.id for s in signals if s.story_id == "acme:x:root"]
    assert ids == [f"acme:x:root#{n}" for n in range(1, len(ids) + 1)]


def test_no_reports_unless_configured() -> None:
    signals = run(Detector(DetectorConfig()), stream())
    assert signals and all(s.forecast_minutes is None for s in signals)


def quiet_stories(signals: list[Signal]) -> set[str]:
    return {s.story_id for s in signals if s.forecast_minutes is not None and s.tier == 0}


def test_quiet_stories_are_reported_only_when_asked() -> None:
    # every chatter post is a one-mention story with a forecast (predict_min_mentions 1)
    items = by_time(chatter(0, 240))
    assert quiet_stories(run(Detector(reporting(predict_min_mentions=1)), items)) == set()
    asked = run(Detector(reporting(predict_min_mentions=1, forecast_report_quiet=True)), items)
    assert len(quiet_stories(asked)) > 50
    assert all(s.spread == 0 for s in asked), "forecasts never raise a level"
    # no forecast, no report: one-mention stories are below predict_min_mentions (10)
    assert run(Detector(reporting(forecast_report_quiet=True)), items) == []


def test_a_restored_watch_sends_the_reports_still_due() -> None:
    items = stream()
    whole = run(Detector(reporting()), items)
    cut = next(i for i, s in enumerate(items) if s.mention.created_at > T0 + timedelta(minutes=135))
    first = Detector(reporting())
    got = run(first, items[:cut])
    key = Detector.key_of(items[0])
    second = Detector(reporting())
    second.restore(key, first.snapshot(key))
    got += run(second, items[cut:])
    assert [(s.id, s.at, s.forecast_minutes) for s in got] == [
        (s.id, s.at, s.forecast_minutes) for s in whole
    ]
    assert sum(s.forecast_minutes is not None for s in got) == len(FORECAST_AGES)


@pytest.mark.parametrize(
    "ages",
    [[30.0, 10.0], [10.0, 10.0], [0.0], [-5.0], [20_000.0], [float(n) for n in range(1, 26)]],
)
def test_bad_report_ages_are_refused(ages: list[float]) -> None:
    with pytest.raises(ValidationError, match="forecast_report_minutes"):
        DetectorConfig.model_validate({"forecast_report_minutes": ages})


def late_root() -> list[ScoredMention]:
    """Replies from minute 6 on arrive before their root (created at minute 0): the
    story's first mention moves 6 minutes earlier when the root comes."""
    replies = [
        scored(
            f"r{i}",
            6 + i * 0.05,
            text="@acme same, refund now",
            label="negative",
            reply_to="x:root",
        )
        for i in range(60)
    ]
    root = scored("root", 0, text=COMPLAINT, label="negative", followers=2_000)
    later = [scored(f"p{i}", 9 + i * 0.5, repost_of="x:root") for i in range(200)]
    arrived = by_time(replies, chatter(0, 150, seed=5))
    cut = next(
        i for i, s in enumerate(arrived) if s.mention.created_at >= T0 + timedelta(minutes=8.5)
    )
    return [*arrived[:cut], root, *by_time(arrived[cut:], later)]


def test_reports_follow_a_first_mention_that_moves_and_survive_a_restore() -> None:
    items = late_root()
    config = reporting()
    whole = run(Detector(config), items)
    forecasts = [s for s in whole if s.forecast_minutes is not None]
    # at the root's ages; 5 minutes had passed when the root came: not sent, never late
    assert [(s.story_root, s.forecast_minutes, s.at) for s in forecasts] == [
        ("x:root", age, T0 + timedelta(minutes=age) - REPORT_AHEAD) for age in (15.0, 30.0, 60.0)
    ]
    # a restore after the move sends the same Signals, numbered the same
    cut = next(
        i
        for i, s in enumerate(items)
        if s.mention.created_at >= T0 + timedelta(minutes=12) and s.mention.id != "x:root"
    )
    first = Detector(config)
    got = run(first, items[:cut])
    key = Detector.key_of(items[0])
    second = Detector(config)
    second.restore(key, first.snapshot(key))
    got += run(second, items[cut:])
    assert [(s.id, s.at, s.forecast_minutes) for s in got] == [
        (s.id, s.at, s.forecast_minutes) for s in whole
    ]


def test_a_story_that_comes_back_gets_the_reports_of_its_new_life_only() -> None:
    # max_stories 1: the complaint is forgotten when a chatter post starts another story
    # and comes back with its next repost; the reports of its first life are dropped
    config = reporting(max_stories=1, forecast_report_quiet=True, predict_min_mentions=1)
    items = by_time(
        [scored("root", 0, text=COMPLAINT, label="negative")],
        [scored("other", 2, text="acme coffee morning train weather music")],
        [scored(f"p{i}", 3 + i, repost_of="x:root") for i in range(80)],
    )
    signals = run(Detector(config), items)
    reported = [(s.story_id, s.forecast_minutes) for s in signals if s.forecast_minutes]
    assert len(reported) == len(set(reported)), "one report per story and age"
    plain = [
        (s.at, s.tier, s.spread)
        for s in run(
            Detector(DetectorConfig.model_validate({"max_stories": 1, "predict_min_mentions": 1})),
            items,
        )
    ]
    assert [(s.at, s.tier, s.spread) for s in signals if s.forecast_minutes is None] == plain
    for s in signals:
        if s.forecast_minutes is not None:
            assert s.at <= max(i.mention.created_at for i in items)
