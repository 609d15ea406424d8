"""Review of fec1a8f (mentions held back for being dated far ahead of their watch)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from sentiment.detector.detector import Detector
from tests.unit.test_detector_future import (
    KEY,
    quiet_spells,
    replayed,
    reporting,
    stream_with,
)


def test_a_late_mention_does_not_make_a_held_mention_a_bad_date(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A quiet spell in a replay (or a backfill) from two sources: the first mention after
    it is held; the next one is a late post of the other source, dated before the watch's
    event time. It says nothing about whether time moved on (it is older than the stream
    either way): the held mention must not be re-dated and reported as a bad timestamp."""
    stream = replayed(quiet_spells())
    gap = next(
        i
        for i in range(1, len(stream))
        if stream[i].mention.created_at - stream[i - 1].mention.created_at > timedelta(hours=2)
    )
    before = stream[gap - 1]
    late_mention = before.mention.model_copy(
        update={
            "id": "x:late-feed",
            "created_at": before.mention.created_at - timedelta(minutes=30),
            "received_at": stream[gap].mention.received_at,
        }
    )
    late = before.model_copy(update={"mention": late_mention})
    detector = Detector(reporting())
    for item in stream[:gap]:
        detector.observe(item)
    detector.observe(stream[gap])
    assert detector.holding() == [KEY]
    with caplog.at_level(logging.WARNING, logger="sentiment.detector"):
        detector.observe(late)
        assert detector.holding() == [KEY]  # still waiting for a mention that tells
        assert detector.story_of(KEY[0], "x:late-feed") is not None  # counted meanwhile
        for item in stream[gap + 1 :]:
            detector.observe(item)
    assert detector.future_dated == 0
    assert not [r for r in caplog.records if stream[gap].mention.id in r.getMessage()]


def test_a_redelivered_redated_mention_is_not_held_and_counted_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Kafka delivers a batch again (a crash after the save, before the commit): the
    mention that was counted at event time (a bad date) comes again. It is counted
    already: it must not be held back again, nor counted and warned of a second time."""
    stream, bad_id = stream_with(timedelta(days=1))
    stream = replayed(stream)
    i = next(i for i, s in enumerate(stream) if s.mention.id == bad_id)
    detector = Detector(reporting())
    for item in stream[: i + 2]:
        detector.observe(item)
    assert detector.future_dated == 1 and detector.holding() == []
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sentiment.detector"):
        for item in stream[i : i + 2]:  # the batch again
            assert detector.observe(item) == []
        assert detector.holding() == []
        for item in stream[i + 2 :]:
            detector.observe(item)
    assert detector.future_dated == 1
    assert not [r for r in caplog.records if bad_id in r.getMessage()]
