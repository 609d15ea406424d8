"""A mention dated far ahead of its watch's stream (a bad timestamp in a replayed file or a
webhook batch) must not move the watch's event time by itself: the stories after it keep
their forecasts and levels. A quiet spell (the next mentions are as far ahead) still moves
it, with the same decisions as before; so does wall time (``received_at``) passing as much."""

from __future__ import annotations

import base64
import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from core.events import ScoredMention, Signal
from sentiment.detector.config import DetectorConfig
from sentiment.detector.detector import Detector
from sentiment.detector.snapshot import READABLE_FORMATS, STATE_FORMAT, WatchSnapshot
from tests.unit.test_detector import COMPLAINT, T0, WATCH, by_time, chatter, complaint

AGES = [10.0, 30.0, 60.0]
KEY = (WATCH.id, False)


def reporting(**extra: object) -> DetectorConfig:
    return DetectorConfig.model_validate({"forecast_report_minutes": AGES, **extra})


def replayed(stream: list[ScoredMention]) -> list[ScoredMention]:
    """``stream`` as a replay delivers it: received within milliseconds of each other,
    whatever the event time (the listener stamps ``received_at`` as it reads)."""
    return [
        item.model_copy(
            update={
                "mention": item.mention.model_copy(
                    update={"received_at": T0 + timedelta(milliseconds=i)}
                )
            }
        )
        for i, item in enumerate(stream)
    ]


def dated(item: ScoredMention, ahead: timedelta) -> ScoredMention:
    """``item`` with a bad ``created_at``: ``ahead`` later than it was (received as it was)."""
    mention = item.mention.model_copy(update={"created_at": item.mention.created_at + ahead})
    return item.model_copy(update={"mention": mention})


def run(detector: Detector, stream: list[ScoredMention]) -> list[Signal]:
    return [s for item in stream for s in detector.observe(item)]


def run_all(detector: Detector, stream: list[ScoredMention]) -> list[Signal]:
    """Every Signal, those of mentions held back at the end of the input included."""
    signals = [s for item in stream for s in detector.observe(item)]
    for key in detector.holding():
        signals.extend(detector.settle(key))
    return signals


def forecasts(signals: list[Signal]) -> list[tuple[str, float | None, str]]:
    return [
        (s.story_id, s.forecast_minutes, s.at.isoformat())
        for s in signals
        if s.forecast_minutes is not None
    ]


def levels(signals: list[Signal], story_id: str) -> list[tuple[str, int, int]]:
    return [
        (s.at.isoformat(), s.tier, s.spread)
        for s in signals
        if s.story_id == story_id and s.forecast_minutes is None
    ]


OTHER = "@acme the Acme blender I bought last week exploded in my kitchen, glass everywhere"


def complaint_about(text: str, start: float, root: str) -> list[ScoredMention]:
    """``complaint`` with another text (not a copy of the first: a story of its own)."""
    items = complaint(start, root=root)
    first = items[0].mention.model_copy(update={"text": text})
    return [items[0].model_copy(update={"mention": first}), *items[1:]]


def stream_with(outlier: timedelta | None) -> tuple[list[ScoredMention], str]:
    """Chatter over 5 hours, a complaint at minute 60 and another at 150; the chatter post
    nearest minute 100 dated ``outlier`` ahead (None: as it was). Its id too."""
    items = by_time(
        chatter(0, 300), complaint(60, root="first"), complaint_about(OTHER, 150, "late")
    )
    i = min(
        (i for i, s in enumerate(items) if s.mention.id.startswith("x:c")),
        key=lambda i: abs(items[i].mention.created_at - (T0 + timedelta(minutes=100))),
    )
    if outlier is not None:
        items[i] = dated(items[i], outlier)
    return items, items[i].mention.id


@pytest.mark.parametrize(
    "ahead", [timedelta(days=1), timedelta(days=365), timedelta(hours=3)], ids=str
)
@pytest.mark.parametrize("replay", [False, True], ids=["live", "replay"])
def test_one_far_future_mention_does_not_silence_the_stories_after_it(
    ahead: timedelta, replay: bool, caplog: pytest.LogCaptureFixture
) -> None:
    plain, _ = stream_with(None)
    bad, bad_id = stream_with(ahead)
    if replay:
        plain, bad = replayed(plain), replayed(bad)
    reference = run(Detector(reporting()), plain)
    assert {story for story, _, _ in forecasts(reference)} == {"acme:x:first", "acme:x:late"}
    assert max(s.tier for s in reference if s.story_id == "acme:x:late") == 3

    detector = Detector(reporting())
    with caplog.at_level(logging.WARNING, logger="sentiment.detector"):
        got = run(detector, bad)
    # the stories after it: every forecast at its age, the same levels at the same times
    assert forecasts(got) == forecasts(reference)
    for story in ("acme:x:first", "acme:x:late"):
        assert levels(got, story) == levels(reference, story)
    # the bad mention is counted (a story of its own), at the stream's time, and said so
    assert detector.story_of(WATCH.id, bad_id) is not None
    assert detector.future_dated == 1
    warned = [r.getMessage() for r in caplog.records if bad_id in r.getMessage()]
    assert len(warned) == 1 and "ahead" in warned[0]
    # event time is the stream's, not the bad mention's
    decision = detector.evaluate(WATCH.id, "acme:x:late")
    assert decision is not None and decision.heat.mentions > 300


def test_the_bad_mention_counts_as_at_the_streams_time() -> None:
    """What the detector makes of it is what a mention dated when it came would give."""
    bad, bad_id = stream_with(timedelta(days=1))
    i = next(i for i, s in enumerate(bad) if s.mention.id == bad_id)
    clock = max(s.mention.created_at for s in bad[:i])
    fixed = list(bad)
    fixed[i] = dated(bad[i], clock - bad[i].mention.created_at)
    signals = run(Detector(reporting()), bad)
    expected = run(Detector(reporting()), fixed)
    assert [s.model_dump() for s in signals] == [s.model_dump() for s in expected]


def quiet_spells() -> list[ScoredMention]:
    """Three bursts of activity a day, then a year, apart: each a complaint in chatter."""
    out: list[ScoredMention] = []
    for n, start in enumerate((0.0, 24 * 60.0, 366 * 24 * 60.0)):
        text = (
            COMPLAINT,
            OTHER,
            "@acme your Acme scooter's brakes failed on a hill, I was injured",
        )[n]
        out += by_time(
            chatter(start, start + 200, seed=n), complaint_about(text, start + 40, f"r{n}")
        )
    return out


@pytest.mark.parametrize("replay", [False, True], ids=["live", "replay"])
def test_quiet_spells_give_the_decisions_they_gave_before(replay: bool) -> None:
    """The next mention after a quiet spell is as far ahead as the first: event time moves
    on, with every Signal as without the check (those of the first after it come with
    the next mention in a replay, whose wall time hardly moves)."""
    stream = quiet_spells()
    if replay:
        stream = replayed(stream)
    unchecked = Detector(reporting(future_tolerance_minutes=None))
    reference = run(unchecked, stream)
    detector = Detector(reporting())
    got = run_all(detector, stream)
    assert [s.model_dump() for s in got] == [s.model_dump() for s in reference]
    assert {story for story, _, _ in forecasts(got)} == {"acme:x:r0", "acme:x:r1", "acme:x:r2"}
    assert detector.future_dated == 0


def test_wall_time_passing_as_much_moves_event_time_at_once() -> None:
    """Live (``received_at`` as far apart as ``created_at``): nothing is held back, so the
    first mention after a quiet day sends its Signals at once (the cool-down sweep)."""
    stream = quiet_spells()
    unchecked = Detector(reporting(future_tolerance_minutes=None))
    detector = Detector(reporting())
    for item in stream:
        assert detector.observe(item) == unchecked.observe(item)
        assert detector.holding() == []


def test_a_held_mention_redelivered_is_counted_once() -> None:
    stream = replayed(quiet_spells())
    gap = next(
        i
        for i in range(1, len(stream))
        if stream[i].mention.created_at - stream[i - 1].mention.created_at > timedelta(hours=2)
    )
    detector = Detector(reporting())
    for item in stream[:gap]:
        detector.observe(item)
    assert detector.observe(stream[gap]) == [] and detector.holding() == [KEY]
    assert detector.observe(stream[gap]) == []  # again (the bus redelivers)
    assert detector.observe(stream[gap - 1]) == []  # an old one again: it tells nothing
    assert detector.holding() == [KEY]
    detector.observe(stream[gap + 1])
    assert detector.holding() == []
    assert detector.story_of(WATCH.id, stream[gap].mention.id) is not None
    assert detector.future_dated == 0


def test_a_held_mention_is_saved_with_its_watch() -> None:
    stream = replayed(quiet_spells())
    whole = run_all(Detector(reporting()), stream)
    gap = next(
        i
        for i in range(1, len(stream))
        if stream[i].mention.created_at - stream[i - 1].mention.created_at > timedelta(hours=2)
    )
    first = Detector(reporting())
    got = run(first, stream[: gap + 1])
    assert first.holding() == [KEY]
    second = Detector(reporting())
    second.restore(KEY, first.snapshot(KEY))
    assert second.holding() == [KEY]
    got += run_all(second, stream[gap + 1 :])
    assert [s.model_dump() for s in got] == [s.model_dump() for s in whole]


FORMAT_7 = Path(__file__).parents[1] / "data" / "detector-state-format7.json"


@pytest.mark.parametrize("outlier", [False, True], ids=["as-is", "with-a-bad-date"])
def test_a_snapshot_of_format_7_is_still_read(outlier: bool) -> None:
    """A real format-7 snapshot (written before watches held mentions back: no ``held``
    nor ``clock_received``; ``tests/data/detector-state-format7.json``, watch acme after
    ``stream[:cut]`` of ``by_time(chatter(60, 200), complaint(100))``) is restored, and
    the rest of the stream gives the Signals an uninterrupted run gives; a mention dated
    a day ahead right after the restore is counted at the watch's event time."""
    saved = json.loads(FORMAT_7.read_text())
    assert saved["format"] == 7 and 7 in READABLE_FORMATS and STATE_FORMAT == 9
    stream = by_time(chatter(60, 200), complaint(100))
    cut = saved["cut"]
    reference = run(Detector(DetectorConfig()), stream)
    detector = Detector(DetectorConfig())
    detector.restore(
        KEY,
        WatchSnapshot(
            base64.b64decode(saved["watch"]),
            {sid: base64.b64decode(blob) for sid, blob in saved["stories"].items()},
        ),
    )
    rest = stream[cut:]
    if outlier:
        rest = [dated(rest[0], timedelta(days=1)), *rest[1:]]
    got = run(detector, rest)
    assert [(s.id, s.at, s.tier, s.spread) for s in got] == [
        (s.id, s.at, s.tier, s.spread) for s in reference[saved["signals"] :]
    ]
    assert max(s.tier for s in got) == 3
    assert detector.future_dated == (1 if outlier else 0)


def arrived(item: ScoredMention, received: timedelta) -> ScoredMention:
    """``item`` received ``received`` after T0 (wall time), dated as it was."""
    mention = item.mention.model_copy(update={"received_at": T0 + received})
    return item.model_copy(update={"mention": mention})


def test_a_live_post_is_not_held_behind_a_source_that_lags() -> None:
    """The watch's event time came from a feed that delivers posts hours late (RSS, Google
    Alerts); a post dated when it arrived, hours ahead of that, is live, not a bad date:
    taken in at once at its own time, not held until the next late feed item and then
    re-dated hours back."""
    late = [arrived(item, timedelta(hours=3, seconds=i)) for i, item in enumerate(chatter(0, 60))]
    fresh = arrived(dated(late[-1], timedelta(hours=3)), timedelta(hours=3, minutes=2))
    fresh = fresh.model_copy(
        update={"mention": fresh.mention.model_copy(update={"id": "x:fresh", "text": OTHER})}
    )
    detector = Detector(reporting())
    run(detector, late)
    detector.observe(fresh)
    assert detector.holding() == []
    detector.observe(arrived(dated(late[-1], timedelta(minutes=1)), timedelta(hours=3, minutes=3)))
    assert detector.future_dated == 0
    assert detector.story_of(WATCH.id, "x:fresh") is not None
