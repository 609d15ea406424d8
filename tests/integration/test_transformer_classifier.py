"""The real offline classifier: packaged MiniLM encoder + the shipped head.

Labels are compared, never floats: embeddings differ in the last bits across CPUs and
thread counts.
"""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.events import LABELS
from sentiment.config import DEFAULT_HEAD, ClassifierConfig, ScorerConfig
from sentiment.transformer import (
    LinearHead,
    ModelLoadError,
    TransformerClassifier,
    language_code,
    load_classifier,
    mostly_latin,
    preprocess,
)

model = pytest.mark.model


class NetworkGuard:
    """Replaces socket connects: any attempt is recorded and fails."""

    def __init__(self) -> None:
        self.attempts: list[Any] = []

    def connect(self, sock: socket.socket, address: Any) -> None:
        self.attempts.append(address)
        raise OSError(f"network access attempted during an offline load: {address}")


@pytest.fixture(scope="module")
def offline_load() -> Iterator[tuple[TransformerClassifier, NetworkGuard]]:
    """Load once per module, with HF_HUB_OFFLINE=1 and every socket connect refused."""
    guard = NetworkGuard()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        mp.setattr(socket.socket, "connect", guard.connect)
        mp.setattr(socket.socket, "connect_ex", guard.connect)
        classifier = load_classifier(ScorerConfig())
    assert isinstance(classifier, TransformerClassifier)
    yield classifier, guard


@pytest.fixture
def classifier(offline_load: tuple[TransformerClassifier, NetworkGuard]) -> TransformerClassifier:
    return offline_load[0]


@model
def test_loads_offline_without_touching_the_network(
    offline_load: tuple[TransformerClassifier, NetworkGuard],
) -> None:
    classifier, guard = offline_load
    assert guard.attempts == []
    shipped = json.loads(DEFAULT_HEAD.read_text(encoding="utf-8"))
    assert classifier.name == shipped["name"] == "minilm-l6-head"
    assert classifier.version == shipped["version"]


@model
def test_obvious_english_sentences(classifier: TransformerClassifier) -> None:
    texts = [
        "I love this phone, best purchase ever",
        "terrible service, I want a refund, total scam",
        "Absolutely amazing support team, thank you so much!",
        "This is the worst airline, they lost my bag and nobody cares",
    ]
    result = classifier.classify(texts, ["en"] * len(texts))
    assert [s.label for s in result] == ["positive", "negative", "positive", "negative"]
    assert all(s.model == "minilm-l6-head" and s.version == classifier.version for s in result)


@model
def test_one_calibrated_distribution_per_text(classifier: TransformerClassifier) -> None:
    texts = ["great", "", "the store opens at nine", "   ", "ok so @bob says http://x.y/z"]
    result = classifier.classify(texts, ["en", "en", None, None, "en-US"])
    assert len(result) == len(texts)
    for s in result:
        assert set(s.probs) == set(LABELS)
        assert math.isclose(sum(s.probs.values()), 1.0, abs_tol=1e-6)
        assert all(0.0 <= p <= 1.0 for p in s.probs.values())
        assert s.label == max(s.probs, key=lambda k: s.probs[k])
    assert result[1].label == result[3].label == "neutral"
    assert result[1].probs["neutral"] == 1.0


@model
def test_batching_and_length_sorting_keep_the_order(classifier: TransformerClassifier) -> None:
    texts = [
        "I love this phone, best purchase ever, the camera is stunning and the battery lasts",
        "scam",
        "",
        "the meeting is at 3pm",
        "terrible service, I want a refund, total scam",
        "thank you!",
    ] * 7  # more than one inference sub-batch
    together = [s.label for s in classifier.classify(texts, ["en"] * len(texts))]
    alone = [classifier.classify([t], ["en"])[0].label for t in texts[:6]]
    assert together == alone * 7


@model
def test_unsupported_languages_abstain(classifier: TransformerClassifier) -> None:
    texts = ["这家公司太垃圾了 我要退款", "这家公司太垃圾了 我要退款", "Ich liebe es", "I love it"]
    result = classifier.classify(texts, ["zh", None, "de", "EN"])
    for s in result[:3]:
        assert s.label == "neutral"
        assert s.model == "minilm-l6-head:abstain"
        assert s.probs == dict(zip(classifier.head.labels, classifier.head.prior, strict=True))
    assert result[3].model == "minilm-l6-head" and result[3].label == "positive"


@model
def test_a_head_of_the_wrong_size_is_refused(classifier: TransformerClassifier) -> None:
    doc = head_doc(dim=10)
    with pytest.raises(ModelLoadError, match="expects 10-dimensional embeddings"):
        TransformerClassifier(classifier.encoder, LinearHead.from_document(doc))


# ------------------------------------------------------------ no model needed below


def head_doc(dim: int = 4, **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": 1,
        "name": "h",
        "version": "v1",
        "labels": ["negative", "neutral", "positive"],
        "languages": ["en"],
        "W": [[0.0] * dim for _ in range(3)],
        "b": [0.0, 0.0, 0.0],
    }
    return doc | changes


def test_missing_model_directory_is_a_clear_error(tmp_path: Path) -> None:
    config = ScorerConfig(classifier=ClassifierConfig(model_dir=tmp_path / "nowhere"))
    with pytest.raises(ModelLoadError, match=r"does not exist.*never downloaded"):
        load_classifier(config)


def test_incomplete_model_directory_names_the_missing_files(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    config = ScorerConfig(classifier=ClassifierConfig(model_dir=tmp_path))
    with pytest.raises(ModelLoadError, match=r"lacks model\.safetensors.*tokenizer\.json"):
        load_classifier(config)


def test_missing_head_file_is_a_clear_error(tmp_path: Path) -> None:
    config = ScorerConfig(classifier=ClassifierConfig(head=tmp_path / "none.json"))
    with pytest.raises(ModelLoadError, match=r"head file .* does not exist"):
        load_classifier(config)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"labels": ["bad", "neutral", "positive"]}, "labels must be"),
        ({"b": [0.0, 0.0]}, "W must be 3 x dim"),
        ({"W": [[float("nan")] * 4] * 3}, "finite"),
        ({"languages": []}, "languages"),
        ({"prior": [0.5, 0.5, 0.5]}, "prior"),
        ({"format": 2}, "format"),
    ],
)
def test_invalid_head_files_are_refused(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    path = tmp_path / "head.json"
    path.write_text(json.dumps(head_doc(**changes)))
    with pytest.raises(ModelLoadError, match=message):
        LinearHead.load(path)


def test_the_shipped_head_is_valid_and_carries_no_text() -> None:
    head = LinearHead.load(DEFAULT_HEAD)
    assert head.dim == 384 and head.languages == {"en"}
    assert head.metrics["en_val"]["macro_recall"] > 0.6
    doc = json.loads(DEFAULT_HEAD.read_text(encoding="utf-8"))
    strings = [v for v in _leaves(doc) if isinstance(v, str)]
    assert all(len(s) < 200 for s in strings)  # descriptions and names, not tweets


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def test_language_rules() -> None:
    assert language_code("en-US") == "en" and language_code("ZH_hans") == "zh"
    assert language_code(None) == language_code("und") == ""
    assert mostly_latin("Crème brûlée!") and mostly_latin("🔥🔥 !!!")
    assert not mostly_latin("这家公司 bad") and not mostly_latin("Привет мир")
    head = LinearHead.from_document(head_doc())
    assert head.supports("hello", "en-GB") and head.supports("hello", None)
    assert not head.supports("hello", "fr") and not head.supports("你好世界", None)
    assert LinearHead.from_document(head_doc(languages=["*"])).supports("你好", "zh")


def test_preprocess_masks_handles_and_links() -> None:
    text = "@Acme_Support your app at https://acme.com/x?y=1 broke, cc @bob me@mail.com"
    assert preprocess(text, 1000) == "@user your app at http broke, cc @user me@mail.com"
    assert preprocess("x" * 50, 10) == "x" * 10
