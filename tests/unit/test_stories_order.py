"""Story assignment tolerates out-of-order arrival (several scorers over Kafka hand the
detector a repost before its parent): a cascade that arrives shuffled is the one story
it is in order, in English and in Chinese, across a snapshot and restore too; what it
takes is bounded; snapshots of the previous format are still read."""

from __future__ import annotations

import base64
import json
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.events import ScoredMention, Signal
from core.metrics import Metrics
from sentiment.detector.config import DetectorConfig
from sentiment.detector.detector import EARLY_MAX, EARLY_TEXT_CHARS, Detector, _Tracked
from sentiment.detector.service import DetectorService
from sentiment.detector.snapshot import (
    READABLE_FORMATS,
    STATE_FORMAT,
    SnapshotCodec,
    WatchChanges,
)
from sentiment.detector.statestore import StateStore
from sentiment.detector.stories import MAX_AWAITED, Story, StoryIndex
from tests.unit.test_detector import COMPLAINT, WATCH, by_time, chatter, complaint, scored
from tests.unit.test_detector_state import RecordingBus, published, sample

Tree = list[tuple[str, str | None, str]]  # (native id, parent, text)

ENGLISH: Tree = [
    ("a", None, COMPLAINT),
    ("b1", "a", ""),  # reposts ...
    ("b2", "a", "same thing happened to my acme charger, it melted"),  # ... and replies
    ("b3", "a", ""),
    ("c1", "b1", ""),  # reposts of reposts, replies to replies
    ("c2", "b2", "@acme this is dangerous, recall it"),
    ("c3", "b2", ""),
    ("d1", "c2", ""),
    ("d2", "c1", "my kid almost got burned"),
    ("e1", "d2", ""),
]

ZH_ROOT = "爱酷智能手表充电时突然冒烟起火，客服到现在都没有回复，大家一定要小心这个牌子"
CHINESE: Tree = [
    ("w1", None, ZH_ROOT),
    ("w2", "w1", "转发微博"),
    ("w3", "w1", ""),
    ("w4", "w2", "//@w2: 太可怕了，我的也发烫"),
    ("w5", "w4", ""),
    ("w6", "w4", "//@w4: 求官方回应"),
    # the same complaint posted again by hand (a near-duplicate, rule 4), and its reposts
    (
        "k1",
        None,
        "爱酷智能手表充电时突然冒烟起火，客服到现在都没有回复，大家一定要小心这个牌子！！",
    ),
    ("k2", "k1", ""),
    ("k3", "k2", "转发"),
]


def cascade(tree: Tree, *, start: float = 10) -> list[ScoredMention]:
    """The tree's mentions, in order, a minute apart: texts without a parent are
    negative complaints, the others neutral (a story that signalled is never folded:
    ``test_a_story_that_signalled_is_not_folded``)."""
    return [
        scored(
            native,
            start + i,
            text=text,
            label="negative" if text and parent is None else "neutral",
            followers=100 * (i + 1),
            repost_of=f"x:{parent}" if parent and not text else None,
            reply_to=f"x:{parent}" if parent and text else None,
        )
        for i, (native, parent, text) in enumerate(tree)
    ]


def stories(detector: Detector, tree: Tree) -> list[set[str]]:
    """The partition of the tree's mentions into stories (story ids aside)."""
    parts: dict[str, set[str]] = {}
    for native, _, _ in tree:
        story = detector.story_of(WATCH.id, f"x:{native}")
        assert story is not None, native
        parts.setdefault(story, set()).add(native)
    return sorted(parts.values(), key=sorted)


def heat_of(detector: Detector, tree: Tree) -> tuple[object, ...]:
    """What the story counts, as the policy sees it (order-independent parts)."""
    story = detector.story_of(WATCH.id, f"x:{tree[0][0]}")
    assert story is not None
    decision = detector.evaluate(WATCH.id, story)
    assert decision is not None
    heat = decision.heat
    tracked = detector._watches[(WATCH.id, False)].tracked[story]
    return (
        heat.mentions,
        heat.authors,
        heat.reach,
        heat.negative_mentions,
        sorted(heat.complaint_cues),
        tracked.heat.story_label,
    )


def run(stream: list[ScoredMention]) -> tuple[Detector, list[Signal]]:
    detector = Detector(DetectorConfig())
    return detector, [s for m in stream for s in detector.observe(m)]


@pytest.mark.parametrize("tree", [ENGLISH, CHINESE], ids=["english", "chinese"])
def test_a_shuffled_cascade_is_the_story_it_is_in_order(tree: Tree) -> None:
    in_order = cascade(tree)
    reference, _ = run(in_order)
    assert stories(reference, tree) == [{native for native, _, _ in tree}]  # one story
    expected = heat_of(reference, tree)
    orders = [list(reversed(in_order))]
    rng = random.Random(8)
    for _ in range(400):
        orders.append(rng.sample(in_order, len(in_order)))
    for order in orders:
        detector, _ = run(order)
        arrival = [m.mention.id for m in order]
        assert stories(detector, tree) == stories(reference, tree), arrival
        assert heat_of(detector, tree) == expected, arrival


def test_in_order_arrival_is_unchanged_and_awaits_nothing() -> None:
    """The order tolerance costs nothing in order: no story awaits an id, none keeps
    early mentions beyond its orphan days (a story whose root came first has none)."""
    stream = by_time(chatter(0, 200), complaint(120), cascade(ENGLISH, start=30))
    detector, signals = run(stream)
    ws = detector._watches[(WATCH.id, False)]
    assert ws.index.awaited_held == 0
    assert all(t.early is None for t in ws.tracked.values())
    assert signals


def test_a_chain_in_reverse_is_one_story_named_by_its_first_arrival() -> None:
    """C <- B <- A arriving C, B, A: each arrival makes the story await its parent (no
    fold needed); the story keeps the id the first arrival gave it."""
    tree: Tree = [("a", None, COMPLAINT), ("b", "a", ""), ("c", "b", "")]
    detector, _ = run(list(reversed(cascade(tree))))
    assert stories(detector, tree) == [{"a", "b", "c"}]
    assert detector.story_of(WATCH.id, "x:a") == "acme:x:b"
    assert heat_of(detector, tree)[-1] == "negative"  # the root's label, as in order


def test_a_late_middle_mention_folds_the_young_story_of_its_children() -> None:
    """A, then C (child of B: story w:B), then B (child of A): B joins A's story, and the
    young story w:B is folded into it (its mentions taken in again); the store is told."""
    tree: Tree = [("a", None, COMPLAINT), ("b", "a", ""), ("c", "b", ""), ("d", "c", "")]
    a, b, c, d = cascade(tree)
    detector = Detector(DetectorConfig())
    for m in (a, d, c):
        detector.observe(m)
    assert detector.story_of(WATCH.id, "x:c") == "acme:x:c"  # d opened w:c, c joined it
    detector.snapshot((WATCH.id, False))  # (a saved watch notes what changed)
    detector.saved((WATCH.id, False), detector.changes((WATCH.id, False)))
    detector.observe(b)
    assert stories(detector, tree) == [{"a", "b", "c", "d"}]
    changes = detector.changes((WATCH.id, False))
    assert "acme:x:c" in changes.removed and "acme:x:a" in changes.stories


def test_a_story_that_grew_is_merged_with_its_counts() -> None:
    """The early mentions are bounded (``EARLY_MAX``): an orphan story that outgrew them
    is merged, not folded, when its parent's story claims its root late: one story all
    the same, counting what it counts in order."""
    tree: Tree = [("a", None, COMPLAINT), ("b", "a", "")]
    tree += [(f"c{i}", "b", "") for i in range(EARLY_MAX + 1)]
    a, b, *kids = cascade(tree)
    reference, _ = run(cascade(tree))
    detector, signals = run([a, *kids, b])
    assert stories(detector, tree) == [{native for native, _, _ in tree}]
    assert heat_of(detector, tree) == heat_of(reference, tree)
    assert "acme:x:b" not in detector._watches[(WATCH.id, False)].tracked
    assert not [s for s in signals if s.merged_into]  # the orphan story never signalled
    small = tree[: 2 + EARLY_MAX]
    a, b, *kids = cascade(small)
    detector, _ = run([a, *kids, b])
    assert len(stories(detector, small)) == 1


def test_a_story_that_signalled_is_merged_and_says_where() -> None:
    """An orphan story that already signalled (the alerter may hold an incident for it)
    is merged into its parent's story when the link arrives: its last Signal is tier 0
    and names the story it is part of, which carries its heat from then on."""
    a, b = cascade([("a", None, COMPLAINT), ("b", "a", "")])
    c = scored("c", 12.5, text=COMPLAINT + " again", label="negative", reply_to="x:b")
    detector, signals = run([a, c, b])
    assert "acme:x:b#1" in [s.id for s in signals]  # the orphan story w:b signalled
    (merged,) = [s for s in signals if s.merged_into]
    assert merged.id == "acme:x:b#2" and merged.story_id == "acme:x:b"
    assert merged.merged_into == "acme:x:a"
    assert (merged.tier, merged.spread, merged.previous_tier) == (0, 0, 1)
    assert "Part of story acme:x:a" in merged.explanation
    after = signals[signals.index(merged) + 1 :]  # the survivor's, with the combined heat
    assert [s.story_id for s in after] == ["acme:x:a"] and after[0].tier >= 1
    assert detector.story_of(WATCH.id, "x:c") == "acme:x:a"
    assert detector.story_of(WATCH.id, "x:b") == "acme:x:a"
    decision = detector.evaluate(WATCH.id, "acme:x:a")
    assert decision is not None and decision.heat.mentions == 3
    assert decision.heat.negative_mentions == 3  # b's repost inherits the root's label
    # a later reply to c counts in the merged story; the merged one's ids go on after it
    d = scored("d", 13.0, text="me too", label="negative", reply_to="x:c")
    detector.observe(d)
    assert detector.story_of(WATCH.id, "x:d") == "acme:x:a"
    ws = detector._watches[(WATCH.id, False)]
    assert ws.retired["acme:x:b"].signals == 2


def test_what_a_story_awaits_is_bounded() -> None:
    """A story awaits one id at a time in practice (each arrival takes its own id off and
    names one parent); ids that came and joined another story stay listed, so the list
    is capped at ``MAX_AWAITED`` (the oldest go)."""
    tree: Tree = [("c", "b", ""), ("b", "a", "")]
    index = StoryIndex("acme", DetectorConfig())
    for item in cascade(tree):
        assert index.assign(item.mention, WATCH) is not None
    (story,) = index.stories()
    assert story.awaited == ("x:a",) and index.awaited_held == 1
    for i in range(MAX_AWAITED + 5):
        index._await(story, f"x:p{i}")
    assert len(story.awaited) == MAX_AWAITED == index.awaited_held
    assert story.awaited[-1] == f"x:p{MAX_AWAITED + 4}"
    index.evict(story.last_at + timedelta(days=30))  # forgotten: nothing awaited
    assert index.awaited_held == 0


def test_what_the_story_awaits_and_its_early_mentions_survive_a_restore() -> None:
    tree: Tree = [("a", None, COMPLAINT), ("b", "a", ""), ("c", "b", ""), ("d", "c", "")]
    a, b, c, d = cascade(tree)
    key = (WATCH.id, False)
    for before, after in (([d, c], [b, a]), ([a, d], [c, b])):
        first = Detector(DetectorConfig())
        for m in before:
            first.observe(m)
        second = Detector(DetectorConfig())
        second.restore(key, first.snapshot(key))
        for m in after:
            second.observe(m)
        assert stories(second, tree) == [{"a", "b", "c", "d"}], (before, after)


def _as_format(codec: SnapshotCodec, blob: bytes, fmt: int) -> bytes:
    """A part as a detector of ``STATE_FORMAT`` ``fmt`` (2 to 5) wrote it: no followers
    per author (5), nor size model inputs in the heat (4), nor sentence vectors (3), nor
    awaited ids or early mentions (2): the attributes did not exist."""
    state: Any = codec.loads(blob)
    if isinstance(state, tuple):
        story, tracked, _ = state
        assert isinstance(story, Story) and isinstance(tracked, _Tracked)
        for name in ("_followers", "_high"):
            tracked.heat.__dict__.pop(name, None)
        if fmt == 5:
            return codec.dumps(state)
        for name in ("root_followers", "_texted", "_deep", "_early_times", "_growth"):
            tracked.heat.__dict__.pop(name, None)
        if fmt == 4:
            return codec.dumps(state)
        story.__dict__.pop("vectors", None)
        if fmt == 2:
            story.__dict__.pop("awaited", None)
            tracked.__dict__.pop("early", None)
    elif fmt < 4:
        for name in ("_para_threshold", "_para_per_key", "_para_dims"):
            state.index.__dict__.pop(name)
        if fmt == 2:
            state.index.__dict__.pop("_awaited")
    return codec.dumps(state)


@pytest.mark.parametrize("fmt", [2, 3, 4, 5])
async def test_a_snapshot_of_a_previous_format_is_still_read(
    sessions: async_sessionmaker[AsyncSession], fmt: int
) -> None:
    assert STATE_FORMAT == 9 and {2, 3, 4, 5, 6, 7, 8, 9} == READABLE_FORMATS
    stream = by_time(chatter(0, 300), complaint(120))
    split = len(stream) // 2
    reference = [s.id for s in run(stream)[1]]
    first = Detector(DetectorConfig())
    ids = [s.id for m in stream[:split] for s in first.observe(m)]
    key = (WATCH.id, False)
    whole = first.snapshot(key)
    codec = SnapshotCodec(first.config)
    old = WatchChanges(
        _as_format(codec, whole.watch, fmt),
        {sid: _as_format(codec, blob, fmt) for sid, blob in whole.stories.items()},
        frozenset(),
        whole=True,
    )
    store = StateStore(sessions)
    await store.save({key: old}, fmt)
    metrics = Metrics()
    second = DetectorService(RecordingBus(), DetectorConfig(), metrics, store=store)
    await second.handle(list(stream[split:]))
    assert sample(metrics, "crisiswatch_detector_restores_total", {"outcome": "loaded"}) == 1
    assert sample(metrics, "crisiswatch_detector_restores_total", {"outcome": "failed"}) == 0
    assert ids
    assert ids + [s.id for s in published(second)] == reference
    await store.save({key: old}, 1)  # format 1 (one pickle per watch) is not read
    third = DetectorService(RecordingBus(), DetectorConfig(), metrics, store=store)
    await third.handle(list(stream[split:]))
    assert sample(metrics, "crisiswatch_detector_restores_total", {"outcome": "failed"}) == 1


FORMAT_6 = Path(__file__).parents[1] / "data" / "detector-state-format6.json"


async def test_a_snapshot_with_tumbling_burst_windows_is_still_read(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A real format-6 snapshot (written by the detector before burst windows slid:
    ``tests/data/detector-state-format6.json``, watch acme 60 minutes into
    ``by_time(chatter(60, 200), complaint(100))``, the complaint bursting) is restored:
    its windows and its surge are converted, and the rest of the stream gives the
    Signals an uninterrupted run of this detector gives."""
    saved = json.loads(FORMAT_6.read_text())
    assert saved["format"] == 6 and 6 in READABLE_FORMATS
    stream = by_time(chatter(60, 200), complaint(100))
    cut = saved["cut"]
    _, reference = run(stream)
    assert len(reference[: saved["signals"]]) == saved["signals"]
    key = (WATCH.id, False)
    old = WatchChanges(
        base64.b64decode(saved["watch"]),
        {sid: base64.b64decode(blob) for sid, blob in saved["stories"].items()},
        frozenset(),
        whole=True,
    )
    store = StateStore(sessions)
    await store.save({key: old}, 6)
    metrics = Metrics()
    second = DetectorService(RecordingBus(), DetectorConfig(), metrics, store=store)
    await second.handle(list(stream[cut:]))
    assert sample(metrics, "crisiswatch_detector_restores_total", {"outcome": "loaded"}) == 1
    assert sample(metrics, "crisiswatch_detector_restores_total", {"outcome": "failed"}) == 0
    after = [(s.story_id, s.tier, s.spread) for s in published(second)]
    assert after == [(s.story_id, s.tier, s.spread) for s in reference[saved["signals"] :]]
    assert max(tier for _, tier, _ in after) == 3
    windows = second.detector._watches[key].tracked["acme:x:root"].heat._burst.windows
    assert all(w.recent and w.newest is not None for w in windows)


def test_early_mentions_keep_a_bounded_text() -> None:
    """A story's row holds its early mentions: a very long post is kept shortened."""
    long = scored("c", 11, text="acme " * 4_000, label="neutral", reply_to="x:b")
    detector, _ = run([long])
    (tracked,) = detector._watches[(WATCH.id, False)].tracked.values()
    assert tracked.early is not None
    assert [len(m.mention.text) for m in tracked.early] == [EARLY_TEXT_CHARS]
    assert long.mention.text.startswith(tracked.early[0].mention.text)
