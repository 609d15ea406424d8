"""What ``crisiswatch replay`` and ``bench detection`` say about their input: a replay of
no mention at all (an empty file, bad lines only) ended with exit 0 and looked like a
success; "1 bad lines"; a missing input or a bad truth CSV was called a "configuration
error"."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from api import replay
from api.cli import main
from api.replay import ReplaySummary
from core.events import Mention
from tests.fakes import FakeClassifier


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``main`` with the keyword classifier (not the model), run in ``tmp_path``."""
    monkeypatch.setattr(replay, "load_classifier", lambda scorer: FakeClassifier())
    monkeypatch.chdir(tmp_path)


def _summary(n: int) -> ReplaySummary:
    return ReplaySummary(
        lines=2 * n,
        mentions=n,
        rejected=n,
        duplicates=n,
        signals=n,
        forecasts=n,
        stories_tiered=n,
        seconds=1.0,
        output=Path("out.jsonl"),
        out_of_order=n,
        dropped=n,
        future_dated=n,
    )


def test_the_replay_summary_counts_one_in_the_singular() -> None:
    text = _summary(1).render()
    assert "replay done: 1 mention (1 bad line, 1 duplicate) in" in text
    assert "; 1 change and 1 forecast written to out.jsonl (1 story reached tier >= 1)" in text
    assert "warning: 1 event could not be handled and was dropped" in text
    assert "the output misses it" in text
    assert "warning: 1 mention came after a later one" in text
    assert (
        "warning: 1 mention dated far ahead of the stream (a bad timestamp: the mentions " in text
    )
    assert "after it were not) was counted at the stream's time" in text
    assert "(s)" not in text


def test_the_replay_summary_counts_more_in_the_plural() -> None:
    text = _summary(2).render()
    assert "replay done: 2 mentions (2 bad lines, 2 duplicates) in" in text
    assert "; 2 changes and 2 forecasts written to out.jsonl (2 stories reached tier >= 1)" in text
    assert "warning: 2 events could not be handled and were dropped" in text
    assert "warning: 2 mentions came after a later one" in text
    assert "warning: 2 mentions dated far ahead" in text and "were counted" in text
    assert "(s)" not in text


@pytest.mark.usefixtures("cli")
@pytest.mark.parametrize("content", ["", "\n\n"])
def test_a_replay_of_an_empty_input_fails_and_says_so(
    content: str, capfd: pytest.CaptureFixture[str]
) -> None:
    Path("in.jsonl").write_text(content, encoding="utf-8")
    Path("out.jsonl").write_text("an earlier run's output\n", encoding="utf-8")
    assert main(["replay", "--input", "in.jsonl", "--output", "out.jsonl", "--quiet"]) == 2
    err = capfd.readouterr().err
    assert "crisiswatch: input error" in err
    assert "no mention was read: replay input in.jsonl is empty" in err
    assert "replay done" not in err and "configuration error" not in err
    assert not Path("out.jsonl").exists(), "no output that looks like a result"


@pytest.mark.usefixtures("cli")
def test_a_replay_of_bad_lines_only_fails_and_says_every_line_was_bad(
    capfd: pytest.CaptureFixture[str],
) -> None:
    Path("in.jsonl").write_text('{"id": 1}\nnot json\n', encoding="utf-8")
    assert main(["replay", "--input", "in.jsonl", "--output", "out.jsonl", "--quiet"]) == 2
    err = capfd.readouterr().err
    assert "crisiswatch: input error" in err
    assert "no mention was read: every line of replay input in.jsonl is bad (2 bad lines" in err
    assert "one mention per line" in err and "replay done" not in err
    assert not Path("out.jsonl").exists()


@pytest.mark.usefixtures("cli")
def test_a_replay_of_bad_lines_from_standard_input_names_standard_input(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not the temporary copy, gone by the time the message is read."""
    import io
    import sys

    stdin = io.TextIOWrapper(io.BytesIO(b"not json\n"), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)
    assert main(["replay", "--input", "-", "--output", "out.jsonl", "--quiet"]) == 2
    err = capfd.readouterr().err
    assert "every line of replay input standard input is bad (1 bad line" in err
    assert "crisiswatch-replay-" not in err.split("crisiswatch: input error")[-1]


@pytest.mark.usefixtures("cli")
def test_a_replay_limited_to_bad_lines_says_only_those_were_read(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """``--limit 1`` on a CSV header then a mention: the mention was never read."""
    mention = Mention(
        id="x:1", source="x", text="hello", created_at=datetime(2026, 1, 5, 9, tzinfo=UTC)
    )
    Path("in.jsonl").write_text("id,text\n" + mention.model_dump_json() + "\n", encoding="utf-8")
    argv = ["replay", "--input", "in.jsonl", "--output", "out.jsonl", "--quiet"]
    assert main([*argv, "--limit", "1"]) == 2
    err = capfd.readouterr().err
    assert "none of the first 1 line (--limit 1) of replay input in.jsonl is a mention" in err
    assert "every line" not in err
    assert main(argv) == 0  # the whole file has one


@pytest.mark.usefixtures("cli")
def test_a_replay_of_one_mention_still_succeeds(capfd: pytest.CaptureFixture[str]) -> None:
    mention = Mention(
        id="x:1", source="x", text="hello", created_at=datetime(2026, 1, 5, 9, tzinfo=UTC)
    )
    Path("in.jsonl").write_text(mention.model_dump_json() + "\nnot json\n", encoding="utf-8")
    assert main(["replay", "--input", "in.jsonl", "--output", "out.jsonl", "--quiet"]) == 0
    assert "replay done: 1 mention (1 bad line, 0 duplicates)" in capfd.readouterr().err
    assert Path("out.jsonl").exists()


@pytest.mark.usefixtures("cli")
def test_a_missing_replay_input_is_an_input_error(capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--input", "nope.jsonl", "--output", "out.jsonl", "--quiet"]) == 2
    err = capfd.readouterr().err
    assert "crisiswatch: input error" in err and "replay input nope.jsonl does not exist" in err


@pytest.mark.usefixtures("cli")
def test_bench_input_and_truth_problems_are_input_errors(
    capfd: pytest.CaptureFixture[str],
) -> None:
    bench = ["bench", "detection", "--detector-only", "--quiet"]
    Path("truth.csv").write_text("story_root,t0,final_size\nx:1,yesterday,3\n", encoding="utf-8")
    assert main([*bench, "--input", "missing.jsonl", "--truth", "truth.csv"]) == 2
    err = capfd.readouterr().err
    assert "crisiswatch: input error" in err and "bench input missing.jsonl does not exist" in err
    assert "configuration error" not in err
    Path("in.jsonl").write_text("", encoding="utf-8")
    assert main([*bench, "--input", "in.jsonl", "--truth", "truth.csv"]) == 2
    err = capfd.readouterr().err
    assert "crisiswatch: input error" in err and "truth.csv line 2: " in err
    assert main([*bench, "--input", "in.jsonl", "--truth", "nope.csv"]) == 2
    err = capfd.readouterr().err
    assert "crisiswatch: input error" in err and "truth file nope.csv does not exist" in err


@pytest.mark.usefixtures("cli")
def test_a_bad_config_is_still_a_configuration_error(capfd: pytest.CaptureFixture[str]) -> None:
    Path("c.yaml").write_text("listener:\n  watches:\n    - {id: a}\n", encoding="utf-8")
    Path("in.jsonl").write_text("", encoding="utf-8")
    argv = ["replay", "--input", "in.jsonl", "--output", "o.jsonl", "--config", "c.yaml"]
    assert main(argv) == 2
    err = capfd.readouterr().err
    assert "crisiswatch: configuration error" in err and "input error" not in err
