"""Merging a story into another: what it counts is what one story would have counted
(the heat's parts each, and the detector end to end when copies of a complaint came
before the complaint itself), and its last Signal names where it went."""

from __future__ import annotations

import math
import random

import pytest

from core.events import Evidence, ScoredMention
from sentiment.detector.burst import BurstTest
from sentiment.detector.config import DetectorConfig
from sentiment.detector.detector import Detector
from sentiment.detector.evidence import EvidencePicker
from sentiment.detector.forecast import ForecastModel, Kernel, StoryForecast
from sentiment.detector.heat import StoryHeat
from tests.unit.test_detector import COMPLAINT, WATCH, scored

MODEL = ForecastModel(
    Kernel.power_law(theta=0.8, shortest=1.0, longest=600.0, scales=6),
    follower_power=0.5,
    repost_weight=1.0,
)


def _split(items: list[ScoredMention], seed: int) -> tuple[list[ScoredMention], ...]:
    rng = random.Random(seed)
    a: list[ScoredMention] = []
    b: list[ScoredMention] = []
    for item in items:
        (a if rng.random() < 0.5 else b).append(item)
    return a, b


def _stream(n: int = 60) -> list[ScoredMention]:
    rng = random.Random(3)
    labels = ("negative", "neutral", "positive")
    out = []
    for i in range(n):
        minute = 10 + 40 * i / n
        text = "" if i % 3 else f"{COMPLAINT} {i}"
        out.append(
            scored(
                f"m{i}",
                minute,
                text=text,
                label=labels[rng.randrange(3)],
                author=f"u{i % 25}",  # repeat authors, in both halves
                followers=50 * (i % 25 + 1),
            )
        )
    return out


def test_forecast_absorb_equals_one_forecast_of_all_mentions() -> None:
    times = sorted(random.Random(1).uniform(0, 90) for _ in range(80))
    followers = [random.Random(i).choice([None, 10, 500, 20_000]) for i in range(80)]
    whole = StoryForecast(MODEL)
    for t, f in zip(times, followers, strict=True):
        whole.add(t, f)
    for seed in range(5):
        rng = random.Random(seed)
        picks = [rng.random() < 0.5 for _ in times]
        a, b = StoryForecast(MODEL), StoryForecast(MODEL)
        for t, f, to_a in zip(times, followers, picks, strict=True):
            (a if to_a else b).add(t, f)
        a.absorb(b, other_first=not picks[0])
        for now in (90.0, 120.0, 300.0):
            assert math.isclose(a.predict(now), whole.predict(now), rel_tol=1e-9), seed
        assert a.events == whole.events and math.isclose(a.weight, whole.weight)


def test_forecast_absorb_into_or_of_an_empty_one() -> None:
    a, b = StoryForecast(MODEL), StoryForecast(MODEL)
    b.add(5.0, 100)
    b.add(7.0, None)
    a.absorb(b, other_first=True)
    assert a.predict(30.0) == b.predict(30.0)
    before = a.predict(30.0)
    a.absorb(StoryForecast(MODEL), other_first=False)
    assert a.predict(30.0) == before


def test_burst_windows_of_one_minute_add_up() -> None:
    a, b, whole = (BurstTest((1, 5), alpha=0.01, min_count=3) for _ in range(3))
    for minute, test in [(10, a), (10, b), (11, a), (11, b), (11, b), (12, b)]:
        test.add_minute(minute, 0.2)
        whole.add_minute(minute, 0.2)
    a.absorb(b)
    assert a.counts_at(12) == whole.counts_at(12)
    assert a.bursting_at(12) == whole.bursting_at(12)


@pytest.mark.parametrize("earlier_absorbed", [False, True])
@pytest.mark.parametrize(
    "config",
    [
        DetectorConfig(),
        DetectorConfig(
            hawkes_follower_power=0.5, hawkes_repost_weight=1.0, high_reach_followers=600
        ),
    ],
    ids=["default", "followers"],
)
def test_story_heat_absorb_counts_what_one_heat_counts(
    config: DetectorConfig, earlier_absorbed: bool
) -> None:
    items = _stream()
    now = items[-1].mention.created_at
    whole = StoryHeat(config, items[0].mention.created_at)
    for item in items:
        whole.add(item.mention, item.sentiment.label, is_root=False, now=now)
    a_items, b_items = _split(items, seed=4)
    if earlier_absorbed:  # the story absorbed holds the first mention
        a_items, b_items = b_items, a_items
    if (a_items[0].mention.created_at < b_items[0].mention.created_at) == earlier_absorbed:
        a_items, b_items = b_items, a_items
    a = StoryHeat(config, a_items[0].mention.created_at)
    b = StoryHeat(config, b_items[0].mention.created_at)
    for heat, part in ((a, a_items), (b, b_items)):
        for item in part:
            heat.add(item.mention, item.sentiment.label, is_root=False, now=now)
    a.absorb(b)
    mine, theirs = a.snapshot(now, 0.5), whole.snapshot(now, 0.5)
    for field in (
        "mentions",
        "short_mentions",
        "long_mentions",
        "authors",
        "negative_mentions",
        "platforms",
        "age_minutes",
        "complaint_cues",
    ):
        assert getattr(mine, field) == getattr(theirs, field), field
    assert math.isclose(mine.negative_share, theirs.negative_share)
    assert mine.predicted_size is not None and theirs.predicted_size is not None
    assert math.isclose(mine.predicted_size, theirs.predicted_size, rel_tol=1e-9)
    # an author of both halves counts once in the reach
    assert (mine.reach, mine.high_reach_authors) == (theirs.reach, theirs.high_reach_authors)


def _heat(config: DetectorConfig, *authors: tuple[str, int | None]) -> StoryHeat:
    first = scored("first", 10).mention.created_at
    heat = StoryHeat(config, first)
    for i, (author, followers) in enumerate(authors):
        item = scored(f"{author}-{i}-{id(heat)}", 10 + i, author=author, followers=followers)
        heat.add(item.mention, "negative", is_root=False, now=item.mention.created_at)
    return heat


def test_a_shared_author_counts_once_with_the_larger_follower_count() -> None:
    """Each story took the follower count of the author's first mention in it: an unknown
    count in one does not wipe out the other's (a merge never lowers reach below either
    story's)."""
    config = DetectorConfig(high_reach_followers=100_000)
    s = _heat(config, ("a", None), ("b", 10))
    x = _heat(config, ("a", 500_000), ("c", 20))
    s.absorb(x)
    assert (s.reach, s.high_reach) == (500_030, 1)
    x2 = _heat(config, ("a", 500_000))
    s2 = _heat(config, ("a", 400_000))
    x2.absorb(s2)
    assert (x2.reach, x2.high_reach) == (500_000, 1)


@pytest.mark.parametrize(
    ("counted_under", "merged_under", "high"), [(200_000, 100_000, 0), (100_000, 200_000, 1)]
)
def test_high_reach_authors_follow_what_each_story_counted_not_todays_threshold(
    counted_under: int, merged_under: int, high: int
) -> None:
    """Both stories counted a 150k author under one threshold; the config changed before
    they merged (thresholds follow the config at once): the author counts once, as each
    story counted them, never -1 and never twice."""
    before = DetectorConfig(high_reach_followers=counted_under)
    s, x = _heat(before, ("a", 150_000)), _heat(before, ("a", 150_000))
    after = DetectorConfig(high_reach_followers=merged_under)
    s._config = x._config = after
    s.absorb(x)
    assert (s.reach, s.high_reach) == (150_000, high)


def test_a_heat_of_an_older_snapshot_counts_a_shared_author_twice() -> None:
    """Without followers per author (STATE_FORMAT 5 and older) a merge cannot tell what
    it counted: it keeps both counts (the safe side: more reach, not less)."""
    config = DetectorConfig(high_reach_followers=100_000)
    s, x = _heat(config, ("a", 150_000)), _heat(config, ("a", 150_000))
    del s.__dict__["_followers"], s.__dict__["_high"]  # as restored from format 5
    s.absorb(x)
    assert (s.reach, s.high_reach) == (300_000, 2)


def test_evidence_absorb_keeps_the_best_of_both_and_both_roots() -> None:
    def picker(prefix: str, probs: list[float]) -> EvidencePicker:
        p = EvidencePicker(size=4, chars=200)
        for i, prob in enumerate(probs):
            item = scored(f"{prefix}{i}", 10 + i, text=f"{prefix} text {i}", followers=10 * i)
            item = item.model_copy(
                update={
                    "sentiment": item.sentiment.model_copy(
                        update={"probs": {"negative": prob, "neutral": 1 - prob, "positive": 0.0}}
                    )
                }
            )
            p.offer(item, is_root=i == 0)
        return p

    a = picker("a", [0.9, 0.1, 0.2, 0.5])
    b = picker("b", [0.8, 0.95, 0.5, 0.5])  # equal scores: never compares Evidence objects
    a.absorb(b)
    picked: tuple[Evidence, ...] = a.pick()
    ids = [e.id for e in picked]
    assert ids[0] == "x:a0"  # the survivor's root leads
    assert "x:b1" in ids  # the most negative of either story
    assert len(ids) == len(set(ids)) <= 4
    empty = EvidencePicker(size=4, chars=200)
    empty.absorb(b)
    assert empty.pick()[0].id == "x:b0"  # a story without a root takes the other's


def test_copies_before_the_complaint_are_merged_into_its_cascade() -> None:
    """Several scorers can hand the detector copies of a complaint and reposts of it
    before the complaint itself: two stories signal (the reposts' and the copies'); when
    the complaint comes, the copies' story is merged into the complaint's, its last Signal
    names it, and the one story counts everything."""
    root = scored("root", 30, text=COMPLAINT, label="negative", followers=5_000)
    reposts = [
        scored(f"r{i}", 30 + 0.1 * (i + 1), repost_of="x:root", followers=100 + i)
        for i in range(30)
    ]
    copies = [
        scored(f"c{i}", 30 + 0.1 * (i + 1) + 0.05, text=f"{COMPLAINT}!!", label="negative")
        for i in range(30)
    ]
    in_order = sorted([root, *reposts, *copies], key=lambda m: m.mention.created_at)
    reference = Detector(DetectorConfig())
    for m in in_order:
        reference.observe(m)
    assert {reference.story_of(WATCH.id, m.mention.id) for m in in_order} == {"acme:x:root"}

    detector = Detector(DetectorConfig())
    signals = []
    for m in [*sorted([*reposts, *copies], key=lambda m: m.mention.created_at), root]:
        signals.extend(detector.observe(m))
    signalled = {s.story_id for s in signals if s.tier}
    assert {"acme:x:root", "acme:x:c0"} <= signalled  # both stories signalled first
    (merged,) = [s for s in signals if s.merged_into]
    assert (merged.story_id, merged.merged_into, merged.tier) == ("acme:x:c0", "acme:x:root", 0)
    assert signals.index(merged) > max(
        i for i, s in enumerate(signals) if s.story_id == "acme:x:c0" and not s.merged_into
    )
    assert {detector.story_of(WATCH.id, m.mention.id) for m in in_order} == {"acme:x:root"}
    mine = detector.evaluate(WATCH.id, "acme:x:root")
    theirs = reference.evaluate(WATCH.id, "acme:x:root")
    assert mine is not None and theirs is not None
    assert (mine.heat.mentions, mine.heat.authors, mine.heat.negative_mentions) == (
        theirs.heat.mentions,
        theirs.heat.authors,
        theirs.heat.negative_mentions,
    )
    assert mine.tier == theirs.tier
    # a new copy joins the merged story by its text; the state survives a restore
    key = (WATCH.id, False)
    restored = Detector(DetectorConfig())
    restored.restore(key, detector.snapshot(key))
    late = scored("late", 34, text=f"{COMPLAINT}!!!", label="negative")
    restored.observe(late)
    assert restored.story_of(WATCH.id, "x:late") == "acme:x:root"
    assert restored.story_of(WATCH.id, "x:c5") == "acme:x:root"


def test_a_late_post_copying_an_older_story_joins_it() -> None:
    """M copies the text of an older story X (that signalled) and a reply to M comes
    before M: M joins X as in order, and the young story its reply opened is folded in;
    X is never merged into M's story."""
    from tests.unit.test_detector import chatter

    base = chatter(0, 600)
    x = [scored("A", 300, text=COMPLAINT, label="negative")]
    x += [scored(f"r{i}", 300 + i * 0.2, repost_of="x:A") for i in range(60)]
    m = scored("M", 340, text=COMPLAINT + " again", label="negative")
    reply = scored("R", 340.5, reply_to="x:M", text="same here", label="negative")
    in_order = sorted([*base, *x, m, reply], key=lambda s: s.mention.created_at)
    shuffled = [*sorted([*base, *x], key=lambda s: s.mention.created_at), reply, m]
    for order in (in_order, shuffled):
        detector = Detector(DetectorConfig())
        signals = [s for item in order for s in detector.observe(item)]
        assert {detector.story_of(WATCH.id, f"x:{n}") for n in ("A", "M", "R")} == {"acme:x:A"}
        assert not [s for s in signals if s.merged_into], [s.id for s in signals]


def test_a_merge_keeps_the_linking_mention_within_the_id_cap() -> None:
    """The absorbed story's ids go before the survivor's: the per-story cap forgets the
    oldest, not the mention that just linked the two (its redelivery stays a redelivery,
    a later reply to it joins the merged story)."""
    config = DetectorConfig(max_mentions_per_story=20)
    detector = Detector(config)
    order = [scored("P", 0, text="original post about acme", label="negative")]
    order += [scored(f"j{i}", 1 + i * 0.1, repost_of="x:P") for i in range(5)]
    order += [scored(f"o{i}", 2 + i * 0.1, reply_to="x:M", text=f"reply {i}") for i in range(20)]
    linking = scored("M", 1.5, reply_to="x:P", text="M replies to P")
    for item in [*order, linking]:
        detector.observe(item)
    assert detector.story_of(WATCH.id, "x:M") == "acme:x:P"
    assert detector.observe(linking) == []  # a redelivery: counted once
    detector.observe(scored("late", 5, reply_to="x:M", text="another reply to M"))
    assert detector.story_of(WATCH.id, "x:late") == "acme:x:P"
    ws = detector._watches[(WATCH.id, False)]
    (story,) = [s for s in ws.index.stories() if s.id == "acme:x:P"]
    assert len(story.mention_ids) == 20 and ws.index.mentions_held == 20
