"""``crisiswatch bench detection`` on a small generated stream with known answers: three
stories explode (tier 3), nine stay small (tier 1); every explosion must be called
before its T50, no small story may be called."""

from __future__ import annotations

import gzip
import json
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api.bench import bench_detection, load_truth
from api.cli import main
from api.settings import ConfigError, Settings
from core.events import Author, Mention
from tests.fakes import FakeClassifier
from tests.support import write_replay

T0 = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
BIG = {0, 5, 9}
WORDS = [
    *("acme", "charger", "phone", "store", "order", "delivery", "battery", "screen"),
    *("camera", "speaker", "kitchen", "garden", "office", "train", "weather", "music"),
    *("price", "app", "review", "friend", "weekend", "photo", "design", "color"),
]


def _stream(tmp_path: Path) -> tuple[Path, Path]:
    rng = random.Random(11)
    mentions: list[Mention] = []
    truth: list[dict[str, object]] = []
    for story in range(12):
        start = T0 + timedelta(hours=4 * story, minutes=rng.uniform(0, 30))
        root = Mention(
            id=f"x:s{story}",
            source="x",
            text=f"{' '.join(rng.sample(WORDS, 8))}: I want a refund",  # unrelated stories
            lang="en",
            created_at=start,
            author=Author(id=f"a{story}", followers=500),
        )
        big = story in BIG
        n = 1200 if big else 15
        # big: front-loaded (mean delay 20 min); small: spread over an hour
        delays = sorted(
            -20.0 * math.log(1 - rng.random()) if big else rng.uniform(0, 60) for _ in range(n)
        )
        mentions.append(root)
        for i, d in enumerate(delays):
            mentions.append(
                Mention(
                    id=f"x:s{story}-{i}",
                    source="x",
                    created_at=start + timedelta(minutes=d),
                    author=Author(id=f"s{story}-u{i}"),
                    repost_of=root.id,
                )
            )

        def reached(share: float, delays: list[float] = delays, n: int = n) -> float:
            return delays[max(math.ceil(share * n) - 1, 0)]

        truth.append(
            {
                "story_root": root.id,
                "label": "false",
                "t0": start.isoformat().replace("+00:00", "Z"),
                "final_size": n,
                "t10_min": round(reached(0.1), 2),
                "t50_min": round(reached(0.5), 2),
                "t90_min": round(reached(0.9), 2),
                "tier": 3 if big else 1,
            }
        )
    return write_replay(tmp_path, mentions, truth)


def _check(result: dict[str, object]) -> None:
    scores = result["scores"]
    assert isinstance(scores, dict)
    sp = scores["spread3"]
    assert (sp["true_calls"], sp["false_calls"], sp["missed"]) == (3, 0, 0)
    assert sp["f1"] == 1.0
    assert scores["false_spread3_calls_per_100_stories"] == 0.0
    lead = scores["lead_minutes_before_t50"]
    assert lead["median"] > 0 and lead["share_of_tier3_before_t50"] == 1.0
    confusion = scores["confusion_truth_tier_by_max_spread"]
    assert confusion["3"]["3"] == 3 and confusion["1"]["3"] == 0
    assert sum(confusion["1"].values()) == 9
    at60 = scores["predicted_size"]["60"]
    assert at60["stories_predicted"] >= 3 and at60["median_relative_error_tier3"] is not None


def test_bench_with_the_whole_replay(tmp_path: Path) -> None:
    stream, truth = _stream(tmp_path)
    out = tmp_path / "replay.jsonl"
    result = bench_detection(
        Settings(), stream, truth, progress=False, replay_output=out, classifier=FakeClassifier()
    )
    assert result["scored_from"] == "replay output"
    _check(result)
    throughput = result["throughput"]
    assert throughput["detector_mentions_per_s"] > 0 and throughput["replay_mentions_per_s"] > 0
    assert out.read_text().count('"spread": 3') >= 3


def test_bench_command_detector_only_prints_a_table_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream, truth = _stream(tmp_path)
    out = tmp_path / "bench.json"
    argv = ["bench", "detection", "--input", str(stream), "--truth", str(truth)]
    assert main([*argv, "--detector-only", "--quiet", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "F1 1.000" in printed and "confusion" in printed
    result = json.loads(out.read_text())
    assert result["scored_from"] == "detector pass"
    _check(result)
    # the first N stories only
    assert main([*argv, "--detector-only", "--quiet", "--stories", "2", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["scores"]["stories"] == 2


def test_bench_refuses_missing_or_malformed_inputs(tmp_path: Path) -> None:
    stream, truth = _stream(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        bench_detection(Settings(), tmp_path / "nope.jsonl", truth, detector_only=True)
    bad = tmp_path / "bad.csv"
    bad.write_text("story_root,t0\nx:1,yesterday\n")
    with pytest.raises(ConfigError, match="line 2"):
        load_truth(bad)
    assert main(["bench", "detection", "--input", str(stream), "--truth", str(bad)]) == 2


def test_bench_reads_a_stream_as_the_replay_does(tmp_path: Path) -> None:
    # a byte-order mark, and gzip under a plain name: the replay takes both, so must the bench
    stream, truth = _stream(tmp_path)
    odd = tmp_path / "odd.jsonl"
    odd.write_bytes(gzip.compress(b"\xef\xbb\xbf" + _plain(stream)))
    result = bench_detection(Settings(), odd, truth, progress=False, detector_only=True)
    _check(result)


def _plain(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
