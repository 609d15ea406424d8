"""Per-story state rows: a save writes the stories a batch changed (and deletes the ones
it forgot), and a detector restored from the rows at any save point holds exactly the
state of one that never stopped (SQLite store)."""

from __future__ import annotations

import pickle
import random
from collections import deque
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.events import ScoredMention, Signal
from sentiment.detector.config import DetectorConfig
from sentiment.detector.detector import Detector
from sentiment.detector.forecast import ForecastModel
from sentiment.detector.snapshot import STATE_FORMAT, SnapshotCodec, WatchChanges, WatchSnapshot
from sentiment.detector.statestore import DetectorStoryRow, StateStore, WatchKey
from tests.unit.test_detector import COMPLAINT, T0, WORDS, by_time, chatter, complaint, scored
from tests.unit.test_detector_state import BETA, on_watch

KEYS: list[WatchKey] = [("acme", False), ("beta", False), ("acme", True)]
# small bounds, so that stories expire, drop mention ids and come back; the retired-story
# memory (4 * max_stories, shared by the watches a process holds, so not restored in its
# order across watches) is not filled (over max_stories: the next test)
CONFIG = DetectorConfig(
    max_stories=250,
    story_expiry_hours=2.0,
    max_mentions_per_story=50,
    indexed_texts_per_story=2,
)


def orphans_then_root(start: float, root: str) -> list[ScoredMention]:
    """Reposts of a post not seen yet (an orphan story), then the post itself."""
    out = [scored(f"{root}-o{i}", start + i, repost_of=f"x:{root}") for i in range(6)]
    out.append(scored(root, start + 7, text=COMPLAINT, label="negative", followers=500))
    return out


def copies(start: float, tag: str, rng: random.Random) -> list[ScoredMention]:
    """Copy-pasted posts (no parent): they join one story as near-duplicates."""
    body = " ".join(rng.choice(WORDS) for _ in range(12))
    return [
        scored(f"{tag}-{i}", start + 3 * i, text=f"{body} #{i}", label="negative") for i in range(8)
    ]


def long_stream(seed: int = 3) -> list[ScoredMention]:
    """Ten hours of three watches: chatter (evicted, expired), complaints escalating and
    cooling down, orphans, near-duplicates, a story forgotten and revived, mentions out
    of order and delivered twice."""
    rng = random.Random(seed)
    acme = by_time(
        chatter(0, 600),
        complaint(60, root="r1"),
        complaint(250, root="r2"),
        orphans_then_root(100, "late-root"),
        copies(180, "copy", rng),
        [scored("r1-again", 420, text=COMPLAINT, label="negative", reply_to="x:r1")],
    )
    beta = on_watch(by_time(chatter(240, 420, seed=11), complaint(300, root="b1")), BETA)
    drill = complaint(200, root="d1", drill=True)
    stream = by_time(acme, beta, drill)
    for i in range(0, len(stream) - 5, 37):  # a little reordering
        stream[i], stream[i + 3] = stream[i + 3], stream[i]
    for i in rng.sample(range(len(stream)), 40):  # redeliveries, a little later
        stream.insert(min(len(stream), i + rng.randrange(1, 30)), stream[i])
    return stream


def random_batches(stream: list[ScoredMention], seed: int = 5) -> list[list[ScoredMention]]:
    rng = random.Random(seed)
    out: list[list[ScoredMention]] = []
    i = 0
    while i < len(stream):
        size = rng.choice([1, 2, 5, 20, 60, 150])
        out.append(stream[i : i + size])
        i += size
    return out


async def save(store: StateStore, detector: Detector) -> dict[WatchKey, WatchChanges]:
    changes = {key: detector.changes(key) for key in KEYS if detector.holds(key)}
    await store.save(changes, STATE_FORMAT)
    for key, delta in changes.items():
        detector.saved(key, delta)
    return changes


async def restored(store: StateStore) -> Detector:
    detector = Detector(CONFIG, generation="g")
    for key, row in (await store.load(KEYS)).items():
        assert row.format == STATE_FORMAT
        detector.restore(key, WatchSnapshot(row.state, row.stories))
    return detector


def story_ids(detector: Detector, key: WatchKey) -> list[str]:
    return list(detector.snapshot(key).stories)


def plain(obj: Any, depth: int = 0) -> Any:
    """An object graph as nested tuples, comparable with ``==``: what each object holds
    (its pickled state), in order (dict order included), whatever objects it shares
    (pickled bytes differ with which equal strings happen to be one object)."""
    assert depth < 60, "too deep (a cycle?)"
    if obj is None or isinstance(obj, bool | int | float | str | bytes | datetime | timedelta):
        return obj
    if isinstance(obj, type):
        return obj.__qualname__
    if isinstance(obj, DetectorConfig | ForecastModel):
        return type(obj).__name__  # not part of a snapshot (persistent ids)
    if isinstance(obj, np.ndarray):
        return ("ndarray", str(obj.dtype), obj.shape, obj.tobytes())
    if isinstance(obj, dict):
        return (
            type(obj).__name__,
            [(plain(k, depth), plain(v, depth + 1)) for k, v in obj.items()],
        )
    if isinstance(obj, list | tuple | deque):
        return (type(obj).__name__, [plain(v, depth + 1) for v in obj])
    if isinstance(obj, set | frozenset):
        return (type(obj).__name__, sorted(repr(plain(v, depth + 1)) for v in obj))
    reduced = obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    assert isinstance(reduced, tuple), obj
    return (type(obj).__qualname__, [plain(part, depth + 1) for part in reduced[1:3]])


class States:
    """Decodes watches' snapshots for comparison (``plain``), each distinct part once."""

    def __init__(self, config: DetectorConfig) -> None:
        self.codec = SnapshotCodec(config)
        self.decoded: dict[bytes, Any] = {}

    def part(self, blob: bytes) -> Any:
        if blob not in self.decoded:
            self.decoded[blob] = plain(self.codec.loads(blob))
        return self.decoded[blob]

    def of(
        self, detector: Detector, key: WatchKey, snapshot: WatchSnapshot | None = None
    ) -> tuple[Any, dict[str, Any], list[str]]:
        """The watch's snapshot, decoded: (watch part, story parts, stories by activity)."""
        snapshot = snapshot or detector.snapshot(key)
        return (
            self.part(snapshot.watch),
            {sid: self.part(blob) for sid, blob in snapshot.stories.items()},
            [story.id for story in detector._watches[key].index.stories()],
        )


async def test_a_detector_restored_at_every_save_point_is_the_uninterrupted_one(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reference = Detector(CONFIG, generation="g")
    live = Detector(CONFIG, generation="g")
    store = StateStore(sessions)
    expected: list[Signal] = []
    got: list[Signal] = []
    parts = random_batches(long_stream())
    assert len(parts) >= 50
    written = removed = 0
    states = States(CONFIG)
    for batch in parts:
        for item in batch:
            expected.extend(reference.observe(item))
            got.extend(live.observe(item))
        assert got == expected
        changes = await save(store, live)
        written += sum(len(delta.stories) for delta in changes.values())
        removed += sum(len(delta.removed) for delta in changes.values())
        live = await restored(store)  # the next batch goes to a new process
        check = await restored(store)  # (``evaluate`` changes what it looks at)
        for key in KEYS:
            assert live.holds(key) == reference.holds(key)
            if not reference.holds(key):
                continue
            snapshot = reference.snapshot(key)
            assert states.of(live, key) == states.of(reference, key, snapshot)
            twin = Detector(CONFIG, generation="g")
            twin.restore(key, snapshot)
            watch_id, drill = key
            for story_id in snapshot.stories:
                a = twin.evaluate(watch_id, story_id, drill=drill)
                assert a is not None and a == check.evaluate(watch_id, story_id, drill=drill)
    # the stream did what it is for: Signals of every tier on each watch, a revival,
    # evictions (rows deleted), and far fewer story rows written than a whole-watch
    # save per batch would have written
    assert {s.tier for s in expected} >= {1, 2, 3}
    assert {s.watch.id for s in expected} == {"acme", "beta"} and any(s.drill for s in expected)
    assert any(s.story_id == "acme:x:r1" and s.id.endswith(".5") for s in expected)  # revived
    assert removed > 100
    whole = sum(len(story_ids(reference, key)) for key in KEYS) * len(parts)
    assert written < whole / 4


async def test_a_save_writes_the_rows_of_the_stories_a_batch_touched(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    detector = Detector(DetectorConfig(max_stories=20), generation="g")
    store = StateStore(sessions)
    for item in chatter(0, 50):  # about 25 quiet stories (20 held): sweeps touch none
        detector.observe(item)
    key: WatchKey = ("acme", False)
    first = (await save(store, detector))[key]
    held = story_ids(detector, key)
    assert first.whole and set(first.stories) == set(held) and len(held) == 20

    async def rows() -> dict[str, bytes]:
        async with sessions() as session:
            found = await session.execute(select(DetectorStoryRow.story_id, DetectorStoryRow.state))
            return {story_id: bytes(state) for story_id, state in found.all()}

    assert set(await rows()) == set(held)
    for k in (1, 3, 7):
        touched = held[-k:]  # reposts of k stories (the most recent: none is evicted)
        for n, story_id in enumerate(touched):
            root = story_id.removeprefix("acme:")
            detector.observe(scored(f"rp{k}-{n}", 50, repost_of=root))
        before = await rows()
        delta = (await save(store, detector))[key]
        assert not delta.whole and delta.removed == frozenset()
        assert sorted(delta.stories) == sorted(touched)
        after = await rows()
        assert {sid for sid in after if after[sid] != before[sid]} == set(touched)
    # a batch that starts stories beyond max_stories forgets the longest-quiet ones
    for i in range(5):
        detector.observe(scored(f"new{i}", 51, text=f"unrelated words number {i} {WORDS[i]}"))
    delta = (await save(store, detector))[key]
    assert len(delta.stories) == 5 and len(delta.removed) == 5
    assert delta.removed == set(held[:5])
    assert set(await rows()) == set(story_ids(detector, key))
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(DetectorStoryRow)) == 20


async def test_a_failed_save_leaves_its_changes_for_the_next(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    detector = Detector(DetectorConfig(), generation="g")
    store = StateStore(sessions)
    for item in chatter(0, 30):
        detector.observe(item)
    await save(store, detector)
    key: WatchKey = ("acme", False)
    held = story_ids(detector, key)
    detector.observe(scored("rp-a", 31, repost_of=held[0].removeprefix("acme:")))
    lost = detector.changes(key)  # the store failed: the service hands them back
    detector.unsaved(key, lost)
    detector.observe(scored("rp-b", 32, repost_of=held[1].removeprefix("acme:")))
    delta = (await save(store, detector))[key]
    assert set(delta.stories) == {held[0], held[1]}
    again = await restored(store)
    states = States(detector.config)
    assert states.of(again, key) == states.of(detector, key)
    assert again.story_of("acme", "x:rp-a") == held[0]


async def test_evaluate_counts_as_a_change(sessions: async_sessionmaker[AsyncSession]) -> None:
    """``evaluate`` at a later time drops what the story's windows leave behind: the
    story's row is written again, and a restored detector holds what this one holds."""
    detector = Detector(DetectorConfig(), generation="g")
    store = StateStore(sessions)
    for item in by_time(chatter(0, 40), complaint(10)):
        detector.observe(item)
    await save(store, detector)
    key: WatchKey = ("acme", False)
    later = T0 + timedelta(hours=5)
    assert detector.evaluate("acme", "acme:x:root", at=later) is not None
    delta = (await save(store, detector))[key]
    assert set(delta.stories) == {"acme:x:root"}
    states = States(detector.config)
    assert states.of(await restored(store), key) == states.of(detector, key)
