"""``crisiswatch replay`` through its entry point: ``--output -`` is standard output (the
lines only: the summary and the log go to stderr), ``--input -`` standard input (gzip
too), a reader that goes away ends it quietly with 141; and a mention dated far ahead in
the file does not silence the stories after it."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api import replay
from api.cli import main
from api.replay import run_replay
from api.settings import Settings
from core.events import Author, Mention
from tests.fakes import FakeClassifier
from tests.support import close_stdout, crisis_stream

ROOT = Path(__file__).parents[2]
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def write_stream(path: Path, mentions: list[Mention]) -> Path:
    data = "".join(m.model_dump_json(exclude_none=True) + "\n" for m in mentions).encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``main`` with the keyword classifier (not the model), run in ``tmp_path``: a file
    named ``-`` would be written there."""
    monkeypatch.setattr(replay, "load_classifier", lambda scorer: FakeClassifier())
    monkeypatch.chdir(tmp_path)


def test_output_dash_writes_exactly_the_file_output_to_stdout(
    tmp_path: Path, cli: None, capfd: pytest.CaptureFixture[str]
) -> None:
    source = write_stream(tmp_path / "in.jsonl.gz", crisis_stream(T0, n=300, minutes=70))
    assert main(["replay", "--input", str(source), "--output", "out.jsonl"]) == 0
    to_file = capfd.readouterr()
    expected = (tmp_path / "out.jsonl").read_text(encoding="utf-8")
    assert to_file.out == "" and "written to out.jsonl" in to_file.err
    lines = [json.loads(line) for line in expected.splitlines()]
    assert any("forecast_minutes" in line for line in lines)
    assert any(line["tier"] == 3 for line in lines)

    assert main(["replay", "--input", str(source), "--output", "-"]) == 0
    captured = capfd.readouterr()
    assert captured.out == expected  # the JSONL lines, and nothing else
    assert "replay done" in captured.err and "written to stdout" in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl.gz", "out.jsonl"]


@pytest.mark.parametrize("name", ["in.jsonl.gz", "in.jsonl"])
def test_input_dash_reads_stdin_plain_or_gzip(
    tmp_path: Path,
    cli: None,
    name: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    source = write_stream(tmp_path / name, crisis_stream(T0, n=200, minutes=70))
    assert main(["replay", "--input", str(source), "--output", "out.jsonl", "--quiet"]) == 0
    expected = (tmp_path / "out.jsonl").read_text(encoding="utf-8")
    capfd.readouterr()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(source.read_bytes())))
    assert main(["replay", "--input", "-", "--output", "-", "--quiet"]) == 0
    captured = capfd.readouterr()
    assert captured.out == expected
    assert "201 mentions" in captured.err


def test_a_file_named_dash_is_still_written_as_dot_slash_dash(
    tmp_path: Path, cli: None, capfd: pytest.CaptureFixture[str]
) -> None:
    source = write_stream(tmp_path / "in.jsonl", crisis_stream(T0, n=100, minutes=70))
    assert main(["replay", "--input", str(source), "--output", "./-", "--quiet"]) == 0
    assert capfd.readouterr().out == ""
    assert (tmp_path / "-").read_text(encoding="utf-8")


def test_a_reader_gone_ends_the_replay_quietly_with_141(
    tmp_path: Path, cli: None, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    source = write_stream(tmp_path / "in.jsonl", crisis_stream(T0, n=300, minutes=70))

    dup2 = close_stdout(monkeypatch)
    assert main(["replay", "--input", str(source), "--output", "-", "--quiet"]) == 141
    assert dup2 and dup2[0][1] == 1  # stdout now goes to /dev/null: the exit's flush is quiet
    err = capfd.readouterr().err
    assert "Traceback" not in err and "replay done" not in err, err


def test_a_closed_pipe_ends_the_command_with_141_and_nothing_on_stderr(tmp_path: Path) -> None:
    """``crisiswatch replay --output - | head -0``: a real pipe whose reader is gone."""
    source = write_stream(tmp_path / "in.jsonl", crisis_stream(T0, n=300, minutes=70))
    program = (
        "import api.replay as r; from tests.fakes import FakeClassifier; "
        "r.load_classifier = lambda scorer: FakeClassifier(); "
        "from api.cli import main; raise SystemExit(main())"
    )
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", program,
             "replay", "--input", str(source), "--output", "-", "--quiet"],
            stdout=write, stderr=subprocess.PIPE, cwd=ROOT, timeout=300, check=False,
            env={**os.environ, "CRISISWATCH_LOG_LEVEL": "WARNING"},  # (no INFO lines)
        )  # fmt: skip
    finally:
        os.close(write)
    assert proc.stderr.decode() == ""
    assert proc.returncode == 141
    assert not (ROOT / "-").exists()


async def test_a_mention_dated_a_day_ahead_does_not_silence_the_stories_after_it(
    tmp_path: Path,
) -> None:
    """One line of the file dated a day ahead (a bad clock): the complaint after it still
    has its forecasts at 10, 30 and 60 minutes, and its tier 3; the summary says so."""
    stream = crisis_stream(T0 + timedelta(minutes=30), n=300, minutes=70)
    bad = Mention(
        id="mastodon:bad-clock",
        source="mastodon",
        text="Acme's new store opens on Friday",
        lang="en",
        created_at=T0 + timedelta(days=1),
        author=Author(id="clockless", followers=10),
    )
    early = [
        Mention(
            id=f"reddit:early-{i}",
            source="reddit",
            text=f"Acme store visit number {i}, nice coffee",
            lang="en",
            created_at=T0 + timedelta(minutes=i),
            author=Author(id=f"early{i}", followers=5),
        )
        for i in range(20)
    ]
    source = write_stream(tmp_path / "in.jsonl", [*early[:10], bad, *early[10:], *stream])
    out = tmp_path / "out.jsonl"
    summary = await run_replay(Settings(), source, out, progress=False, classifier=FakeClassifier())
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    root = [line for line in lines if line["story_root"] == "bluesky:root-1"]
    assert [line["forecast_minutes"] for line in root if "forecast_minutes" in line] == [
        10,
        30,
        60,
    ]
    assert max(line["tier"] for line in root) == 3
    assert summary.future_dated == 1
    assert "1 mention dated far ahead of the stream" in summary.render()


async def test_a_last_line_after_a_quiet_spell_counts_as_it_did(tmp_path: Path) -> None:
    """The last line comes three hours after the others: held back (nothing follows to say
    whether time moved on), it is taken in at the end of the input all the same, and
    fires the 60-minute forecast due before it, as it did before the check."""
    stream = crisis_stream(T0, n=300, minutes=50)
    last = Mention(
        id="mastodon:much-later",
        source="mastodon",
        text="Acme's new store opens on Friday",
        lang="en",
        created_at=T0 + timedelta(hours=3),
        author=Author(id="later", followers=10),
    )
    source = write_stream(tmp_path / "in.jsonl", [*stream, last])
    outputs = []
    for tolerance in (60.0, None):
        settings = Settings.model_validate({"detector": {"future_tolerance_minutes": tolerance}})
        out = tmp_path / f"out-{tolerance}.jsonl"
        summary = await run_replay(
            settings, source, out, progress=False, classifier=FakeClassifier()
        )
        assert summary.future_dated == 0
        outputs.append(out.read_text())
    lines = [json.loads(line) for line in outputs[0].splitlines()]
    root = [line for line in lines if line["story_root"] == "bluesky:root-1"]
    assert [line["forecast_minutes"] for line in root if "forecast_minutes" in line] == [
        10,
        30,
        60,
    ]
    assert outputs[0] == outputs[1]
