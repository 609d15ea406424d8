"""Hostile and odd inputs to the sentiment CLI and text handling, without the real model.

The CLI tests swap ``api.sentiment_cli._load`` for a small fake classifier (or for one that
fails the test if called, where the command must refuse before loading anything).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from api import output, sentiment_cli
from api.cli import main as cli_main
from core.bus.memory import MemoryBus
from core.events import Label, Mention, Sentiment
from core.metrics import Metrics
from sentiment.chinese import ChineseModel, features
from sentiment.classifier import ABSTAIN_SUFFIX
from sentiment.config import MODELS_DIR, ScorerConfig
from sentiment.embedder import _key as embed_key
from sentiment.errors import ModelLoadError
from sentiment.evaluation import NO_ANSWER, judge, report
from sentiment.scorer import ScorerService, cache_key
from sentiment.textnorm import blank, for_embedding, normalise, readable, squeeze
from sentiment.transformer import route, routing_language
from sentiment.wordmodel import WordModel
from tests.support import close_stdout
from tests.unit.test_scorer import T0, SpyClassifier

NEUTRAL: dict[Label, float] = {"negative": 0.0, "neutral": 1.0, "positive": 0.0}
PRIOR: dict[Label, float] = {"negative": 0.156, "neutral": 0.448, "positive": 0.396}


class Fake:
    """Positive for "good", negative for "bad"; abstains on texts starting "ja:"; neutral 1.0
    for blank texts (as the routed classifier does). ``fail``: raise that on the first call."""

    name = "fake"
    version = "1"

    def __init__(self, fail: BaseException | None = None, probs: dict[Label, float] | None = None):
        self.fail = fail
        self.probs = probs
        self.calls = 0

    def classify(self, texts: Sequence[str], langs: Sequence[str | None]) -> list[Sentiment]:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return [self._one(t) for t in texts]

    def _one(self, text: str) -> Sentiment:
        if self.probs is not None:  # unchecked: what a broken model might give
            return Sentiment.model_construct(
                label="neutral", probs=self.probs, model="fake", version="1"
            )
        if blank(text):
            return Sentiment(label="neutral", probs=NEUTRAL, model="fake", version="1")
        if text.startswith("ja:"):
            return Sentiment(
                label="neutral", probs=PRIOR, model="fake" + ABSTAIN_SUFFIX, version="1"
            )
        label: Label = "positive" if "good" in text else "negative" if "bad" in text else "neutral"
        probs: dict[Label, float] = {"negative": 0.1, "neutral": 0.1, "positive": 0.1}
        probs[label] = 0.8
        return Sentiment(label=label, probs=probs, model="fake", version="1")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Fake:
    model = Fake()
    monkeypatch.setattr(sentiment_cli, "_load", lambda config: model)
    return model


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(config: Any) -> Any:
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(sentiment_cli, "_load", refuse)


def write_lines(path: Path, *rows: Any) -> Path:
    path.write_text(
        "".join(
            (r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows
        ),
        encoding="utf-8",
    )
    return path


def classify(source: Path, output: Path) -> int:
    return cli_main(
        ["sentiment", "classify", "--input", str(source), "--output", str(output), "--quiet"]
    )


def evaluate(source: Path, *more: str) -> int:
    return cli_main(["sentiment", "eval", "--input", str(source), "--quiet", *more])


# ------------------------------------------------------------------ 1: the output file


def test_classify_refuses_to_write_over_its_input(
    tmp_path: Path, no_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_lines(tmp_path / "in.jsonl", {"id": "a", "text": "good"})
    before = source.read_bytes()
    assert classify(source, source) == 2
    assert "is the input file" in capsys.readouterr().err
    link = tmp_path / "link.jsonl"
    link.symlink_to(source)
    assert classify(source, link) == 2
    assert "is the input file" in capsys.readouterr().err
    hard = tmp_path / "hard.jsonl"
    os.link(source, hard)
    assert classify(source, hard) == 2
    assert source.read_bytes() == before


@pytest.mark.parametrize("error", [RuntimeError("the model broke"), KeyboardInterrupt()])
def test_a_failed_classify_leaves_the_old_output_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    source = write_lines(tmp_path / "in.jsonl", {"id": "a", "text": "good"})
    output = tmp_path / "out.jsonl"
    output.write_text("the previous results\n")
    monkeypatch.setattr(sentiment_cli, "_load", lambda config: Fake(fail=error))
    if isinstance(error, KeyboardInterrupt):
        assert classify(source, output) == 130  # Ctrl-C
    else:
        with pytest.raises(RuntimeError):
            classify(source, output)
    assert output.read_text() == "the previous results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


def test_a_bad_row_leaves_the_old_output(tmp_path: Path, no_model: None) -> None:
    source = write_lines(tmp_path / "in.jsonl", {"id": "a", "text": "good"}, "{oops")
    output = tmp_path / "out.jsonl"
    output.write_text("the previous results\n")
    assert classify(source, output) == 2
    assert output.read_text() == "the previous results\n"


def test_classify_replaces_the_output_whole_keeping_its_mode_and_symlink(
    tmp_path: Path, fake: Fake
) -> None:
    source = write_lines(
        tmp_path / "in.jsonl", {"id": "a", "text": "good"}, {"id": 2, "text": "bad"}
    )
    real = tmp_path / "real.jsonl"
    real.write_text("old\n")
    real.chmod(0o640)
    link = tmp_path / "out.jsonl"
    link.symlink_to(real)
    assert classify(source, link) == 0
    assert link.is_symlink()
    assert [json.loads(line)["id"] for line in real.read_text().splitlines()] == ["a", 2]
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    fresh = tmp_path / "fresh.jsonl"
    assert classify(source, fresh) == 0
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fresh.jsonl", "in.jsonl", "out.jsonl", "real.jsonl",
    ]  # fmt: skip


# ------------------------------------------------------------------ 3: lone surrogates


def test_lone_surrogates_in_texts_are_read_as_the_replacement_character(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a", "text": "x\\ud800y"}\n{"id": "b", "text": "\\udfff"}\n')
    rows = sentiment_cli.read_lines(source, labelled=False)
    assert [r["text"] for r in rows] == ["x\ufffdy", "\ufffd"]
    labelled = tmp_path / "gold.jsonl"
    labelled.write_text('{"text": "\\ud83d bad", "label": "negative"}\n')
    assert sentiment_cli.read_lines(labelled, labelled=True)[0]["text"] == "\ufffd bad"
    pair = tmp_path / "pair.jsonl"  # a proper pair is one character, kept
    pair.write_text('{"id": "a", "text": "\\ud83d\\ude21"}\n')
    assert sentiment_cli.read_lines(pair, labelled=False)[0]["text"] == "😡"


def test_an_id_with_a_lone_surrogate_is_refused(
    tmp_path: Path, no_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a", "text": "ok"}\n{"id": "\\ud800", "text": "hi"}\n')
    assert classify(source, tmp_path / "out.jsonl") == 2
    assert "in.jsonl:2: " in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


def test_cache_keys_take_texts_with_lone_surrogates() -> None:
    long = "\ud800" + "x" * 300
    assert cache_key(long, "en") != cache_key("\udbff" + "x" * 300, "en")
    assert embed_key(long) != embed_key("\udbff" + "x" * 300)


# ------------------------------------------------------------------ 4: clear errors


def test_input_that_is_not_utf8_names_the_line(
    tmp_path: Path, no_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    good = b"".join(b'{"id": %d, "text": "ok"}\n' % i for i in range(3000))
    source.write_bytes(good + b'{"id": "b", "text": "\xff\xfe"}\n')
    assert classify(source, tmp_path / "out.jsonl") == 2
    err = capsys.readouterr().err
    assert "in.jsonl:3001: not UTF-8" in err and "Traceback" not in err


def test_folders_are_refused_before_the_model_loads(
    tmp_path: Path, no_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_lines(tmp_path / "in.jsonl", {"id": "a", "text": "ok"})
    gold = write_lines(tmp_path / "gold.jsonl", {"text": "ok", "label": "neutral"})
    assert classify(tmp_path, tmp_path / "out.jsonl") == 2
    assert "is a folder" in capsys.readouterr().err
    assert classify(source, tmp_path) == 2
    assert "--output" in capsys.readouterr().err
    assert evaluate(gold, "--json", str(tmp_path)) == 2
    assert "--json" in capsys.readouterr().err
    assert classify(source, tmp_path / "nowhere" / "out.jsonl") == 2
    assert "does not exist" in capsys.readouterr().err
    assert classify(tmp_path / "missing.jsonl", tmp_path / "out.jsonl") == 2
    assert "missing.jsonl does not exist" in capsys.readouterr().err


def test_eval_of_an_empty_file_says_so(
    tmp_path: Path, no_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")
    assert evaluate(empty) == 2
    assert "no labelled lines" in capsys.readouterr().err


def test_a_full_disk_is_a_clear_error_and_leaves_the_old_output(
    tmp_path: Path, fake: Fake, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_lines(tmp_path / "in.jsonl", {"id": "a", "text": "ok"})
    output = tmp_path / "out.jsonl"
    output.write_text("the previous results\n")

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    assert classify(source, output) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    assert output.read_text() == "the previous results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


@pytest.mark.parametrize("card", ["en-word-ngram.json", "zh-char-ngram.json"])
@pytest.mark.parametrize("keep", [0.0, 0.5, 0.999])
def test_truncated_model_arrays_are_a_model_load_error(
    tmp_path: Path, card: str, keep: float
) -> None:
    shutil.copy(MODELS_DIR / card, tmp_path / card)
    arrays = card.replace(".json", ".npz")
    data = (MODELS_DIR / arrays).read_bytes()
    (tmp_path / arrays).write_bytes(data[: int(len(data) * keep)])
    loader = WordModel.load if card.startswith("en") else ChineseModel.load
    with pytest.raises(ModelLoadError, match="is invalid"):
        loader(tmp_path / card)


def test_train_without_the_train_extra_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a)
    )
    assert cli_main(["sentiment", "train", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "sklearn" in err
    assert sentiment_cli.TRAIN_INSTALL in err
    assert "pip install torch==2.13.0 && .venv/bin/pip install -e '.[train]'" in err
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    assert f"`{sentiment_cli.TRAIN_INSTALL}`" in readme  # the README's own words
    assert not (tmp_path / "out").exists()


def test_a_closed_stdout_ends_eval_quietly(
    tmp_path: Path, fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    gold = write_lines(tmp_path / "gold.jsonl", {"text": "good", "label": "positive"})

    dup2 = close_stdout(monkeypatch)
    assert evaluate(gold, "--json", str(tmp_path / "numbers.json")) == 141
    assert dup2 and dup2[0][1] == 1  # stdout now goes to /dev/null: the exit's flush is quiet
    assert json.loads((tmp_path / "numbers.json").read_text())["accuracy"] == 1.0


# ------------------------------------------------------------------ 8: ids


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ('{"id": 1e400, "text": "good"}', '"id" must be a string or an integer'),
        ('{"id": NaN, "text": "good"}', "not JSON (NaN is not JSON)"),
        ('{"id": "a", "text": "good", "x": -Infinity}', "not JSON (-Infinity is not JSON)"),
        ('{"id": Infinity, "text": "good"}', "not JSON (Infinity is not JSON)"),
        ('{"id": 1.5, "text": "good"}', '"id" must be a string or an integer'),
        ('{"id": null, "text": "good"}', '"id" must be a string or an integer'),
        ('{"id": [1], "text": "good"}', '"id" must be a string or an integer'),
        ('{"id": {"a": 1}, "text": "good"}', '"id" must be a string or an integer'),
        ('{"id": true, "text": "good"}', '"id" must be a string or an integer'),
        ('{"id": 1' + "0" * 5000 + ', "text": "good"}', "not JSON"),
    ],
)
def test_ids_must_be_strings_or_integers(
    tmp_path: Path, no_model: None, capsys: pytest.CaptureFixture[str], line: str, why: str
) -> None:
    source = write_lines(tmp_path / "in.jsonl", {"id": "first", "text": "ok"}, line)
    assert classify(source, tmp_path / "out.jsonl") == 2
    err = capsys.readouterr().err
    assert f"in.jsonl:2: {why}" in err and "Traceback" not in err


def test_duplicate_ids_name_both_lines(
    tmp_path: Path, no_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_lines(
        tmp_path / "in.jsonl",
        {"id": "x", "text": "a"}, {"id": 7, "text": "b"}, {"id": "7", "text": "c"},
        {"id": "y", "text": "d"}, {"id": 7, "text": "e"},
    )  # fmt: skip
    assert classify(source, tmp_path / "out.jsonl") == 2
    assert "in.jsonl:5: id 7 is also on line 2" in capsys.readouterr().err


def test_string_and_integer_ids_are_written_as_they_came(tmp_path: Path, fake: Fake) -> None:
    big = 10**30
    source = write_lines(
        tmp_path / "in.jsonl", {"id": "é", "text": "good"}, {"id": -3, "text": "bad"},
        {"id": big, "text": "x"}, {"id": "", "text": "y"},
    )  # fmt: skip
    assert classify(source, tmp_path / "out.jsonl") == 0
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == ["é", -3, big, ""]


def test_a_score_that_is_not_a_number_is_never_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nan: dict[Label, float] = {"negative": float("nan"), "neutral": 0.5, "positive": 0.5}
    monkeypatch.setattr(sentiment_cli, "_load", lambda config: Fake(probs=nan))
    source = write_lines(tmp_path / "in.jsonl", {"id": "a", "text": "good"})
    assert classify(source, tmp_path / "out.jsonl") == 2
    assert "'a'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [source]


# ------------------------------------------------------------------ 13: BOM


def test_a_utf8_bom_at_the_start_is_accepted(tmp_path: Path, fake: Fake) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'\xef\xbb\xbf{"id": "a", "text": "good"}\r\n{"id": "b", "text": "bad"}\r\n')
    assert classify(source, tmp_path / "out.jsonl") == 0
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(line["id"], line["label"]) for line in lines] == [("a", "positive"), ("b", "negative")]
    gold = tmp_path / "gold.jsonl"
    gold.write_bytes(b'\xef\xbb\xbf{"text": "good", "label": "positive"}\n')
    assert evaluate(gold) == 0


# ------------------------------------------------------------------ 11: eval scoring


def test_binary_eval_counts_abstentions_and_empty_texts_as_wrong(
    tmp_path: Path, fake: Fake, capsys: pytest.CaptureFixture[str]
) -> None:
    gold = write_lines(
        tmp_path / "gold.jsonl",
        {"text": "good", "label": "positive"},
        {"text": "bad", "label": "negative"},
        {"text": "ja: it is", "label": "positive"},  # abstained: prior says positive
        {"text": " \u200b", "label": "negative"},  # empty: neutral 1.0, "negative" by ties
    )
    numbers = tmp_path / "numbers.json"
    assert evaluate(gold, "--json", str(numbers)) == 0
    result = json.loads(numbers.read_text())
    assert result["binary"] is True
    assert result["accuracy"] == 0.5 and result["macro_recall"] == 0.5
    assert result["abstained"] == 1 and result["empty"] == 1
    out = capsys.readouterr().out
    assert "abstained: 1" in out and "empty: 1" in out


def test_three_class_eval_counts_abstentions_as_wrong_and_empty_neutral_as_an_answer(
    tmp_path: Path, fake: Fake
) -> None:
    gold = write_lines(
        tmp_path / "gold.jsonl",
        {"text": "good", "label": "positive"},
        {"text": "ja: it is", "label": "neutral"},  # abstained: its neutral is not an answer
        {"text": "   ", "label": "neutral"},  # empty: neutral is the answer
        {"text": "so so", "label": "neutral"},
    )
    numbers = tmp_path / "numbers.json"
    assert evaluate(gold, "--json", str(numbers)) == 0
    result = json.loads(numbers.read_text())
    assert result["binary"] is False and result["accuracy"] == 0.75


def test_judge() -> None:
    assert judge(PRIOR, True, abstained=True, empty=False) == NO_ANSWER
    assert judge(NEUTRAL, True, abstained=False, empty=True) == NO_ANSWER
    assert judge(NEUTRAL, False, abstained=False, empty=True) == "neutral"
    assert judge(PRIOR, False, abstained=True, empty=False) == NO_ANSWER
    assert judge(PRIOR, True, abstained=False, empty=False) == "positive"
    assert report(["positive", "negative"], [NO_ANSWER, "negative"]) == {
        "macro_recall": 0.5, "macro_f1": 0.5, "accuracy": 0.5,
    }  # fmt: skip


# ------------------------------------------------------------------ 5, 9: cache keys


async def test_a_short_text_never_shares_a_long_texts_cache_entry(metrics: Metrics) -> None:
    long = "This airline is the worst, they lost my luggage and refused a refund. " * 5
    look_alike = "#" + hashlib.blake2b(long.encode(), digest_size=16).hexdigest()
    assert cache_key(long, "en") != cache_key(look_alike, "en")
    spy = SpyClassifier()
    scorer = ScorerService(MemoryBus(metrics=metrics), spy, ScorerConfig(), metrics)
    first = await scorer.score([mention(1, look_alike)])
    second = await scorer.score([mention(2, long)])
    assert spy.calls == 2
    assert first[0].label == "neutral" and second[0].label == "negative"
    assert embed_key(long) != embed_key(
        "#" + hashlib.blake2b(long.encode(), digest_size=16).hexdigest()
    )


def mention(n: int, text: str, lang: str | None = "en") -> Mention:
    return Mention(id=f"t:{n}", source="t", text=text, lang=lang, created_at=T0)


async def test_the_cache_keys_on_what_routing_reads_of_the_language(metrics: Metrics) -> None:
    spy = SpyClassifier()
    scorer = ScorerService(MemoryBus(metrics=metrics), spy, ScorerConfig(), metrics)
    langs = ["en", "EN", "en-US", " en_GB ", "de", "ja", "x-" + "q" * 62, None, "", "und"]
    await scorer.score([mention(i, "ok", lang) for i, lang in enumerate(langs)])
    assert spy.batches == [[("ok", "en"), ("ok", "de"), ("ok", None)]]
    assert sorted(str(key[1]) for key in scorer.cache._data) == ["", "en", "other"]
    assert cache_key("ok", "zh-Hant") == ("ok", "zh") and cache_key("ok", "yue") == ("ok", "yue")


@pytest.mark.parametrize(
    "lang", [None, "", " ", "und", "en", "EN", "en-US", "zh", "zh_Hant", "yue", "de", "ja",
             "x" * 1000, "en" + "q" * 50, "-", "_zh"],
)  # fmt: skip
@pytest.mark.parametrize("text", ["I hate this", "太垃圾了", "こんにちは", "Это ужасно", ""])
def test_routing_depends_only_on_the_routing_language(lang: str | None, text: str) -> None:
    assert route(text, lang) == route(text, routing_language(lang))


# ------------------------------------------------------------------ 6, 10: whitespace


def _squeeze_reference(text: str, max_chars: int) -> str:
    text = re.sub(r"^[\s\u200b\u200c\u200d\u2060\ufeff]*", "", text)
    return re.sub(r"\s+", " ", text)[:max_chars].rstrip()


def test_squeeze_matches_its_definition() -> None:
    pieces = [" ", "\n", "\u3000", "\u200b", "\ufeff", "a", "好", "bc ", "  ", "\t\t\t"]
    rng = random.Random(7)
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 60)))
        for max_chars in (1, 3, 8, 50):
            assert squeeze(text, max_chars) == _squeeze_reference(text, max_chars), repr(text)
    long = "a" + " " * 20_000 + "b" * 10 + "\n" * 9000 + "c" * 5000
    for max_chars in (1, 11, 12, 13, 500, 4096, 5000):
        assert squeeze(long, max_chars) == _squeeze_reference(long, max_chars)


def test_leading_padding_does_not_hide_the_text() -> None:
    text = "I hate this, worst service ever"
    for pad in (" " * 2000, "\n" * 1100, "\u200b" * 3000, "\ufeff \u3000" * 700):
        assert normalise(pad + text) == normalise(text) == "I hate this, worst service ever"
        assert for_embedding(pad + text) == for_embedding(text)
        assert readable(pad + text) == readable(text)
    zh = "客服态度太差了，垃圾公司"
    assert features(" " * 2100 + zh, max_n=2) == features(zh, max_n=2) != []
    assert route(" " * 600 + zh, None) == "zh"
    assert features("a" + " " * 5000 + "b", max_n=1) == ["a", " ", "b"]


def test_zero_width_characters_inside_a_weibo_post_are_kept_for_the_chinese_model() -> None:
    assert features("服了 \u200b", max_n=4)[-1] == "服了 \u200b"  # a feature the model knows
    assert normalise("好 \u200b") == "好 \u200b"


@pytest.mark.parametrize("text", ["\u200b", "\ufeff", " \u200b\u200c\u200d\u2060 \n", "\u3000"])
def test_invisible_texts_are_blank(text: str) -> None:
    assert blank(text) and not blank(text + ".")
    assert normalise(text) == ""


# ------------------------------------------------------------------ 7: routing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("太垃圾了 https://t.cn/A6xYzAbC", "zh"),
        ("差评 https://www.weibo.com/u/abcdefghijkl", "zh"),
        ("@AcmeSupportTeam 太垃圾了", "zh"),
        ("@AcmeSupport_Official 客服太差了，退款", "zh"),
        ("www.example.com/abcdefghijklmnop 垃圾", "zh"),
        ("terrible service https://t.cn/垃圾垃圾垃圾垃圾", "en"),
        ("https://t.co/abc", "en"),
        ("@AcmeSupport", "en"),
        ("@AcmeSupport太垃圾了", "zh"),  # all handle: counted as before
        ("客服太差了 #AcmeAirlinesFail", "zh"),  # a Latin hashtag says nothing of the post
        ("#AcmeFail worst service ever", "en"),
        ("#苹果发布会# 太贵了", "zh"),
        ("#AcmeAirlinesFail", "en"),  # all hashtag: counted as before
    ],
)
def test_links_and_handles_do_not_decide_the_route(text: str, expected: str) -> None:
    assert route(text, None) == expected


# ------------------------------------------------------------------ 12: escaped pairs


def test_escaped_surrogate_pairs_are_one_character() -> None:
    assert normalise("\\ud83d\\ude21\\ud83d\\ude21") == "angry angry"
    assert normalise("so \\uD83D\\uDE0D") == "so love"
    assert readable("\\ud83d\\ude21 \\u002c") == "😡 ,"
    assert normalise("\\ud83d alone") == "alone"  # a lone escaped half is no character
    assert normalise("\\ude21\\ud83d") == ""  # the wrong order is two lone halves


# ------------------------------------------------------------------ output: mounts, SIGTERM


def test_a_bind_mounted_output_is_overwritten_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bind-mounted file (Docker -v file:file) is a mount point: os.replace onto it
    fails with EBUSY after all the work; the results are copied into it instead."""
    import errno

    target = tmp_path / "out.jsonl"
    target.write_text("old\n", encoding="utf-8")

    def busy(src: Any, dst: Any) -> None:
        raise OSError(errno.EBUSY, "Device or resource busy", str(dst))

    monkeypatch.setattr(output.os, "replace", busy)
    with output.atomic_output(target) as fh:
        fh.write("new\n")
    assert target.read_text(encoding="utf-8") == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"], "no temporary file left"


def test_sigterm_removes_the_temporary_output(tmp_path: Path) -> None:
    """timeout, systemd and Kubernetes stop a command with SIGTERM: the half-written
    temporary file goes, and the output is left as it was."""
    import subprocess

    target = tmp_path / "out.jsonl"
    target.write_text("old\n", encoding="utf-8")
    script = (
        "import os, signal, time\n"
        "from pathlib import Path\n"
        "from api.output import atomic_output\n"
        f"with atomic_output(Path({str(target)!r})) as fh:\n"
        "    fh.write('half\\n'); fh.flush()\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(5)\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 143, done.stderr
    assert target.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
