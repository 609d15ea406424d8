"""The sentiment commands and the language routing as a user meets them (third review).

* an output that cannot be written is refused before the model loads, and ``eval`` never
  loses its numbers to a ``--json`` file it cannot write (they are printed, status 2);
* the commands close the classifier they loaded (``scorer.classifier.process: true``: its
  child process stopped by the command, not left to the interpreter's exit), and a child
  process that dies is one message, not a traceback;
* a progress bar cut short (an error, Ctrl-C) ends its line before the message or prompt;
* routing reads what the models read: fullwidth Latin (``ＡＰＰ``), the rare CJK characters
  of Cantonese and Bopomofo count for Chinese, and escapes / HTML entities are decoded, so a
  Chinese complaint sent as ``&#22403;&#22334;`` is not judged by the English model.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from api import sentiment_cli
from core.events import Sentiment
from core.metrics import Metrics
from sentiment.classifier import Classifier
from sentiment.config import ScorerConfig
from sentiment.process import ClassifierCrashed, ClassifierProcessError, ProcessClassifier
from sentiment.transformer import load_classifier, route, routing_language
from tests.classifier_children import load_fake
from tests.unit.test_scorer import Harness
from tests.unit.test_scorer import mention as scorer_mention
from tests.unit.test_sentiment_input_edges import Fake, classify, evaluate, write_lines

NUMBERS = ("macro_recall", "accuracy", "texts_per_s")


class Closing(Fake):
    """The fake classifier, with the ``close`` of a classifier that holds a child process."""

    def __init__(self, fail: BaseException | None = None, fail_on: int = 1) -> None:
        super().__init__()
        self.closed = 0
        self.failure, self.fail_on = fail, fail_on

    def classify(self, texts: Sequence[str], langs: Sequence[str | None]) -> list[Sentiment]:
        if self.failure is not None and self.calls + 1 >= self.fail_on:
            self.calls += 1
            raise self.failure
        return super().classify(texts, langs)

    def close(self) -> None:
        self.closed += 1


def use(monkeypatch: pytest.MonkeyPatch, model: Any) -> None:
    monkeypatch.setattr(sentiment_cli, "_load", lambda config: model)


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(config: Any) -> Any:
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(sentiment_cli, "_load", refuse)


# ------------------------------------------------------------------ outputs


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_an_output_folder_that_cannot_be_written_is_refused_before_the_model_loads(
    tmp_path: Path, no_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # /proc exists but takes no new files, even for root (chmod would not stop root)
    source = write_lines(tmp_path / "in.jsonl", {"id": "a", "text": "good"})
    gold = write_lines(tmp_path / "gold.jsonl", {"text": "good", "label": "positive"})
    assert classify(source, Path("/proc/crisiswatch-out.jsonl")) == 2
    err = capsys.readouterr().err
    assert "--output /proc/crisiswatch-out.jsonl: cannot write in /proc" in err
    assert evaluate(gold, "--json", "/proc/crisiswatch-numbers.json") == 2
    err = capsys.readouterr().err
    assert "--json /proc/crisiswatch-numbers.json: cannot write in /proc" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gold.jsonl", "in.jsonl"]


def test_the_writability_probe_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, Fake())
    source = write_lines(tmp_path / "in.jsonl", {"id": "a", "text": "good"})
    assert classify(source, tmp_path / "out.jsonl") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]
    assert classify(source, Path(os.devnull)) == 0  # a device: written, never probed


def test_eval_prints_its_numbers_when_the_json_file_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use(monkeypatch, Fake())
    gold = write_lines(
        tmp_path / "gold.jsonl",
        {"text": "good", "label": "positive"},
        {"text": "bad", "label": "negative"},
    )
    numbers = tmp_path / "numbers.json"
    numbers.write_text("the previous numbers\n")

    def full(fd: int) -> None:  # the disk fills up after the hour the evaluation took
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    assert evaluate(gold, "--json", str(numbers)) == 2
    captured = capsys.readouterr()
    assert all(f"{key}:" in captured.out for key in NUMBERS)
    assert "accuracy: 1.0" in captured.out
    assert "No space left on device" in captured.err and "Traceback" not in captured.err
    assert numbers.read_text() == "the previous numbers\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gold.jsonl", "numbers.json"]


# ------------------------------------------------------------------ the classifier's life


def test_the_commands_close_the_classifier_they_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = Closing()
    use(monkeypatch, model)
    source = write_lines(tmp_path / "in.jsonl", {"id": "a", "text": "good"})
    gold = write_lines(tmp_path / "gold.jsonl", {"text": "good", "label": "positive"})
    assert classify(source, tmp_path / "out.jsonl") == 0
    assert model.closed == 1
    assert evaluate(gold) == 0
    assert model.closed == 2
    failing = Closing(fail=KeyboardInterrupt())  # Ctrl-C: closed all the same
    use(monkeypatch, failing)
    assert classify(source, tmp_path / "out.jsonl") == 130
    assert failing.closed == 1


def test_a_classifier_child_that_dies_is_one_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    died = ClassifierCrashed("the sentiment classifier's child process died twice on one batch")
    use(monkeypatch, Closing(fail=died))
    source = write_lines(tmp_path / "in.jsonl", {"id": "a", "text": "good"})
    assert classify(source, tmp_path / "out.jsonl") == 2
    err = capsys.readouterr().err
    assert "crisiswatch sentiment: the sentiment classifier's child process died twice" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


class InterruptedInFlight(ProcessClassifier):
    """A real child process (the test's fake models) with a call hung in it, as when
    Ctrl-C reaches ``classify`` while the child works on a chunk."""

    def classify(self, texts: Sequence[str], langs: Sequence[str | None]) -> list[Sentiment]:
        def hang() -> None:
            with contextlib.suppress(ClassifierProcessError):
                super(InterruptedInFlight, self).classify(["it HANGs"], [None])

        threading.Thread(target=hang, daemon=True).start()
        deadline = time.monotonic() + 10
        while not self._turn.locked() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # the call reaches the child
        raise KeyboardInterrupt


def test_ctrl_c_stops_a_classifier_child_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    child = InterruptedInFlight(ScorerConfig(), load=load_fake)
    pid = child.pid
    assert pid is not None
    use(monkeypatch, child)
    source = write_lines(tmp_path / "in.jsonl", {"id": "a", "text": "good"})
    started = time.monotonic()
    assert classify(source, tmp_path / "out.jsonl") == 130
    assert time.monotonic() - started < 3  # not the 5 s grace a service's stop gives
    assert "still busy" not in caplog.text  # nothing to warn about: the user stopped it
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(pid, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


# ------------------------------------------------------------------ progress


@pytest.fixture
def slow_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each reading of the clock one second after the last: the bar is drawn every chunk."""
    now = iter(range(1, 1_000_000))
    clock = types.SimpleNamespace(
        monotonic=lambda: float(next(now)), perf_counter=lambda: float(next(now))
    )
    monkeypatch.setattr(sentiment_cli, "time", clock)
    monkeypatch.setattr(sentiment_cli, "CHUNK", 1)


@pytest.mark.parametrize(
    ("failure", "status"),
    [(KeyboardInterrupt(), 130), (ClassifierCrashed("the child process died twice"), 2)],
)
def test_a_progress_bar_cut_short_ends_its_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    slow_clock: None,
    failure: BaseException,
    status: int,
) -> None:
    use(monkeypatch, Closing(fail=failure, fail_on=3))
    source = write_lines(tmp_path / "in.jsonl", *({"id": i, "text": "good"} for i in range(5)))
    code = sentiment_cli_main(["classify", "--input", str(source), "--output", "-"])
    assert code == status
    err = capsys.readouterr().err
    assert "2/5" in err  # the bar was drawn part of the way
    lines = err.split("\n")
    assert lines[-1] == ""  # ended: the shell's prompt starts a line of its own
    if status == 2:
        assert lines[-2].startswith("crisiswatch sentiment: the child process died twice")
        assert "2/5" in lines[-3]


def sentiment_cli_main(args: list[str]) -> int:
    from api.cli import main

    return main(["sentiment", *args])


# ------------------------------------------------------------------ routing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ＡＰＰ真的太垃圾了，退钱", "zh"),  # fullwidth Latin, typed by a Chinese input method
        ("客服态度太差了！！！ＱＡＱ", "zh"),
        ("ＯＭＧ！18件！！", "zh"),
        ("搭𨋢好慢", "zh"),  # Cantonese: 𨋢 (lift) is CJK extension B
        ("好吃ㄉ店", "zh"),  # Taiwanese Bopomofo
        ("\\u8fd9\\u4e2a\\u4ea7\\u54c1\\u592a\\u5783\\u573e\\u4e86", "zh"),  # escaped
        ("&#36825;&#20010;&#20135;&#21697;&#22826;&#22403;&#22334;&#20102;", "zh"),  # entities
        ("I can\\u2019t believe it &amp; I hate it", "en"),
        ("今日はとても良い天気です", None),  # Japanese kana: still abstained on
        ("ＴＨＥ　ＢＥＳＴ　です　ね　よ", None),  # fullwidth Latin beside kana: Japanese
        ("이 제품 정말 최악이에요", None),
        ("iPhone 太贵了", "zh"),
        ("I love this", "en"),
    ],
)
def test_routing_reads_what_the_models_read(text: str, expected: str | None) -> None:
    assert route(text, None) == expected


@pytest.mark.parametrize(
    ("lang", "text", "expected"),
    [
        ("eng", "I hate this airline", "en"),  # ISO 639-3, as franc and whatlang tag posts
        ("ENG", "I hate this airline", "en"),
        ("zho", "这家公司太垃圾了", "zh"),  # ISO 639-2
        ("chi", "这家公司太垃圾了", "zh"),
        ("cmn", "这家公司太垃圾了", "zh"),
        ("deu", "Das ist wirklich schlecht", None),  # a language neither model reads
    ],
)
def test_three_letter_codes_of_english_and_chinese_are_read(
    lang: str, text: str, expected: str | None
) -> None:
    assert route(text, lang) == expected
    assert route(text, routing_language(lang)) == expected  # what the scorer's cache keys on
    assert routing_language("eng") == routing_language("en-US") == "en"


@pytest.fixture(scope="module")
def real() -> Iterator[Classifier]:
    classifier = load_classifier(ScorerConfig())
    yield classifier
    close = getattr(classifier, "close", None)
    if callable(close):
        close()


def test_a_chinese_complaint_sent_as_entities_or_escapes_is_read_as_the_plain_text(
    real: Classifier,
) -> None:
    plain = "这个产品太垃圾了"
    forms = [
        plain,
        "".join(f"&#{ord(c)};" for c in plain),
        "".join(f"\\u{ord(c):04x}" for c in plain),
    ]
    answers = real.classify(forms, [None] * 3)
    assert answers[0].label == "negative"
    for answer in answers[1:]:
        assert answer.model == answers[0].model  # the Chinese cascade, not the English model
        assert answer.label == "negative"
        assert answer.probs == pytest.approx(answers[0].probs, abs=1e-9)
    tagged = real.classify(forms[1:], ["zh", "zh"])  # a language code: the same reading
    assert [a.probs for a in tagged] == [a.probs for a in answers[1:]]


def test_a_chinese_post_with_fullwidth_letters_is_judged_not_abstained_on(
    real: Classifier,
) -> None:
    answer = real.classify(["ＡＰＰ真的太垃圾了，退钱"], [None])[0]
    assert answer.model.startswith("zh-") and answer.label == "negative"


def test_an_english_post_in_styled_letters_is_read_as_the_plain_text(real: Classifier) -> None:
    """Posts write emphasis in mathematical bold, italic or script letters ("𝐍𝐄𝐕𝐄𝐑 𝐁𝐔𝐘");
    they were abstained on (a script neither model reads) and now read as plain letters."""
    plain = "This phone is terrible, never buy it. Refund me now!"
    bold = plain_letters_styled(plain, 0x1D400)  # 𝐓𝐡𝐢𝐬 ...
    italic = plain_letters_styled(plain, 0x1D608)  # sans-serif italic
    answers = real.classify([plain, bold, italic], [None] * 3)
    assert answers[0].label == "negative"
    for answer in answers[1:]:
        assert answer.model == answers[0].model, answer.model  # not abstained
        assert answer.probs == pytest.approx(answers[0].probs, abs=1e-9)
    assert route(bold, None) == "en"


def test_a_chinese_post_with_styled_letters_is_read_as_the_plain_text(
    real: Classifier,
) -> None:
    """The Chinese n-gram model reads styled letters as plain ones too, as routing and the
    encoder do: "𝐒𝐁公司" (bold SB, an insult) was judged neutral by the encoder where
    "SB公司" is surely negative to the n-gram model."""
    plain = ["SB公司", "VIP会员真好", "这个APP还行吧"]
    bold = [plain_letters_styled(text, 0x1D400) for text in plain]
    assert bold[0] == "𝐒𝐁公司"
    for lang in (None, "zh"):
        answers = real.classify(plain + bold, [lang] * 6)
        assert answers[0].label == "negative"
        for answer, styled in zip(answers[:3], answers[3:], strict=True):
            assert (styled.label, styled.model) == (answer.label, answer.model)
            assert styled.probs == pytest.approx(answer.probs, abs=1e-9)


def plain_letters_styled(text: str, base: int) -> str:
    """``text`` with its ASCII letters in the mathematical style starting at ``base`` (the
    style's capital A; its small a follows 26 places on)."""
    out = []
    for char in text:
        if "A" <= char <= "Z":
            out.append(chr(base + ord(char) - ord("A")))
        elif "a" <= char <= "z":
            out.append(chr(base + 26 + ord(char) - ord("a")))
        else:
            out.append(char)
    return "".join(out)


# ------------------------------------------------------------------ the scorer's metrics


async def test_abstentions_are_counted_apart_from_neutral_answers(metrics: Metrics) -> None:
    """A stream the classifier cannot read shows on the dashboard's sentiment mix, instead
    of passing for calm neutral posts."""
    h = Harness(Fake(), metrics, batch_size=10)
    await h.run(
        scorer_mention(0, "ja: 最悪です"), scorer_mention(1, "ja: ひどい"),
        scorer_mention(2, "it is what it is"), scorer_mention(3, "good"),
    )  # fmt: skip
    value = metrics.registry.get_sample_value
    assert value("crisiswatch_mentions_scored_total", {"label": "abstain"}) == 2
    assert value("crisiswatch_mentions_scored_total", {"label": "neutral"}) == 1
    assert value("crisiswatch_mentions_scored_total", {"label": "positive"}) == 1
    assert [m.sentiment.label for m in h.out[:2]] == ["neutral", "neutral"]  # events unchanged
