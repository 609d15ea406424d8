"""Paraphrase joining (rule 4b): sentence vectors packed by the scorer, compared by the
detector's paraphrase index; stories keep their vectors across a snapshot and a merge;
a bad vector is left out, never fatal. (Synthetic vectors: the real model's separation
is measured in its card and in ``test_embedder_model``.)"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from core.events import Mention, ScoredMention
from sentiment.detector.config import DetectorConfig
from sentiment.detector.detector import Detector
from sentiment.detector.paraphrase import ParaphraseIndex
from sentiment.embedder import pack, unpack
from sentiment.scorer import ScorerService
from tests.fakes import FakeClassifier
from tests.unit.test_detector import WATCH, scored

DIMS = 16


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIMS).astype(np.float32)
    return v / np.linalg.norm(v)


def near(v: np.ndarray, cosine: float, seed: int = 99) -> np.ndarray:
    """A unit vector at about ``cosine`` from ``v``."""
    other = np.random.default_rng(seed).normal(size=len(v)).astype(np.float32)
    other -= other.dot(v) * v
    other /= np.linalg.norm(other)
    out = cosine * v + np.sqrt(1 - cosine**2) * other
    return out / np.linalg.norm(out)


def post(native: str, minute: float, text: str, vector: np.ndarray | None) -> ScoredMention:
    item = scored(native, minute, text=text, label="negative")
    return item.model_copy(update={"embedding": None if vector is None else pack(vector)})


def test_pack_and_unpack() -> None:
    v = unit(1)
    back = unpack(pack(v), DIMS)
    assert back.dtype == np.float32 and float(back.dot(v)) > 0.999
    assert len(pack(v)) == 24  # 16 int8 values, base64
    for bad, why in (("!!", "base64"), (pack(v), "expected 8"), (pack(v * 0), "zeros")):
        with pytest.raises(ValueError, match=why):
            unpack(bad, 8 if why == "expected 8" else None)


def test_the_index_finds_the_nearest_key_above_the_threshold() -> None:
    index = ParaphraseIndex(threshold=0.9, per_key=2)
    a, b = unit(1), unit(2)
    assert index.add("A", a) and index.add("B", b)
    assert index.best_match(near(a, 0.95)) == "A"
    assert index.best_match(near(a, 0.8)) is None
    assert index.add("A", near(a, 0.5)) and not index.add("A", unit(3))  # per key: 2
    assert not index.add("C", np.ones(DIMS + 1, dtype=np.float32))  # another width
    assert index.best_match(np.ones(DIMS + 1, dtype=np.float32)) is None
    index.move("A", "B")  # B keeps 2: one of A's goes
    assert index.held("B") == 2 and index.held("A") == 0
    index.remove("B")
    assert len(index) == 0 and index.best_match(b) is None
    for i in range(200):  # grows past its first rows
        index.add(f"k{i}", unit(100 + i))
    assert index.best_match(unit(150)) == "k50"


def test_a_paraphrase_joins_the_story_and_an_unrelated_post_does_not() -> None:
    detector = Detector(DetectorConfig(paraphrase_threshold=0.9))
    claim = unit(1)
    first = post("a", 10, "My Acme charger caught fire last night", claim)
    same = post("b", 11, "acme charger literally burst into flames overnight", near(claim, 0.95))
    other = post("c", 12, "Acme customer service never answers my emails", near(claim, 0.6))
    bare = post("d", 13, "acme chargers are a fire hazard, burned my desk", None)
    for item in (first, same, other, bare):
        detector.observe(item)
    story = detector.story_of(WATCH.id, "x:a")
    assert detector.story_of(WATCH.id, "x:b") == story
    assert detector.story_of(WATCH.id, "x:c") != story
    assert detector.story_of(WATCH.id, "x:d") != story  # no vector: no paraphrase test
    decision = detector.evaluate(WATCH.id, story or "")
    assert decision is not None and decision.heat.mentions == 2


def test_the_threshold_can_differ_by_language() -> None:
    config = DetectorConfig(paraphrase_threshold=0.9, paraphrase_threshold_by_lang={"zh": 0.97})
    detector = Detector(config)
    claim = unit(3)

    def zh(native: str, minute: float, text: str, v: np.ndarray) -> ScoredMention:
        item = post(native, minute, text, v)
        return item.model_copy(
            update={"mention": item.mention.model_copy(update={"lang": "zh-Hans"})}
        )

    detector.observe(zh("a", 10, "我的Acme充电器昨晚着火了，桌子都烧黑了", claim))
    detector.observe(zh("b", 11, "acme充电器半夜直接烧起来了，把桌子烧坏了", near(claim, 0.94)))
    detector.observe(post("c", 12, "acme charger burst into flames", near(claim, 0.94, 5)))
    assert detector.story_of(WATCH.id, "x:b") != detector.story_of(WATCH.id, "x:a")  # zh: 0.97
    assert detector.story_of(WATCH.id, "x:c") == detector.story_of(WATCH.id, "x:a")  # en: 0.9


def test_vectors_survive_a_snapshot_and_follow_a_merge() -> None:
    key = (WATCH.id, False)
    claim = unit(7)
    first = Detector(DetectorConfig())
    first.observe(post("a", 10, "My Acme charger caught fire last night", claim))
    second = Detector(DetectorConfig())
    second.restore(key, first.snapshot(key))
    second.observe(post("b", 11, "my acme charger went up in flames", near(claim, 0.98)))
    assert second.story_of(WATCH.id, "x:b") == second.story_of(WATCH.id, "x:a")

    # a paraphrase story that came before the root it paraphrases is merged into it
    root = post("r", 30, "Acme battery pack exploded in my bag", unit(8))
    reposts = [scored(f"p{i}", 30 + i / 10, repost_of="x:r") for i in range(1, 4)]
    said = post("s", 30.5, "acme powerbank blew up inside my backpack", near(unit(8), 0.98))
    detector = Detector(DetectorConfig())
    for item in (*reposts, said, root):
        detector.observe(item)
    assert {detector.story_of(WATCH.id, f"x:{n}") for n in ("r", "s", "p1")} == {"acme:x:r"}
    ws = detector._watches[key]
    assert ws.index.vectors_held == 1
    (story,) = [s for s in ws.index.stories() if s.id == "acme:x:r"]
    assert len(story.vectors) == 2 * DIMS  # its own and the merged story's


def test_a_bad_vector_is_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    detector = Detector(DetectorConfig())
    good = post("a", 10, "My Acme charger caught fire last night", unit(1))
    bad = good.model_copy(update={"embedding": "not base64!"})
    bad = bad.model_copy(update={"mention": bad.mention.model_copy(update={"id": "x:b"})})
    wide = post("c", 11, "My Acme charger caught fire last night!", np.ones(DIMS + 4) / 4.5)
    with caplog.at_level(logging.WARNING):
        for item in (good, bad, wide):
            detector.observe(item)
    assert "embedding is not base64" in caplog.text
    assert detector.story_of(WATCH.id, "x:b") is not None  # counted all the same
    assert detector.story_of(WATCH.id, "x:c") == detector.story_of(WATCH.id, "x:a")  # by text


class FakeEmbedder:
    name = "fake-embed"

    def __init__(self) -> None:
        self.asked: list[str] = []

    def embed(self, texts: list[str]) -> list[str | None]:
        self.asked.extend(texts)
        return [pack(unit(len(t))) if len(t) >= 10 else None for t in texts]


async def test_the_scorer_embeds_texts_without_a_parent_only() -> None:
    from core.bus.memory import MemoryBus
    from core.metrics import Metrics
    from sentiment.config import ScorerConfig

    metrics = Metrics()
    embedder = FakeEmbedder()
    scorer = ScorerService(
        MemoryBus(metrics=metrics), FakeClassifier(), ScorerConfig(), metrics, embedder
    )
    items = [
        scored("a", 1, text="My Acme charger caught fire", label="negative"),
        scored("b", 1, text="same here, mine too", reply_to="x:a", label="negative"),
        scored("c", 1, repost_of="x:a", label="negative"),
        scored("d", 1, text="short", label="negative"),
        scored("e", 1, text="Love my new Acme charger, fast", label="positive"),
    ]
    mentions: list[Mention] = [i.mention for i in items]
    sentiments = [i.sentiment for i in items]
    vectors = await scorer.embed(mentions, sentiments)
    # no parent, and negative (scorer.embed_labels): a positive post is not embedded
    assert embedder.asked == ["My Acme charger caught fire", "short"]
    assert vectors[0] is not None and vectors[1:] == [None] * 4
    every = ScorerConfig(embed_labels=("negative", "neutral", "positive"))
    scorer = ScorerService(MemoryBus(metrics=metrics), FakeClassifier(), every, metrics, embedder)
    assert (await scorer.embed(mentions, sentiments))[4] is not None
    without = ScorerService(MemoryBus(metrics=metrics), FakeClassifier(), ScorerConfig(), metrics)
    assert await without.embed(mentions, sentiments) == [None] * 5


def test_a_model_change_resets_the_vectors_and_junk_is_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from sentiment.detector.stories import WIDTH_SWITCH

    detector = Detector(DetectorConfig(paraphrase_threshold=0.9))
    junk = post("j", 9, "acme acme acme acme acme acme", np.ones(4) / 2)  # 4 values: not a vector
    old = post("o", 10, "Acme phone battery died after two hours", unit(1))
    rng = np.random.default_rng(5)

    def wide() -> np.ndarray:
        v = rng.normal(size=2 * DIMS).astype(np.float32)
        return v / np.linalg.norm(v)

    odd = post("odd", 10.5, "acme store queue was long today, whatever", wide())
    for item in (junk, old, odd):
        detector.observe(item)
    ws = detector._watches[(WATCH.id, False)]
    assert ws.index.vectors_held == 1  # one odd vector wipes nothing
    posts = [post("a", 11, "My Acme charger caught fire last night", wide())]
    posts += [
        post(f"n{i}", 11 + i / 10, text, wide())
        for i, text in enumerate(
            [
                "Acme lamp flickers every evening since the update",
                "my kettle from acme leaks water onto the counter",
                "Drone by acme lost signal over the lake yesterday",
                "acme laptop fan is loud when idle, any fix?",
                "Blender (acme) jammed on frozen fruit twice",
                "the acme scooter app logs me out daily",
                "Camera focus on my acme phone hunts in low light",
            ],
            start=1,
        )
    ]
    assert 1 + len(posts) > WIDTH_SWITCH  # (with the odd one: enough in a row)
    with caplog.at_level(logging.WARNING):
        for item in posts:
            detector.observe(item)
    assert "the scorer's model changed" in caplog.text  # 16 values, then 32 in a row
    (story,) = [s for s in ws.index.stories() if s.id == "acme:x:o"]
    assert story.vectors == b""  # the old model's vectors are gone
    fresh = wide()  # the new model's vectors join paraphrases from now on
    detector.observe(post("c", 12, "Acme headphones exploded while charging", fresh))
    detector.observe(post("d", 13, "acme headphones blew up on the charger", near(fresh, 0.97)))
    assert detector.story_of(WATCH.id, "x:d") == detector.story_of(WATCH.id, "x:c")
