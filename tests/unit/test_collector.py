"""The garbage collector's young-generation threshold, set by the pipeline's commands."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import uvicorn

from api.cli import main
from api.collector import tune_collector
from api.serve import serve_roles
from api.settings import Settings
from tests.support import free_port


@pytest.fixture
def thresholds() -> tuple[int, int, int]:
    """The thresholds the test starts with (``tests/conftest.py`` restores them after)."""
    return gc.get_threshold()


def test_sets_the_young_threshold_only(thresholds: tuple[int, int, int]) -> None:
    tune_collector(12_345)
    assert gc.get_threshold() == (12_345, thresholds[1], thresholds[2])


def test_zero_keeps_pythons_thresholds(thresholds: tuple[int, int, int]) -> None:
    tune_collector(0)
    assert gc.get_threshold() == thresholds


def test_setting_default_and_bounds() -> None:
    assert Settings().gc_young_threshold == 10_000
    with pytest.raises(ValueError, match="gc_young_threshold"):
        Settings(gc_young_threshold=-1)


def test_replay_and_bench_commands_set_it(
    thresholds: tuple[int, int, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRISISWATCH_GC_YOUNG_THRESHOLD", "23456")
    gc.set_threshold(700, thresholds[1], thresholds[2])
    missing = str(tmp_path / "missing.jsonl")
    main(["replay", "--input", missing, "--output", str(tmp_path / "out.jsonl")])
    assert gc.get_threshold()[0] == 23_456
    gc.set_threshold(700, thresholds[1], thresholds[2])
    main(["bench", "detection", "--input", missing, "--truth", missing])
    assert gc.get_threshold()[0] == 23_456


def test_serving_a_role_sets_it(
    thresholds: tuple[int, int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    gc.set_threshold(700, thresholds[1], thresholds[2])
    port = free_port()  # (the port is taken before the start-up: the default may be in use)
    assert serve_roles(Settings(), roles=("api",), demo=False, host=None, port=port) == 0
    assert gc.get_threshold()[0] == 10_000
