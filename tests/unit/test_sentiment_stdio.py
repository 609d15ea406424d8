"""``crisiswatch sentiment classify --output -`` writes the JSONL lines to standard output
(exactly what the output file holds, UTF-8 whatever the locale; the progress bar on
stderr), ``--input -`` reads standard input; a reader that goes away ends it with 141.
The fake classifier of ``test_sentiment_input_edges`` stands in for the model."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from api import sentiment_cli
from api.cli import main as cli_main
from tests.support import close_stdout
from tests.unit.test_sentiment_input_edges import Fake, write_lines

ROWS = (
    {"id": "a", "text": "good"},
    {"id": 2, "text": "bad"},
    {"id": "微博-3", "text": "质量问题 bad，要退款"},
    {"id": "ja", "text": "ja:よい"},
)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Fake:
    """The fake classifier, the command run in ``tmp_path`` (where a file named ``-``
    would land)."""
    model = Fake()
    monkeypatch.setattr(sentiment_cli, "_load", lambda config: model)
    monkeypatch.chdir(tmp_path)
    return model


def classify(*args: str) -> int:
    return cli_main(["sentiment", "classify", *args])


def test_output_dash_writes_exactly_the_file_output_to_stdout(
    tmp_path: Path, fake: Fake, capfd: pytest.CaptureFixture[str]
) -> None:
    source = write_lines(tmp_path / "in.jsonl", *ROWS)
    assert classify("--input", str(source), "--output", "out.jsonl", "--quiet") == 0
    expected = (tmp_path / "out.jsonl").read_text(encoding="utf-8")
    assert len(expected.splitlines()) == len(ROWS)
    assert capfd.readouterr().out == ""
    assert classify("--input", str(source), "--output", "-") == 0  # with the progress bar
    captured = capfd.readouterr()
    assert captured.out == expected  # the lines, nothing else
    assert "classify [" in captured.err  # the bar is on stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


def test_stdout_is_utf8_whatever_the_locale(
    tmp_path: Path, fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_lines(tmp_path / "in.jsonl", *ROWS)
    assert classify("--input", str(source), "--output", "out.jsonl", "--quiet") == 0
    raw = io.BytesIO()
    ascii_stdout = io.TextIOWrapper(raw, encoding="ascii")  # LANG=C without UTF-8 mode
    monkeypatch.setattr(sys, "stdout", ascii_stdout)
    assert classify("--input", str(source), "--output", "-", "--quiet") == 0
    assert raw.getvalue() == (tmp_path / "out.jsonl").read_bytes()


def test_input_dash_reads_stdin(
    tmp_path: Path, fake: Fake, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    source = write_lines(tmp_path / "in.jsonl", *ROWS)
    assert classify("--input", str(source), "--output", "out.jsonl", "--quiet") == 0
    data = b"\xef\xbb\xbf" + source.read_bytes()  # a byte-order mark is fine here too
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert classify("--input", "-", "--output", "-", "--quiet") == 0
    assert capfd.readouterr().out == (tmp_path / "out.jsonl").read_text(encoding="utf-8")
    # a bad line is named as stdin's
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'{"id": 1, "text": "a"}\n{')))
    assert classify("--input", "-", "--output", "-", "--quiet") == 2
    captured = capfd.readouterr()
    assert captured.out == ""
    assert "crisiswatch sentiment: <stdin>:2: not JSON" in captured.err
    # eval reads it too
    gold = b'{"text": "good", "label": "positive"}\n{"text": "bad", "label": "negative"}\n'
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(gold)))
    assert cli_main(["sentiment", "eval", "--input", "-", "--quiet"]) == 0
    assert "accuracy: 1.0" in capfd.readouterr().out


def test_a_reader_gone_ends_classify_quietly_with_141(
    tmp_path: Path, fake: Fake, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    source = write_lines(tmp_path / "in.jsonl", *ROWS)

    dup2 = close_stdout(monkeypatch)
    assert classify("--input", str(source), "--output", "-", "--quiet") == 141
    assert dup2 and dup2[0][1] == 1
    assert capfd.readouterr().err == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_a_file_named_dash_is_written_as_dot_slash_dash(tmp_path: Path, fake: Fake) -> None:
    source = write_lines(tmp_path / "in.jsonl", *ROWS)
    assert classify("--input", str(source), "--output", "./-", "--quiet") == 0
    lines = (tmp_path / "-").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == [row["id"] for row in ROWS]
