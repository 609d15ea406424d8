"""``crisiswatch bench detection`` and ``crisiswatch replay`` on the files a brand's analyst
has at hand rather than the benchmark's: a truth CSV written by hand, an export that is a
JSON array or a CSV, newest first, with native ids (each test failed before its fix:
a traceback, a silent count, or a message that did not say what to fix)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from api import replay
from api.bench import bench_detection, load_truth, render
from api.cli import main
from api.settings import ConfigError, Settings
from sentiment.detector.config import DetectorConfig
from tests.fakes import FakeClassifier
from tests.integration.test_bench_detection import _plain, _stream
from tests.integration.test_replay_stdio import write_stream
from tests.support import crisis_stream

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
HEADER = "story_root,t0,final_size,t10_min,t50_min,tier"


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``main`` with the keyword classifier (not the model), run in ``tmp_path``."""
    monkeypatch.setattr(replay, "load_classifier", lambda scorer: FakeClassifier())
    monkeypatch.chdir(tmp_path)


def _truth(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "mine.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def _bench(stream: Path, truth: Path) -> dict[str, object]:
    return bench_detection(Settings(), stream, truth, progress=False, detector_only=True)


# ------------------------------------------------------------------ the truth CSV


@pytest.mark.parametrize(
    ("row", "says"),
    [
        # a "not a crisis" tier: a KeyError in the scores, after the whole detector pass
        ("x:s0,2026-01-05T00:10:00Z,40,1,5,0", r"line 2: tier: '0' is not 1, 2 or 3"),
        ("x:s0,2026-01-05T00:10:00Z,40,1,5,high", r"line 2: tier: 'high' is not 1, 2 or 3"),
        # a spreadsheet's time without an offset: a TypeError comparing times, at the end
        ("x:s0,2026-01-05 00:10:00,40,1,5,3", r"line 2: t0: '2026-01-05 00:10:00' is not a "),
        ("x:s0,2026-01-05T00:10:00Z,many,1,5,3", r"line 2: final_size: 'many' is not a whole"),
        ("x:s0,2026-01-05T00:10:00Z,40,,5,3", r"line 2: no t10_min"),
    ],
)
def test_a_bad_truth_value_is_refused_naming_its_line_and_column(
    tmp_path: Path, row: str, says: str
) -> None:
    stream, _ = _stream(tmp_path)
    with pytest.raises(ConfigError, match=says):
        _bench(stream, _truth(tmp_path, row))


def test_a_semicolon_csv_is_refused_showing_the_header_read(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_text(HEADER.replace(",", ";") + "\nx:s0;2026-01-05T00:10:00Z;40;1;5;3\n")
    with pytest.raises(ConfigError, match=r"no story_root \(the header has: story_root;t0;"):
        load_truth(path)


def test_a_story_twice_in_the_truth_is_refused(tmp_path: Path) -> None:
    # the second row silently replaced the first
    row = "x:s0,2026-01-05T00:10:00Z,40,1,5,1"
    with pytest.raises(ConfigError, match=r"line 3: story_root 'x:s0' again \(first on line 2\)"):
        load_truth(_truth(tmp_path, row, row.replace(",1\n", ",3")))


def test_a_truth_without_a_story_is_refused(tmp_path: Path) -> None:
    # it ran the whole stream and printed a table of zeros and dashes
    stream, _ = _stream(tmp_path)
    with pytest.raises(ConfigError, match="has no story"):
        _bench(stream, _truth(tmp_path))


def test_truth_stories_the_input_does_not_have_are_counted_and_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a truth written with the export's native ids ("s0" for "x:s0"): every story scored
    # as missed, without a word
    stream, truth = _stream(tmp_path)
    native = tmp_path / "native.csv"
    native.write_text(truth.read_text().replace("x:s0,", "s0,").replace("x:s5,", "s5,"))
    result = _bench(stream, native)
    assert result["truth_stories_not_in_input"] == 2
    assert "2 of the 12 truth stories have no mention in the input" in capsys.readouterr().err
    assert "(tier 3: 3; 2 not in the input)" in render(result)


# ------------------------------------------------------------------ the stream


def test_an_unsorted_input_is_said_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the replay warns of it; the bench scored an unsorted export without a word
    stream, truth = _stream(tmp_path)
    lines = _plain(stream).splitlines(keepends=True)
    newest_first = tmp_path / "export.jsonl"
    newest_first.write_bytes(b"".join(reversed(lines)))
    result = _bench(newest_first, truth)
    assert result["mentions_out_of_order"] == len(lines) - 1
    assert "not sorted by created_at" in capsys.readouterr().err


def test_the_bench_says_what_an_id_must_be(tmp_path: Path) -> None:
    # it showed the id's regular expression
    stream, truth = _stream(tmp_path)
    lines = _plain(stream).splitlines(keepends=True)
    first = json.loads(lines[0])
    first["id"] = "4875123"
    native = tmp_path / "native.jsonl"
    native.write_bytes(json.dumps(first).encode() + b"\n" + b"".join(lines[1:]))
    with pytest.raises(ConfigError, match=r'line 1: not a mention \(id: must be a string "<'):
        _bench(native, truth)


def test_the_bench_names_a_json_array_export(tmp_path: Path) -> None:
    stream, truth = _stream(tmp_path)
    lines = _plain(stream).decode().splitlines()
    array = tmp_path / "export.json.gz"  # gzip, as the stream may be
    array.write_bytes(gzip.compress(("[" + ",".join(lines[:50]) + "]").encode()))
    with pytest.raises(ConfigError, match=r"line 1: .*it is one JSON array.*jq -c"):
        _bench(array, truth)


# ------------------------------------------------------------------ the scores


def test_detector_only_does_not_report_tier_alerts_it_did_not_measure(tmp_path: Path) -> None:
    # the first pass's sentiment is fixed neutral: "tier>=2 alerts/day 0.00" read as none
    stream, truth = _stream(tmp_path)
    result = _bench(stream, truth)
    scores = result["scores"]
    assert isinstance(scores, dict) and scores["tier_alerts_per_day"] is None
    assert "tier>=2 alerts/day -" in render(result)


def test_the_stories_held_are_counted_on_a_short_stream(tmp_path: Path) -> None:
    # sampled every 1,000 mentions only: "stories held at most 0" on a small export
    mentions = crisis_stream(T0, n=60, minutes=20)
    stream = write_stream(tmp_path / "small.jsonl", mentions)
    truth = _truth(tmp_path, f"{mentions[0].id},2026-01-05T09:00:00Z,60,2,10,3")
    throughput = _bench(stream, truth)["throughput"]
    assert isinstance(throughput, dict) and throughput["stories_held_max"] >= 1


def test_the_whole_replay_is_scored_at_the_ages_whatever_the_config_reports_at(
    tmp_path: Path,
) -> None:
    # a config reporting forecasts at other ages (only for reported stories): the replay
    # wrote none at 10, 30 and 60 minutes, and the size errors read older lines or none
    stream, truth = _stream(tmp_path)
    settings = Settings(detector=DetectorConfig(forecast_report_minutes=[15.0]))
    alone = bench_detection(settings, stream, truth, progress=False, detector_only=True)
    whole = bench_detection(settings, stream, truth, progress=False, classifier=FakeClassifier())
    sizes = [r["scores"]["predicted_size"] for r in (alone, whole)]  # type: ignore[index]
    assert sizes[0] == sizes[1]


# ------------------------------------------------------------------ the replay


@pytest.mark.usefixtures("cli")
@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("export.csv", "id,date,text\n4875123,2026-01-05T09:00:00Z,my acme phone\n", "CSV"),
        (
            "export.json",
            json.dumps([{"id": "x:1", "source": "x", "created_at": "2026-01-05T09:00:00Z"}]),
            "one JSON array; turn it into JSONL first, such as with jq -c '.[]'",
        ),
        (  # pretty-printed: every line is a piece of JSON
            "pretty.json",
            json.dumps([{"id": "x:1", "source": "x"}], indent=2),
            "one JSON array",
        ),
    ],
)
def test_a_replay_of_no_mention_at_all_says_what_the_input_must_be(
    name: str, content: str, says: str, capfd: pytest.CaptureFixture[str]
) -> None:
    # was "0 mentions (N bad lines)" and an empty output, exit 0: now an input error
    Path(name).write_text(content, encoding="utf-8")
    assert main(["replay", "--input", name, "--output", "out.jsonl", "--quiet"]) == 2
    err = capfd.readouterr().err
    assert "crisiswatch: input error" in err
    assert f"no mention was read: every line of replay input {name} is bad" in err
    assert says in err and "one mention per line" in err
    assert not Path("out.jsonl").exists()


@pytest.mark.usefixtures("cli")
def test_a_newest_first_export_is_named_as_such(capfd: pytest.CaptureFixture[str]) -> None:
    write_stream(Path("export.jsonl"), crisis_stream(T0, n=40, minutes=20)[::-1])
    assert main(["replay", "--input", "export.jsonl", "--output", "out.jsonl", "--quiet"]) == 0
    err = capfd.readouterr().err
    assert "not sorted by created_at" in err and "it looks newest first" in err
