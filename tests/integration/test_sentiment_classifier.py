"""The shipped offline classifier: English ONNX model + Chinese n-gram model + router.

Labels are compared, never floats across batchings: int8 kernels may differ in the last
bits with batch shape, thread count and CPU. The model loads once per session.
"""

from __future__ import annotations

import json
import math
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.cli import main as cli_main
from core.events import LABELS
from sentiment.chinese import ChineseModel, features
from sentiment.classifier import ABSTAIN_SUFFIX, Classifier
from sentiment.config import MODELS_DIR, ClassifierConfig, ScorerConfig
from sentiment.encoder import EncoderModel
from sentiment.textnorm import normalise
from sentiment.transformer import (
    ABSTAIN_PRIOR,
    ModelLoadError,
    SentimentClassifier,
    language_code,
    load_classifier,
    route,
)

model = pytest.mark.model
ENGLISH = {"en-word-ngram", "en-minilm-l3"}
CHINESE = {"zh-char-ngram", "zh-e5-l6+zh-char-ngram"}


class NetworkGuard:
    """Replaces socket connects: any attempt is recorded and fails."""

    def __init__(self) -> None:
        self.attempts: list[Any] = []

    def connect(self, sock: socket.socket, address: Any) -> None:
        self.attempts.append(address)
        raise OSError(f"network access attempted during an offline load: {address}")


@pytest.fixture(scope="session")
def offline_load(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[SentimentClassifier, NetworkGuard]]:
    """Load once, with HF_HUB_OFFLINE=1, an empty HF cache and every socket connect refused."""
    guard = NetworkGuard()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        mp.setenv("HF_HOME", str(tmp_path_factory.mktemp("no-hf-cache")))
        mp.setattr(socket.socket, "connect", guard.connect)
        mp.setattr(socket.socket, "connect_ex", guard.connect)
        classifier = load_classifier(ScorerConfig())
    assert isinstance(classifier, SentimentClassifier)
    yield classifier, guard


@pytest.fixture
def classifier(offline_load: tuple[SentimentClassifier, NetworkGuard]) -> SentimentClassifier:
    return offline_load[0]


@model
def test_loads_offline_without_touching_the_network(
    offline_load: tuple[SentimentClassifier, NetworkGuard],
) -> None:
    classifier, guard = offline_load
    assert guard.attempts == []
    assert isinstance(classifier, Classifier)
    assert classifier.english.card.name == "en-minilm-l3"
    assert classifier.chinese.name == "zh-char-ngram"


@model
def test_obvious_english_and_chinese_posts(classifier: SentimentClassifier) -> None:
    texts = [
        "I love this phone, best purchase ever",
        "terrible service, I want a refund, total scam",
        "the store opens at nine",
        "太好了，非常喜欢这个产品[哈哈][哈哈]",
        "垃圾服务，气死我了，再也不买了[怒]",
        "客服态度太差了，要求退款[怒][怒]",
    ]
    result = classifier.classify(texts, ["en", "en", None, "zh", "zh", None])
    assert [s.label for s in result] == [
        "positive", "negative", "neutral", "positive", "negative", "negative",
    ]  # fmt: skip
    assert all(s.model in ENGLISH for s in result[:3])
    assert all(s.model in CHINESE for s in result[3:])
    assert all(s.version == classifier.version for s in result)


@model
def test_the_cascade_sends_only_unsure_texts_to_the_transformer(
    classifier: SentimentClassifier,
) -> None:
    texts = ["I love this phone, best purchase ever", "hmm, not sure what to make of it"]
    with_cascade = classifier.classify(texts, ["en", "en"])
    assert [s.model for s in with_cascade] == ["en-word-ngram", "en-minilm-l3"]
    assert classifier.words is not None
    sure = classifier.words.predict_proba(texts).max(axis=1)
    assert sure[0] >= 0.7 > sure[1]
    plain = SentimentClassifier(classifier.english, classifier.chinese)  # no cascade
    without = plain.classify(texts, ["en", "en"])
    assert [s.model for s in without] == ["en-minilm-l3"] * 2
    assert [s.label for s in without] == [s.label for s in with_cascade]


@model
def test_the_chinese_cascade_asks_the_encoder_only_where_the_ngram_model_is_unsure(
    classifier: SentimentClassifier,
) -> None:
    texts = [
        "太好了，非常喜欢这个产品[哈哈][哈哈]",
        "这家公司太垃圾了 我要退款",
        "客服态度还行吧，就是物流有点慢",
    ]
    sure = np.abs(2 * classifier.chinese.positive_proba(texts) - 1)
    assert sure[0] >= 0.8 > max(sure[1], sure[2])  # the n-gram model at threshold 0.9
    result = classifier.classify(texts, ["zh"] * 3)
    assert [s.model for s in result] == ["zh-char-ngram"] + ["zh-e5-l6+zh-char-ngram"] * 2
    # the n-gram model alone is unsure about the complaint; the encoder makes it negative
    alone = SentimentClassifier(classifier.english, classifier.chinese)
    assert alone.classify(texts[1:2], ["zh"])[0].model == "zh-char-ngram"
    assert result[1].label == "negative"
    assert result[1].probs["negative"] > alone.classify(texts[1:2], ["zh"])[0].probs["negative"]
    everything = SentimentClassifier(
        classifier.english, classifier.chinese, chinese_encoder=classifier.chinese_encoder,
        chinese_threshold=1.0,
    )  # fmt: skip
    assert {s.model for s in everything.classify(texts, ["zh"] * 3)} == {"zh-e5-l6+zh-char-ngram"}
    assert classifier.chinese_encoder is not None
    assert classifier.chinese_encoder.card.labels == ("negative", "positive")
    assert classifier.version.endswith("+" + classifier.chinese_encoder.card.version)


@model
def test_the_chinese_encoder_can_be_switched_off() -> None:
    plain = load_classifier(ScorerConfig(classifier=ClassifierConfig(chinese=None)))
    assert isinstance(plain, SentimentClassifier) and plain.chinese_encoder is None
    result = plain.classify(["这家公司太垃圾了 我要退款"], ["zh"])
    assert result[0].model == "zh-char-ngram"


@model
def test_one_calibrated_distribution_per_text(classifier: SentimentClassifier) -> None:
    long_en = "the service was slow and " * 2000
    long_zh = "服务太慢了，" * 3000
    texts = ["great", "", "   ", "😍😍😍", "🔥", long_en, long_zh, "@bob http://x.y/z \\u002c ok"]
    result = classifier.classify(texts, ["en", "en", None, None, "en", "en", "zh", "en-US"])
    assert len(result) == len(texts)
    for s in result:
        assert set(s.probs) == set(LABELS)
        assert math.isclose(sum(s.probs.values()), 1.0, abs_tol=1e-6)
        assert all(0.0 <= p <= 1.0 for p in s.probs.values())
        assert s.label == max(s.probs, key=lambda k: s.probs[k])
    assert result[1].label == result[2].label == "neutral"
    assert result[1].probs["neutral"] == 1.0
    assert not result[3].model.endswith(ABSTAIN_SUFFIX)  # emoji-only is judged (as English)


@model
def test_emoji_only_posts_are_read(classifier: SentimentClassifier) -> None:
    result = classifier.classify(["😍😍😍", "😡😡", "👍", "💩"], [None, None, "en", None])
    assert [s.label for s in result] == ["positive", "negative", "positive", "negative"]


def test_normalise() -> None:
    text = "@Bob I ❤️ it \\u002c &amp; 😂 https://t.co/x  "
    assert normalise(text) == "@user I love it , & lol http"
    assert len(normalise("a" * 100_000, max_chars=500)) == 500


@model
def test_batch_and_single_results_agree(classifier: SentimentClassifier) -> None:
    texts = [
        "I love this phone, best purchase ever, the camera is stunning and the battery lasts",
        "scam",
        "",
        "the meeting is at 3pm",
        "今天天气真好，开心[太开心]",
        "terrible service, I want a refund, total scam",
        "Ich liebe es",
        "thank you!",
    ] * 6  # more than one inference sub-batch
    langs = [None, "en", "en", "en", "zh", "en", "de", None] * 6
    together = [s.label for s in classifier.classify(texts, langs)]
    alone = [
        classifier.classify([t], [lang])[0].label for t, lang in zip(texts, langs, strict=True)
    ]
    assert together == alone


@model
def test_worker_threads_give_the_same_answers_as_one(classifier: SentimentClassifier) -> None:
    texts = [
        f"tweet {i}: {'so happy today' if i % 3 else 'this is awful'} #{i}" for i in range(100)
    ]
    assert classifier.english.workers == 2  # the default: two forward passes at once
    single = EncoderModel(MODELS_DIR / "en-minilm-l3.json", workers=1)
    seen: list[tuple[int, int]] = []
    pooled = classifier.english.logits(texts, progress=lambda done, n: seen.append((done, n)))
    assert np.allclose(pooled, single.logits(texts), atol=1e-5)
    assert seen[-1] == (100, 100) and len(seen) == 4  # sub-batches of 32
    single.close()


@model
def test_outputs_are_deterministic(classifier: SentimentClassifier) -> None:
    texts = ["meh, it's fine I guess", "服务还行吧", "worst day ever", "期待下一次"]
    langs: list[str | None] = ["en", "zh", "en", "zh"]
    first = classifier.classify(texts, langs)
    assert classifier.classify(texts, langs) == first


@model
def test_unsupported_languages_abstain(classifier: SentimentClassifier) -> None:
    texts = ["Ich liebe es", "この会社は最悪です", "Это ужасно", "I love it", "这家公司太垃圾了"]
    result = classifier.classify(texts, ["de", None, None, "EN", "zh-Hans-CN"])
    for s in result[:3]:
        assert s.label == "neutral"
        assert s.model.endswith(ABSTAIN_SUFFIX)
        assert s.probs == ABSTAIN_PRIOR
    assert result[3].model in ENGLISH and result[3].label == "positive"
    assert result[4].model in CHINESE


@model
def test_cli_classify_and_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.jsonl"
    rows = [
        {"id": "a", "text": "I love it, thank you!", "lang": "en"},
        {"id": "b", "text": "垃圾服务，气死我了[怒]", "lang": "zh"},
        {"id": "c", "text": "I love it, thank you!"},
        {"id": 4, "text": ""},
    ]
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    assert cli_main(["sentiment", "classify", "--input", str(source), "--output", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["a", "b", "c", 4]
    assert [line["label"] for line in lines] == ["positive", "negative", "positive", "neutral"]
    assert all(set(line["scores"]) == set(LABELS) for line in lines)

    labelled = tmp_path / "gold.jsonl"
    gold = [("I love it, thank you!", "positive"), ("垃圾服务，气死我了[怒]", "negative")]
    labelled.write_text(
        "".join(json.dumps({"text": t, "label": g}, ensure_ascii=False) + "\n" for t, g in gold)
    )
    numbers = tmp_path / "numbers.json"
    args = ["sentiment", "eval", "--input", str(labelled), "--json", str(numbers), "--quiet"]
    assert cli_main(args) == 0
    result = json.loads(numbers.read_text())
    assert result["binary"] is True and result["accuracy"] == 1.0 and result["n"] == 2
    assert "macro_recall" in capsys.readouterr().out


# ------------------------------------------------------------ no model run below


def test_cli_rejects_bad_input_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a", "text": "ok"}\n{"id": "b"}\n')
    args = ["sentiment", "classify", "--input", str(source), "--output", str(tmp_path / "o")]
    assert cli_main(args) == 2
    assert 'in.jsonl:2: needs an object with a string "text"' in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("hello", "en", "en"),
        ("hello", "en-GB", "en"),
        ("你好", "zh-Hant-TW", "zh"),
        ("你好", "yue", "zh"),
        ("hello", "de", None),
        ("hello", None, "en"),
        ("🔥🔥", None, "en"),
        ("", "und", "en"),
        ("今天天气真好", None, "zh"),
        ("今日はとても良い天気です", None, None),
        ("Это ужасно", None, None),
        ("iPhone 太贵了", None, "zh"),
    ],
)
def test_route(text: str, lang: str | None, expected: str | None) -> None:
    assert route(text, lang) == expected


def test_language_code() -> None:
    assert language_code("en_US") == "en"
    assert language_code(" ZH-cn ") == "zh"
    assert language_code("und") == language_code(None) == ""


def test_missing_model_directory_is_a_clear_error(tmp_path: Path) -> None:
    config = ScorerConfig(classifier=ClassifierConfig(model_dir=tmp_path / "nowhere"))
    with pytest.raises(ModelLoadError, match=r"does not exist.*never downloaded"):
        load_classifier(config)


def test_missing_or_tampered_files_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    shutil.copytree(MODELS_DIR, folder)
    config = ScorerConfig(classifier=ClassifierConfig(model_dir=folder))
    graph = folder / "en-minilm-l3.int8.onnx"
    graph.write_bytes(graph.read_bytes()[:-1] + b"\0")
    with pytest.raises(ModelLoadError, match="does not match the digest"):
        load_classifier(config)
    graph.unlink()
    with pytest.raises(ModelLoadError, match=r"is missing .*never downloaded"):
        load_classifier(config)
    (folder / "zh-char-ngram.npz").unlink()
    shutil.copy(MODELS_DIR / "en-minilm-l3.int8.onnx", graph)
    with pytest.raises(ModelLoadError, match="Chinese model file missing"):
        load_classifier(config)
    shutil.copy(MODELS_DIR / "zh-char-ngram.npz", folder / "zh-char-ngram.npz")
    (folder / "zh-e5-l6.int8.onnx").unlink()
    with pytest.raises(ModelLoadError, match=r"zh-e5-l6.int8.onnx is missing"):
        load_classifier(config)
    load_classifier(ScorerConfig(classifier=ClassifierConfig(model_dir=folder, chinese=None)))


def test_chinese_model_round_trip(tmp_path: Path) -> None:
    model = ChineseModel(
        name="zh-test", version="1", max_n=2, weights={"好": 2.0, "E[怒]": -3.0, "垃圾": -2.5},
        bias=0.1, neutral_mass=0.5, metrics={"n": 1},
    )  # fmt: skip
    model.save(tmp_path / "zh.json", tmp_path / "zh.npz")
    again = ChineseModel.load(tmp_path / "zh.json")
    assert again.weights == model.weights and again.bias == model.bias
    probs = again.predict_proba(["好", "垃圾[怒]", "", "天气"])
    assert probs.shape == (4, 3)
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert list(probs.argmax(axis=1)) == [2, 0, 1, 1]  # unsure (bias only) -> neutral


def test_features_include_emoticon_codes() -> None:
    feats = features("好[哈哈] A", max_n=2)
    assert "E[哈哈]" in feats and "好[" in feats and "a" in feats and "A" not in feats


def test_shipped_files_are_small_and_carry_no_text() -> None:
    for path in MODELS_DIR.iterdir():
        assert path.stat().st_size < 50_000_000, path
    for card in MODELS_DIR.glob("*.json"):
        if card.name.endswith("tokenizer.json"):
            continue
        doc = json.loads(card.read_text(encoding="utf-8"))
        assert all(len(s) < 200 for s in _strings(doc)), card  # names, not posts
    l3 = json.loads((MODELS_DIR / "en-minilm-l3.json").read_text(encoding="utf-8"))
    assert l3["metrics"]["en_val"]["macro_recall"] >= 0.72


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value
