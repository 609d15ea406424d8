"""``crisiswatch bench fit-size`` on a generated stream whose final sizes hang on something
the arrival times do not show: in half the stories the reposts carry a comment of their
own, and those stories grow to 4x their first hour, the others to 1.5x. A forecast from
arrival times alone cannot tell them apart; the fitted model must, and the detector must
then predict with it (``predictor: fitted``)."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api.bench import bench_detection
from api.cli import main
from api.settings import Settings
from core.events import Author, Mention
from sentiment.detector.config import DetectorConfig
from sentiment.detector.sizemodel import load_size_model
from tests.support import write_replay

T0 = datetime(2026, 2, 1, 0, 0, tzinfo=UTC)


def _words(rng: random.Random, n: int) -> str:
    return " ".join(f"w{rng.randrange(1_000_000)}" for _ in range(n))


def _stream(tmp_path: Path, stories: int = 60) -> tuple[Path, Path]:
    rng = random.Random(5)
    mentions: list[Mention] = []
    truth: list[dict[str, object]] = []
    for s in range(stories):
        start = T0 + timedelta(hours=3 * s)
        root = Mention(
            id=f"x:s{s}",
            source="x",
            text=_words(rng, 10),
            lang="en",
            created_at=start,
            author=Author(id=f"a{s}", followers=1000),
        )
        commented = s % 2 == 0
        first_hour = rng.randint(30, 80)
        final = round(first_hour * (4.0 if commented else 1.5))
        delays = sorted(rng.uniform(0, 60) for _ in range(first_hour))
        delays += sorted(rng.uniform(60, 600) for _ in range(final - first_hour))
        mentions.append(root)
        for i, d in enumerate(delays):
            mentions.append(
                Mention(
                    id=f"x:s{s}-{i}",
                    source="x",
                    text=_words(rng, 6) if commented else "",
                    lang="en",
                    created_at=start + timedelta(minutes=d),
                    author=Author(id=f"s{s}-u{i}"),
                    repost_of=root.id,
                )
            )
        half = delays[math.ceil(final / 2) - 1]
        truth.append(
            {
                "story_root": root.id,
                "label": "n/a",
                "t0": start.isoformat().replace("+00:00", "Z"),
                "final_size": final,
                "t10_min": round(delays[math.ceil(final / 10) - 1], 2),
                "t50_min": round(half, 2),
                "t90_min": round(delays[math.ceil(final * 0.9) - 1], 2),
                "tier": 1,
            }
        )
    return write_replay(tmp_path, mentions, truth)


def test_fit_size_learns_what_arrival_times_miss_and_the_detector_predicts_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream, truth = _stream(tmp_path)
    model_path = tmp_path / "size.json"
    report_path = tmp_path / "report.json"
    argv = ["bench", "fit-size", "--input", str(stream), "--truth", str(truth)]
    argv += ["--output", str(model_path), "--ages", "20,40,60,90", "--trees", "60"]
    argv += ["--min-leaf", "8", "--learning-rate", "0.1", "--folds", "3", "--quiet"]
    argv += ["--json", str(report_path)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "cross-validated" in printed and "60 min" in printed
    report = json.loads(report_path.read_text())
    # every story at 40, 60 and 90 min; at 20 min those with 10 mentions by then
    assert report["stories"] == 60 and 180 < report["rows"] <= 240
    cv = report["median_relative_error"]["cross_validated"]["60"]
    assert cv < 0.15, report  # the two kinds, told apart out of fold
    model = load_size_model(str(model_path))
    assert model.features == DetectorConfig().size_feature_names()
    assert model.meta["cross_validated_median_relative_error"]["60"] == cv
    assert model.meta["calibration_shift"] == 0.0  # not asked to calibrate
    fitted_with = model.meta["fit"]
    assert (fitted_with["loss"], fitted_with["relative_cap"], fitted_with["top_weight"]) == (
        "median",
        0.3,
        2.0,
    )
    # calibrated: the same trees, the base moved by the shift the cross-validation chose
    calibrated = tmp_path / "calibrated.json"
    assert main([*argv[:6], "--output", str(calibrated), *argv[8:], "--calibrate"]) == 0
    shifted = load_size_model(str(calibrated))
    shift = shifted.meta["calibration_shift"]
    assert shifted.trees == model.trees and shifted.base == pytest.approx(model.base + shift)

    # the detector predicts with it; the arrival-time forecasts cannot tell the kinds apart
    fitted = Settings(detector=DetectorConfig(predictor="fitted", size_model=str(model_path)))
    with_model = bench_detection(fitted, stream, truth, detector_only=True, progress=False)
    without = bench_detection(Settings(), stream, truth, detector_only=True, progress=False)
    err = with_model["scores"]["predicted_size"]["60"]["median_relative_error"]
    base = without["scores"]["predicted_size"]["60"]["median_relative_error"]
    assert err < 0.15 and base > 0.3, (err, base)


def test_fit_size_refuses_bad_arguments_and_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream, truth = _stream(tmp_path, stories=4)
    base = ["bench", "fit-size", "--truth", str(truth), "--output", str(tmp_path / "m.json")]
    for ages in ("10,-5", "nan", "inf", "60,99999"):
        assert main([*base, "--input", str(stream), "--ages", ages]) == 2
        assert "ages must be minutes between" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse, as --stories: a usage error
        main([*base, "--input", str(stream), "--folds", "0"])
    assert "argument --folds: 0 is not 1 or more" in capsys.readouterr().err
    # an output that cannot be written is refused before the pass, a clear message
    folder = tmp_path / "a-folder"
    folder.mkdir()
    argv = ["bench", "fit-size", "--truth", str(truth), "--input", str(stream), "--quiet"]
    assert main([*argv, "--output", str(folder)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main([*argv, "--output", str(truth / "m.json")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main([*argv, "--output", str(tmp_path / "m.json"), "--json", str(folder)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main([*base, "--input", str(stream), "--learning-rate", "2"]) == 2
    assert main([*base, "--input", str(stream), "--top-weight", "0.5"]) == 2
    assert "top_weight must be" in capsys.readouterr().err
    assert main([*base, "--input", str(stream), "--relative-cap", "0"]) == 2
    assert "relative_cap must be" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: not one of the losses
        main([*base, "--input", str(stream), "--loss", "squared"])
    assert "invalid choice" in capsys.readouterr().err
    assert main([*base, "--input", str(stream), "--folds", "1", "--calibrate", "--quiet"]) == 2
    assert "--calibrate needs cross-validation" in capsys.readouterr().err
    assert main([*base, "--input", str(tmp_path / "nope.jsonl"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "input error" in err and "does not exist" in err
    # four stories, a minimum leaf of 30: too few rows, said so (of the input, not the config)
    assert main([*base, "--input", str(stream), "--quiet", "--folds", "1"]) == 2
    err = capsys.readouterr().err
    assert "input error" in err and "rows to fit" in err


def test_fit_size_needs_only_the_final_sizes_of_the_truth(tmp_path: Path) -> None:
    """A brand's own history has final sizes, not the benchmark's T10/T50/tier columns."""
    from api.bench import load_truth
    from api.settings import ConfigError

    path = tmp_path / "sizes.csv"
    path.write_text("story_root,t0,final_size\nx:s1,2026-02-01T00:00:00Z,40\n", encoding="utf-8")
    (row,) = load_truth(path, sizes_only=True).values()
    assert (row.root, row.final_size, row.tier) == ("x:s1", 40, 0)
    with pytest.raises(ConfigError, match="line 2"):
        load_truth(path)  # the detection benchmark does need them
