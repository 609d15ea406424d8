"""Detector review 3 (robustness; each test failed before its fix).

* A mention dated at the ends of Python's dates (9999-12-31, 0001-01-01: a broken
  producer's "no date") overflowed inside the detector; dated 9999 it became its watch's
  event time, and every later mention of the watch overflowed too: each was
  dead-lettered and the consumer halted. It is now refused before anything of it is
  counted, and dead-lettered alone, at once.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.events import ScoredMention
from core.metrics import Metrics
from sentiment.detector.config import DetectorConfig
from sentiment.detector.detector import Detector, MentionRefused, WatchKey
from sentiment.detector.policy import format_count
from sentiment.detector.snapshot import WatchSnapshot
from sentiment.detector.statestore import StateStore
from sentiment.detector.stories import WIDTH_SWITCH
from tests.unit.test_detector import WATCH, complaint, run, scored
from tests.unit.test_detector_state_outage import Waits, run_on_a_bus
from tests.unit.test_paraphrase import DIMS, post, unit

FAR_FUTURE = datetime(9999, 12, 31, 23, 59, tzinfo=UTC)
FAR_PAST = datetime(1, 1, 1, tzinfo=UTC)


def dated(native: str, at: datetime) -> ScoredMention:
    item = scored(native, 0, text="acme order update", label="neutral")
    mention = item.mention.model_copy(update={"created_at": at, "received_at": at})
    return item.model_copy(update={"mention": mention})


@pytest.mark.parametrize("at", [FAR_FUTURE, FAR_PAST], ids=["9999", "0001"])
def test_a_mention_dated_at_the_end_of_time_is_refused_and_the_watch_goes_on(
    at: datetime,
) -> None:
    reference = [(s.id, s.tier, s.spread) for s in run(Detector(DetectorConfig()), complaint())]
    detector = Detector(DetectorConfig())
    with pytest.raises(MentionRefused, match="outside the dates the detector can count"):
        detector.observe(dated("bad", at))
    assert detector.story_of("acme", "x:bad") is None
    assert [(s.id, s.tier, s.spread) for s in run(detector, complaint())] == reference


async def test_a_mention_dated_9999_is_dead_lettered_alone_without_retries(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    stream = [dated("bad", FAR_FUTURE), *complaint()]
    metrics = Metrics()
    store = StateStore(sessions)
    svc, bus, signals = await run_on_a_bus(store, stream, metrics, Waits())
    assert [letter.offset for letter in bus.dead_letters] == [0]
    assert "outside the dates the detector can count" in bus.dead_letters[0].reason
    assert "permanent" in bus.dead_letters[0].reason  # not tried again
    assert not bus.halted()
    assert max(s.tier for s in signals) == 3
    key = ("acme", False)
    stored = (await store.load([key]))[key]
    assert "acme:x:root" in stored.stories
    assert svc.detector.story_of("acme", "x:bad") is None


# --- a change of the scorer's sentence vectors reaches the saved stories -----------------


NEW_MODEL_POSTS = (
    "Acme lamp flickers every evening since the update",
    "my kettle from acme leaks water onto the counter",
    "Drone by acme lost signal over the lake yesterday",
    "acme laptop fan is loud when idle, any fix?",
    "Blender (acme) jammed on frozen fruit twice",
    "the acme scooter app logs me out daily",
    "Camera focus on my acme phone hunts in low light",
    "acme printer eats every second sheet of paper",
)


def wide(seed: int) -> np.ndarray:
    v = np.random.default_rng(100 + seed).normal(size=2 * DIMS).astype(np.float32)
    return v / np.linalg.norm(v)


def _saved(detector: Detector, key: WatchKey, rows: WatchSnapshot | None) -> WatchSnapshot:
    """What a store holds once ``detector``'s changes of ``key`` are saved over ``rows``."""
    changes = detector.changes(key)
    detector.saved(key, changes)
    stories = dict(rows.stories) if rows is not None and not changes.whole else {}
    stories.update(changes.stories)
    for story_id in changes.removed:
        stories.pop(story_id, None)
    return WatchSnapshot(changes.watch, stories)


def test_vectors_of_the_old_model_are_not_restored_after_a_model_change() -> None:
    """The scorer's model changed (vectors of another width, ``WIDTH_SWITCH`` in a row):
    the stories' vectors are dropped, and so they are in the saved rows of the stories
    no mention touched since. (Those rows kept them: a restore read the old 16-value
    vectors as new 32-value ones, and a post joined a story by a paraphrase of nothing
    it said.)"""
    key: WatchKey = (WATCH.id, False)
    claim = unit(1)
    detector = Detector(DetectorConfig(paraphrase_threshold=0.9))
    detector.observe(post("o", 10, "Acme phone battery died after two hours", claim))
    detector.observe(post("o2", 10.5, "my acme phone's battery is dead in 2 hours", claim))
    (old,) = [s for s in detector._watches[key].index.stories() if s.id == "acme:x:o"]
    assert len(old.vectors) == 2 * DIMS
    assert len(NEW_MODEL_POSTS) >= WIDTH_SWITCH
    held = old.vectors
    rows = _saved(detector, key, None)
    for i, text in enumerate(NEW_MODEL_POSTS):  # the new model: 32 values
        detector.observe(post(f"n{i}", 11 + i / 10, text, wide(i)))
    assert old.vectors == b""
    rows = _saved(detector, key, rows)
    restored = Detector(DetectorConfig(paraphrase_threshold=0.9))
    restored.restore(key, rows)
    (back,) = [s for s in restored._watches[key].index.stories() if s.id == "acme:x:o"]
    assert back.vectors == b""
    # the old vectors, read as one of the new width, join nothing
    item = scored("q", 12, text="acme shipping took three weeks", label="negative")
    item = item.model_copy(update={"embedding": base64.b64encode(held).decode()})
    for each in (detector, restored):
        each.observe(item)
        assert each.story_of(WATCH.id, "x:q") == "acme:x:q"


# --- explanations -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "text"),
    [(999.6, "1 k"), (999_500, "1 M"), (999_950, "1 M"), (999_999_999, "1 G"), (99_950, "100 k")],
)
def test_a_count_that_rounds_to_1000_of_a_unit_is_1_of_the_next(n: float, text: str) -> None:
    """'reach 1000 k followers' read as a typo: it is 1 M."""
    assert format_count(n) == text
