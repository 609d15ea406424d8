"""Each command-line error of ``replay`` and ``bench`` says what kind of problem it is.
Were "configuration error": an output that is the input (``replay``, ``bench detection
--replay-output``), ``bench fit-size --calibrate`` without cross-validation, an output
path that is a folder or under a file; a fold too small or rows that cannot be fitted (the
input's). ``bench detection --stories N --replay-output INPUT`` overwrote its input, and
a ``--replay-output`` it could not write was a traceback after the detector's pass."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from api import fit_size, replay
from api.cli import main
from api.settings import Settings
from core.events import Mention
from sentiment.detector.sizefit import Rows
from tests.fakes import FakeClassifier

TRUTH = "story_root,t0,final_size,t10_min,t50_min,tier\nx:1,2026-01-05T09:00:00+00:00,10,1,2,1\n"
BENCH = ["bench", "detection", "--input", "in.jsonl", "--truth", "truth.csv", "--quiet"]
FIT = ["bench", "fit-size", "--input", "in.jsonl", "--truth", "truth.csv", "--quiet"]


@pytest.fixture(autouse=True)
def files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """In ``tmp_path``: one mention, a truth CSV of its story; the keyword classifier."""
    monkeypatch.setattr(replay, "load_classifier", lambda scorer: FakeClassifier())
    monkeypatch.chdir(tmp_path)
    mention = Mention(
        id="x:1", source="x", text="hello", created_at=datetime(2026, 1, 5, 9, tzinfo=UTC)
    )
    Path("in.jsonl").write_text(mention.model_dump_json() + "\n", encoding="utf-8")
    Path("truth.csv").write_text(TRUTH, encoding="utf-8")
    Path("c.yaml").write_text("log_level: INFO\n", encoding="utf-8")
    Path("folder").mkdir()
    Path("afile").write_text("", encoding="utf-8")


def _refused(argv: list[str], capfd: pytest.CaptureFixture[str]) -> str:
    """``argv``'s stderr, once it exited 2 with neither of the other kinds' headings."""
    assert main(argv) == 2
    err = capfd.readouterr().err
    assert "configuration error" not in err and "input error" not in err, err
    assert "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("output", "what"),
    [
        ("in.jsonl", "input file (--input)"),
        ("folder/../in.jsonl", "input file (--input)"),  # the same file by another name
        ("c.yaml", "config file (--config)"),
    ],
)
def test_a_replay_output_that_is_what_it_reads_is_a_flag_error(
    output: str, what: str, capfd: pytest.CaptureFixture[str]
) -> None:
    before = {p: Path(p).read_bytes() for p in ("in.jsonl", "c.yaml")}
    argv = ["replay", "--input", "in.jsonl", "--config", "c.yaml", "--quiet"]
    err = _refused([*argv, "--output", output], capfd)
    assert f"crisiswatch replay: --output {output} is the {what}: it would be overwritten" in err
    assert {p: Path(p).read_bytes() for p in before} == before


def test_bench_refuses_a_replay_output_that_is_its_input(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """With ``--stories`` the replay reads a copy: the input was overwritten, exit 0."""
    before = Path("in.jsonl").read_bytes()
    err = _refused([*BENCH, "--stories", "1", "--replay-output", "in.jsonl"], capfd)
    assert "crisiswatch bench detection: --replay-output in.jsonl is the input file" in err
    assert Path("in.jsonl").read_bytes() == before
    err = _refused([*BENCH, "--json", "truth.csv"], capfd)
    assert "crisiswatch bench detection: --json truth.csv is the truth file (--truth)" in err
    assert Path("truth.csv").read_text(encoding="utf-8") == TRUTH


def test_bench_outputs_it_cannot_write_are_said_as_outputs(
    capfd: pytest.CaptureFixture[str],
) -> None:
    err = _refused([*BENCH, "--detector-only", "--json", "folder"], capfd)
    assert "crisiswatch bench detection: --json folder is a folder, not a file to write" in err
    err = _refused([*BENCH, "--replay-output", "afile/out.jsonl"], capfd)
    assert (
        "crisiswatch bench detection: cannot write --replay-output afile/out.jsonl: afile "
        "is not a folder" in err
    )


def test_bench_refuses_a_replay_output_it_could_not_read_back(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A device or a pipe: the bench reads the replay's lines back from it (``/dev/full``
    read back as zeros for ever: the bench hung)."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for device in ("/dev/full", str(fifo)):
        err = _refused([*BENCH, "--replay-output", device], capfd)
        assert f"--replay-output {device} is not a regular file" in err


def test_bench_says_a_replay_it_could_not_finish(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A full disk, after the detector's pass: the replay's message, exit 1 as ``replay``
    (was a traceback)."""

    async def full(*args: object, **kwargs: object) -> None:
        raise replay.ReplayError("cannot write out.jsonl: No space left on device")

    monkeypatch.setattr(replay, "run_replay", full)
    assert main([*BENCH, "--replay-output", "out.jsonl"]) == 1
    err = capfd.readouterr().err
    assert "crisiswatch bench detection: cannot write out.jsonl: No space left on device" in err
    assert "Traceback" not in err


def test_fit_size_folds_below_1_is_a_usage_error(capfd: pytest.CaptureFixture[str]) -> None:
    """Told by argparse, as ``--stories`` and ``--limit`` are."""
    with pytest.raises(SystemExit) as exited:
        main([*FIT, "--output", "m.json", "--folds", "0"])
    assert exited.value.code == 2
    err = capfd.readouterr().err
    assert "usage: crisiswatch bench fit-size" in err
    assert "crisiswatch bench fit-size: error: argument --folds: 0 is not 1 or more" in err


def test_fit_size_calibrate_without_cross_validation_is_a_flag_error(
    capfd: pytest.CaptureFixture[str],
) -> None:
    err = _refused([*FIT, "--output", "m.json", "--folds", "1", "--calibrate"], capfd)
    assert (
        "crisiswatch bench fit-size: --calibrate needs cross-validation (--folds 2 or more)" in err
    )


def test_fit_size_outputs_it_cannot_write_are_said_as_outputs(
    capfd: pytest.CaptureFixture[str],
) -> None:
    err = _refused([*FIT, "--output", "folder"], capfd)
    assert "crisiswatch bench fit-size: --output folder is a folder, not a file to write" in err
    err = _refused([*FIT, "--output", "afile/m.json"], capfd)
    assert "crisiswatch bench fit-size: cannot write --output afile/m.json: afile is not" in err
    err = _refused([*FIT, "--output", "m.json", "--json", "folder"], capfd)
    assert "crisiswatch bench fit-size: --json folder is a folder" in err
    err = _refused([*FIT, "--output", "truth.csv"], capfd)
    assert "crisiswatch bench fit-size: --output truth.csv is the truth file (--truth)" in err
    assert Path("truth.csv").read_text(encoding="utf-8") == TRUTH


def _rows(monkeypatch: pytest.MonkeyPatch, stories: list[int], value: float = 1.0) -> None:
    """``collect_rows`` gives ``stories[i]`` rows of story i (no detector pass)."""
    width = len(Settings().detector.size_feature_names())
    rows = Rows()
    for s, n in enumerate(stories):
        for i in range(n):
            rows.add([value * (i + 1)] * width, 10, 20.0 + i, 10.0, f"x:{s}")
    monkeypatch.setattr(fit_size, "collect_rows", lambda *args: rows)


def test_fit_size_data_it_cannot_fit_is_an_input_error(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # a story of 7 rows and one of 1: the fold left to train on the 1 cannot be fitted
    _rows(monkeypatch, [7, 1])
    argv = [*FIT, "--output", "m.json", "--min-leaf", "1", "--trees", "2"]
    assert main([*argv, "--folds", "2"]) == 2
    err = capfd.readouterr().err
    assert "crisiswatch: input error\ncross-validation: need at least 2 rows to fit" in err
    _rows(monkeypatch, [8], value=float("nan"))
    assert main([*argv, "--folds", "1"]) == 2
    err = capfd.readouterr().err
    assert "crisiswatch: input error\nfit-size: a feature value is not a finite number" in err
    assert not Path("m.json").exists()


def test_fit_size_says_a_model_it_fails_to_write(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    _rows(monkeypatch, [8])
    argv = [*FIT, "--output", "/dev/full", "--min-leaf", "1", "--trees", "2", "--folds", "1"]
    err = _refused(argv, capfd)
    assert "crisiswatch bench fit-size: cannot write /dev/full: No space left on device" in err
