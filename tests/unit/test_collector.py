"""The garbage collector's young-generation threshold, set by the pipeline's commands."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from api.collector import tune_collector
from api.settings import Settings


@pytest.fixture
def thresholds() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    yield before
    gc.set_threshold(*before)


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
