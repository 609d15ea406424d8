"""Hostile and odd inputs through the shipped classifier and the real CLI.

Labels are compared, never floats across batchings (see test_sentiment_classifier.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.cli import main as cli_main
from core.events import LABELS
from sentiment.config import ScorerConfig
from sentiment.transformer import NAME, SentimentClassifier, load_classifier

pytestmark = pytest.mark.model
ROOT = Path(__file__).resolve().parents[2]
CHINESE = {"zh-char-ngram", "zh-e5-l6+zh-char-ngram"}


@pytest.fixture(scope="module")
def classifier() -> SentimentClassifier:
    loaded = load_classifier(ScorerConfig())
    assert isinstance(loaded, SentimentClassifier)
    return loaded


def test_lone_surrogates_reach_no_tokenizer(classifier: SentimentClassifier) -> None:
    assert classifier.chinese_encoder is not None
    for encoder in (classifier.english, classifier.chinese_encoder):
        assert encoder.logits(["\ud800", "x\udfffy is bad", "好\ud83d"]).shape[0] == 3
    result = classifier.classify(["\ud800", "x\ud800y", "客服\udc00"], [None, "en", "zh"])
    assert all(set(s.probs) == set(LABELS) for s in result)


def test_cli_reads_lone_surrogates_in_texts(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        '{"id": "a", "text": "\\ud800"}\n{"id": "b", "text": "\\u592a\\u597d\\ud800"}\n'
    )
    out = tmp_path / "out.jsonl"
    assert cli_main(["sentiment", "classify", "--input", str(source), "--output", str(out)]) == 0
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "b"]
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"text": "\\ud800", "label": "neutral"}\n')
    assert cli_main(["sentiment", "eval", "--input", str(gold), "--quiet"]) == 0


@pytest.mark.parametrize(
    "text",
    [
        "\u200b",
        "\ufeff",
        " \u200b\u200d \n",
        "\u2060\u3000",
        "&nbsp;",  # nothing once decoded, as the models read it: the encoder guessed
        " &#8203; &nbsp;",
        "\\u200b",  # a literal escape
    ],
)
@pytest.mark.parametrize("lang", [None, "en", "zh"])
def test_invisible_texts_are_empty(
    classifier: SentimentClassifier, text: str, lang: str | None
) -> None:
    result = classifier.classify([text], [lang])[0]
    assert result.label == "neutral" and result.probs["neutral"] == 1.0
    assert result.model == NAME


def test_encoded_padding_does_not_hide_the_text(classifier: SentimentClassifier) -> None:
    """Only a text that is nothing once decoded, all of it, is empty: entities before the
    words do not make it so."""
    text = "&nbsp;" * 100 + "I hate this, worst service ever"  # 600 characters of them
    assert classifier.classify([text], ["en"])[0].label == "negative"


def test_leading_padding_does_not_hide_the_text(classifier: SentimentClassifier) -> None:
    english = "I hate this, worst service ever"
    chinese = "客服态度太差了，垃圾公司"
    texts = [english, " " * 2000 + english, "\n" * 1100 + english, "\u200b" * 3000 + english]
    texts += [chinese, " " * 2100 + chinese, " " * 600 + chinese]
    langs: list[str | None] = ["en"] * 4 + ["zh", "zh", None]
    result = classifier.classify(texts, langs)
    assert [s.label for s in result] == ["negative"] * 7
    assert result[6].model in CHINESE  # routed by the text after the padding


def test_links_and_handles_do_not_route_chinese_to_english(
    classifier: SentimentClassifier,
) -> None:
    texts = ["太垃圾了 https://t.cn/A6xYzAbC", "@AcmeSupportTeam 太垃圾了"]
    assert all(s.model in CHINESE for s in classifier.classify(texts, [None, None]))


def test_binary_eval_scores_abstentions_and_empty_texts_as_wrong(tmp_path: Path) -> None:
    gold = tmp_path / "gold.jsonl"
    rows = [
        {"text": "この会社は最悪です", "label": "positive"},  # abstained (kana)
        {"text": "\u200b", "label": "negative"},  # empty
        {"text": "I love it, thank you!", "label": "positive"},
    ]
    gold.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    numbers = tmp_path / "numbers.json"
    args = ["sentiment", "eval", "--input", str(gold), "--json", str(numbers), "--quiet"]
    assert cli_main(args) == 0
    result = json.loads(numbers.read_text())
    assert result["binary"] is True and result["abstained"] == 1 and result["empty"] == 1
    assert result["accuracy"] == round(1 / 3, 4)


def test_eval_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    """``crisiswatch sentiment eval … | head``: the reader is gone before the numbers come."""
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"text": "I love it", "label": "positive"}\n')
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", "from api.cli import main; raise SystemExit(main())",
             "sentiment", "eval", "--input", str(gold), "--quiet"],
            stdout=write, stderr=subprocess.PIPE, cwd=ROOT, timeout=300, check=False,
        )  # fmt: skip
    finally:
        os.close(write)
    assert proc.stderr.decode() == ""
    assert proc.returncode == 141
