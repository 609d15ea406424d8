"""``crisiswatch replay``, review 3 (each test failed before its fix): an output that
cannot be written (a folder, under a file, a full device, a bind-mounted file) ended in
a traceback, after the model had loaded."""

from __future__ import annotations

import errno
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from api import replay
from api.cli import main
from tests.fakes import FakeClassifier
from tests.integration.test_replay_stdio import write_stream
from tests.support import crisis_stream

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """The keyword classifier instead of the model; the list says whether it loaded."""
    loaded: list[str] = []

    def load(scorer: object) -> FakeClassifier:
        loaded.append("model")
        return FakeClassifier()

    monkeypatch.setattr(replay, "load_classifier", load)
    monkeypatch.chdir(tmp_path)
    return loaded


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_stream(tmp_path / "in.jsonl", crisis_stream(T0, n=60, minutes=20))


@pytest.mark.parametrize(
    ("output", "says"),
    [
        ("in.jsonl/out.jsonl", "in.jsonl is a file, not a folder"),
        ("in.jsonl/deeper/out.jsonl", "in.jsonl is a file, not a folder"),
        ("folder", "folder: it is a folder"),
    ],
)
def test_an_output_that_cannot_be_created_is_refused_before_the_model_loads(
    source: Path, loads: list[str], capfd: pytest.CaptureFixture[str], output: str, says: str
) -> None:
    (source.parent / "folder").mkdir()
    assert main(["replay", "--input", str(source), "--output", output, "--quiet"]) == 1
    err = capfd.readouterr().err
    assert f"crisiswatch replay: cannot write {output}" in err and says in err, err
    assert "Traceback" not in err
    assert loads == [], "refused before the model loaded"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_an_output_that_fills_up_at_the_end_is_an_error_not_a_traceback(
    source: Path, loads: list[str], capfd: pytest.CaptureFixture[str]
) -> None:
    """The last lines are written out when the output closes: a full disk shows there."""
    assert main(["replay", "--input", str(source), "--output", "/dev/full", "--quiet"]) == 1
    err = capfd.readouterr().err
    assert "cannot write /dev/full: No space left on device" in err, err
    assert "Traceback" not in err


def test_an_earlier_output_that_cannot_be_removed_is_replaced_in_place(
    source: Path, loads: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A bind-mounted output (Docker ``-v out.jsonl:/out.jsonl``) cannot be removed
    (EBUSY): the earlier run's output is overwritten in place, as ``atomic_output``
    does, instead of a traceback."""
    target = tmp_path / "out.jsonl"
    target.write_text("an earlier run\n", encoding="utf-8")
    unlink, replace = Path.unlink, os.replace

    def busy_unlink(self: Path, missing_ok: bool = False) -> None:
        if self == Path("out.jsonl") or self == target:
            raise OSError(errno.EBUSY, "Device or resource busy", str(self))
        unlink(self, missing_ok=missing_ok)

    def busy_replace(src: str, dst: str | Path) -> None:
        if Path(dst) == target:
            raise OSError(errno.EBUSY, "Device or resource busy", str(dst))
        replace(src, dst)

    monkeypatch.setattr(Path, "unlink", busy_unlink)
    monkeypatch.setattr(os, "replace", busy_replace)
    assert main(["replay", "--input", str(source), "--output", "out.jsonl", "--quiet"]) == 0
    text = target.read_text(encoding="utf-8")
    assert "an earlier run" not in text and '"tier": 3' in text


async def test_a_line_longer_than_any_mention_is_skipped_without_holding_it(
    tmp_path: Path,
) -> None:
    """A whole export as one JSON array (a .json, not JSONL) is one line: it was read and
    parsed whole (a 53 MB file took 1 GB), a bigger one ended the replay out of memory.
    It is a bad line, counted and named, read a piece at a time; the lines around it
    replay."""
    import tracemalloc

    from core.clock import ManualClock
    from listener.config import ReplaySourceConfig
    from listener.sources.replay import MAX_LINE_BYTES, ReplaySource

    stream = crisis_stream(T0, n=10, minutes=5)
    lines = [m.model_dump_json(exclude_none=True) for m in stream]
    array = "[" + ",".join(lines * (6 * MAX_LINE_BYTES // len("".join(lines)) + 1)) + "]"
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join([*lines[:5], array, *lines[5:]]) + "\n", encoding="utf-8")
    source = ReplaySource(ReplaySourceConfig(path=path, speed=None), ManualClock(T0))
    await source.start()
    tracemalloc.start()
    try:
        got = [m.id async for m in source.mentions()]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == [m.id for m in stream]
    assert (source.rejected, source.lines_read) == (1, len(lines) + 1)
    assert peak < 3 * MAX_LINE_BYTES, f"{peak:,} bytes held for a {len(array):,}-byte line"


def test_a_json_array_input_is_named_as_such(
    loads: list[str],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from listener.sources.replay import MAX_LINE_BYTES

    line = crisis_stream(T0, n=1)[0].model_dump_json(exclude_none=True)
    (tmp_path / "export.json").write_text(
        "[" + ",".join([line] * (MAX_LINE_BYTES // len(line) + 1)) + "]", encoding="utf-8"
    )
    assert main(["replay", "--input", "export.json", "--output", "out.jsonl", "--quiet"]) == 2
    err = capfd.readouterr().err
    assert "every line of replay input export.json is bad (1 bad line," in err
    assert "it is one JSON array" in err
    logged = caplog.text
    assert "line 1 rejected" in logged and "one JSON array? the input is JSONL" in logged


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
async def test_a_pipe_as_input_is_replayed(tmp_path: Path) -> None:
    """``--input <(zcat day.jsonl.gz)`` (a pipe: /dev/fd/63) or a named pipe: the reader
    could not tell its position in it (``Illegal seek``), and the replay retried it every
    60 s for ever, writing nothing."""
    import asyncio
    import threading

    from api.replay import run_replay
    from api.settings import Settings

    stream = crisis_stream(T0, n=60, minutes=20)
    data = "".join(m.model_dump_json(exclude_none=True) + "\n" for m in stream).encode()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        with fifo.open("wb") as fh:
            fh.write(data)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    summary = await asyncio.wait_for(
        run_replay(
            Settings(), fifo, tmp_path / "out.jsonl", progress=False, classifier=FakeClassifier()
        ),
        timeout=20,
    )
    writer.join(timeout=5)
    assert summary.mentions == len(stream) and summary.rejected == 0
    assert '"tier": 3' in (tmp_path / "out.jsonl").read_text(encoding="utf-8")
