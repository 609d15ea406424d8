"""Review of ``crisiswatch sentiment classify | eval`` input handling: the gold label
spellings labelled sets use (TweetEval's 0/1/2, Weibo's 0/1, "Negative", "neg", ...),
gzip-compressed input, a byte-order mark inside a concatenation of files, UTF-16 files;
and the eval metrics checked by hand. No real model: ``tests.unit.test_sentiment_input_edges``'
fake classifier ("good" positive, "bad" negative, else neutral).
"""

from __future__ import annotations

import gzip
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from sentiment.evaluation import gold_label, numeric_scheme, report
from tests.unit import test_sentiment_input_edges as edges
from tests.unit.test_sentiment_input_edges import Fake, classify, evaluate, write_lines

fake = edges.fake  # the fixtures: a fake model, or none (it must not load)
no_model = edges.no_model


def _numbers(tmp_path: Path, gold: Path) -> dict[str, Any]:
    out = tmp_path / "numbers.json"
    assert evaluate(gold, "--json", str(out)) == 0
    result: dict[str, Any] = json.loads(out.read_text())
    return result


# ------------------------------------------------------------------ gold label spellings


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("negative", "negative"),
        ("Negative", "negative"),
        (" NEGATIVE ", "negative"),
        ("neg", "negative"),
        ("Neutral", "neutral"),
        ("neu", "neutral"),
        ("objective", "neutral"),
        ("pos", "positive"),
        ("Positive", "positive"),
        ("正面", "positive"),
        ("负面", "negative"),
        (0, 0),
        (2, 2),
        (-1, -1),
        ("1", 1),
        (" 2 ", 2),
        ("-1", -1),
        (1.0, 1),
        (True, None),
        (3, None),
        ("3", None),
        ("--1", None),
        (0.5, None),
        (None, None),
        ("", None),
        ("good", None),
        (["negative"], None),
    ],
)
def test_gold_label_spellings(value: object, expected: object) -> None:
    assert gold_label(value) == expected


def test_numeric_schemes_follow_the_numbers_of_the_whole_set() -> None:
    def mapping(codes: set[int]) -> dict[int, str] | None:
        scheme = numeric_scheme(codes)
        return None if scheme is None else dict(scheme[1])

    assert mapping({0, 1, 2}) == {0: "negative", 1: "neutral", 2: "positive"}
    assert mapping({0, 2}) == {0: "negative", 1: "neutral", 2: "positive"}
    assert mapping({-1, 0, 1}) == {-1: "negative", 0: "neutral", 1: "positive"}
    assert mapping({0, 1}) == {0: "negative", 1: "positive"}
    assert mapping({-1, 2}) is None
    assert mapping(set()) is None


def test_eval_reads_label_names_in_any_case_and_short_forms(tmp_path: Path, fake: Fake) -> None:
    gold = write_lines(
        tmp_path / "gold.jsonl",
        {"text": "good", "label": "Positive"},
        {"text": "bad", "label": "NEG"},
        {"text": "meh", "label": "neutral"},
        {"text": "bad", "label": "Neutral"},  # wrong
        {"text": "good", "label": "pos"},
    )
    result = _numbers(tmp_path, gold)
    assert result["binary"] is False and result["n"] == 5
    assert result["accuracy"] == 0.8


def test_eval_reads_tweeteval_numbers_as_three_classes(
    tmp_path: Path, fake: Fake, capsys: pytest.CaptureFixture[str]
) -> None:
    gold = write_lines(
        tmp_path / "gold.jsonl",
        {"text": "bad", "label": 0},
        {"text": "meh", "label": 1},
        {"text": "good", "label": 2},
        {"text": "good", "label": "1"},  # strings too: wrong (neutral)
    )
    result = _numbers(tmp_path, gold)
    assert result["binary"] is False
    assert result["accuracy"] == 0.75
    assert result["macro_recall"] == round((1 + 0.5 + 1) / 3, 4)
    assert "0 negative, 1 neutral, 2 positive" in capsys.readouterr().err


def test_eval_reads_weibo_zero_one_as_binary(
    tmp_path: Path, fake: Fake, capsys: pytest.CaptureFixture[str]
) -> None:
    gold = write_lines(
        tmp_path / "gold.jsonl",
        {"text": "好 good", "label": 1},
        {"text": "差 bad", "label": 0},
        {"text": "neither", "label": 0},  # neutral 0.8, negative 0.1 = positive 0.1: negative
    )
    result = _numbers(tmp_path, gold)
    assert result["binary"] is True and result["accuracy"] == 1.0
    assert "0 negative, 1 positive" in capsys.readouterr().err


def test_eval_reads_signed_labels(tmp_path: Path, fake: Fake) -> None:
    gold = write_lines(
        tmp_path / "gold.jsonl",
        {"text": "bad", "label": -1},
        {"text": "meh", "label": 0},
        {"text": "good", "label": 1},
    )
    result = _numbers(tmp_path, gold)
    assert result["binary"] is False and result["accuracy"] == 1.0


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (["positive", 0], "names on line 1 and numbers on this one"),
        ([0, "neg"], ":2: gold labels are numbers on line 1 and names on this one"),
        ([-1, 2], "fit no scheme"),
        ([5], '"label" must be'),
        ([True], '"label" must be'),
    ],
)
def test_eval_refuses_labels_it_cannot_read_before_loading(
    tmp_path: Path,
    no_model: None,
    capsys: pytest.CaptureFixture[str],
    labels: list[Any],
    message: str,
) -> None:
    gold = write_lines(tmp_path / "gold.jsonl", *({"text": "x", "label": v} for v in labels))
    assert evaluate(gold) == 2
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------ gzip, BOM, UTF-16


def test_classify_and_eval_read_gzip_files(tmp_path: Path, fake: Fake) -> None:
    rows = ({"id": 7, "text": "good"}, {"id": "8", "text": "bad"})
    plain = write_lines(tmp_path / "in.jsonl", *rows)
    packed = tmp_path / "in.jsonl.gz"
    packed.write_bytes(gzip.compress(b"\xef\xbb\xbf" + plain.read_bytes()))
    out = tmp_path / "out.jsonl"
    assert classify(packed, out) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(line["id"], line["label"]) for line in lines] == [(7, "positive"), ("8", "negative")]
    gold = tmp_path / "gold.data"  # told by its bytes, not its name
    gold.write_bytes(gzip.compress(b'{"text": "good", "label": 1}\n{"text": "bad", "label": 0}'))
    assert _numbers(tmp_path, gold)["accuracy"] == 1.0


def test_gzip_on_standard_input(
    tmp_path: Path, fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = gzip.compress(b'{"id": 1, "text": "good"}\n')
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(data))))
    out = tmp_path / "out.jsonl"
    assert classify(Path("-"), out) == 0
    assert json.loads(out.read_text())["label"] == "positive"


def test_damaged_gzip_is_one_message(
    tmp_path: Path, fake: Fake, capsys: pytest.CaptureFixture[str]
) -> None:
    packed = tmp_path / "in.jsonl.gz"
    lines = "".join(json.dumps({"id": i, "text": "good"}) + "\n" for i in range(50))
    packed.write_bytes(gzip.compress(lines.encode())[:-12])
    out = tmp_path / "out.jsonl"
    assert classify(packed, out) == 2
    assert "gzip data is damaged or cut short" in capsys.readouterr().err
    assert not out.exists()


def test_a_bom_starting_a_later_line_is_accepted(tmp_path: Path, fake: Fake) -> None:
    """``cat a.jsonl b.jsonl`` of two files saved with a BOM (Windows tools)."""
    source = tmp_path / "in.jsonl"
    source.write_bytes(
        b'\xef\xbb\xbf{"id": 1, "text": "good"}\r\n\xef\xbb\xbf{"id": 2, "text": "bad"}\r\n'
    )
    out = tmp_path / "out.jsonl"
    assert classify(source, out) == 0
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [1, 2]


def test_a_utf16_file_is_named_as_such(
    tmp_path: Path, no_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Windows PowerShell 5's ``>`` writes UTF-16 with a BOM."""
    source = tmp_path / "in.jsonl"
    source.write_bytes('{"id": 1, "text": "good"}\n'.encode("utf-16"))
    assert classify(source, tmp_path / "out.jsonl") == 2
    assert "UTF-16" in capsys.readouterr().err


# ------------------------------------------------------------------ metrics, by hand


def test_report_matches_hand_computed_sklearn_style_metrics() -> None:
    gold = ["negative", "negative", "neutral", "positive", "positive", "positive"]
    pred = ["negative", "positive", "neutral", "positive", "neutral", "negative"]
    # recall: neg 1/2, neu 1/1, pos 1/3; precision: neg 1/2, neu 1/2, pos 1/2
    # F1: neg 0.5, neu 2/3, pos 0.4
    assert report(gold, pred) == {
        "macro_recall": round((0.5 + 1 + 1 / 3) / 3, 4),
        "macro_f1": round((0.5 + 2 / 3 + 0.4) / 3, 4),
        "accuracy": 0.5,
    }
    # binary, with an abstention (no answer): over negative/positive only
    gold = ["negative", "negative", "positive", "positive"]
    pred = ["negative", "(no answer)", "positive", "negative"]
    # recall: neg 1/2, pos 1/2; precision: neg 1/2, pos 1/1; F1: neg 0.5, pos 2/3
    assert report(gold, pred) == {
        "macro_recall": 0.5,
        "macro_f1": round((0.5 + 2 / 3) / 2, 4),
        "accuracy": 0.5,
    }
