"""The shipped sentence-embedding model (e5-embed): loads offline from the repository,
tells a paraphrase from another claim about the same brand in English and Chinese, and
joins paraphrased complaints into one story through the scorer and the detector."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.bus.memory import MemoryBus
from core.events import ScoredMention
from core.metrics import Metrics
from sentiment.config import MODELS_DIR, ScorerConfig
from sentiment.detector.config import DetectorConfig
from sentiment.detector.detector import Detector
from sentiment.embedder import SentenceEmbedder, load_embedder, unpack
from sentiment.errors import ModelLoadError
from sentiment.scorer import ScorerService
from tests.fakes import FakeClassifier
from tests.unit.test_detector import WATCH, scored

pytestmark = pytest.mark.model

# (a claim, the same claim in other words, another claim about the same brand)
TRIPLES = [
    (
        "My @AcmeSupport charger caught fire last night and burned my desk",
        "acme charger literally burst into flames overnight, scorched the whole desk",
        "Acme customer service never answers my emails about a refund",
    ),
    (
        "我的Acme充电器昨晚着火了，桌子都烧黑了",
        "acme充电器半夜直接烧起来了，把桌子烧坏了",
        "Acme客服一直不回复我的退款申请，打了三次电话都没人接，太差劲了",
    ),
]


@pytest.fixture(scope="module")
def embedder() -> Iterator[SentenceEmbedder]:
    model = SentenceEmbedder(MODELS_DIR / "e5-embed.json", min_chars=20)
    yield model
    model.close()


def cosine(a: str, b: str) -> float:
    return float(unpack(a).dot(unpack(b)))


def test_a_paraphrase_is_closer_than_another_claim(embedder: SentenceEmbedder) -> None:
    threshold = DetectorConfig().paraphrase_threshold
    for claim, same, other in TRIPLES:
        a, b, c = embedder.embed([claim, same, other])
        assert a is not None and b is not None and c is not None
        assert len(unpack(a, embedder.dims)) == embedder.dims == 384
        assert cosine(a, b) > cosine(a, c) + 0.03, claim
        assert cosine(a, c) < threshold, (claim, cosine(a, c))
    assert embedder.embed(["too short"]) == [None]


def test_loading_needs_the_files_and_an_embedding_card(tmp_path: object) -> None:
    assert load_embedder(ScorerConfig()) is None  # off by default
    with pytest.raises(ModelLoadError, match="not an embedding model"):
        SentenceEmbedder(MODELS_DIR / "zh-e5-l6.json", min_chars=20)
    with pytest.raises(ModelLoadError, match="does not exist"):
        SentenceEmbedder(MODELS_DIR / "nothing.json", min_chars=20)


async def test_paraphrased_complaints_end_in_one_story(embedder: SentenceEmbedder) -> None:
    metrics = Metrics()
    config = ScorerConfig(embedder="e5-embed")
    scorer = ScorerService(MemoryBus(metrics=metrics), FakeClassifier(), config, metrics, embedder)
    posts = [
        scored("a", 10, text="Acme charger caught fire and burned my desk, I want a refund"),
        scored("b", 11, text="my acme charger burst into flames and scorched my desk. refund!!"),
        scored("c", 12, text="Acme support is a scam, still waiting on my refund for a broken tv"),
    ]
    mentions = [p.mention for p in posts]
    sentiments = await scorer.score(mentions)
    vectors = await scorer.embed(mentions, sentiments)
    assert all(v is not None for v in vectors)  # all negative (the fake's keywords)
    detector = Detector(DetectorConfig())
    for mention, sentiment, vector in zip(mentions, sentiments, vectors, strict=True):
        detector.observe(ScoredMention(mention=mention, sentiment=sentiment, embedding=vector))
    stories = [detector.story_of(WATCH.id, m.id) for m in mentions]
    assert stories[0] == stories[1] != stories[2], [cosine(vectors[0], v) for v in vectors]  # type: ignore[arg-type]
