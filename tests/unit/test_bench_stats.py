"""The arithmetic the pipeline benchmarks report with (not the benchmarks themselves)."""

from __future__ import annotations

import pytest

from bench.benchlib import first_time, pct, steady_window, summary, sustained_rate, table


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 100 .. 1, unsorted on purpose
    assert pct(values, 50) == 50.0
    assert pct(values, 90) == 90.0
    assert pct(values, 99) == 99.0
    assert pct(values, 100) == 100.0
    assert pct([3.0], 99) == 3.0
    with pytest.raises(ValueError):
        pct([], 50)


def test_sustained_rate_uses_the_steady_part_only() -> None:
    # slow start (model loading), then 100 items/s, then a slow tail
    samples = [(0.0, 0), (5.0, 0), (6.0, 100), (7.0, 200), (8.0, 300), (9.0, 400)]
    samples += [(10.0, 500), (11.0, 600), (12.0, 700), (13.0, 800), (14.0, 900), (20.0, 1000)]
    assert steady_window(samples, 1000) == ((6.0, 100), (14.0, 900))
    assert sustained_rate(samples, 1000) == pytest.approx(100.0)
    assert first_time(samples, 1000) == 20.0
    assert first_time(samples, 1001) is None


def test_no_rate_without_a_steady_window() -> None:
    assert sustained_rate([(0.0, 0), (1.0, 500)], 1000) is None  # never reached 90 %
    assert sustained_rate([(0.0, 0), (1.0, 1000)], 1000) is None  # 10 % and 90 % at once
    assert sustained_rate([], 1000) is None


def test_summary_and_table() -> None:
    s = summary([0.1, 0.2, 0.3, 0.4])
    assert s["n"] == 4 and s["p50_s"] == 0.2 and s["max_s"] == 0.4
    assert summary([]) == {}
    text = table(["a", "b"], [[1_234, 0.5], ["x", None]])
    assert text.splitlines() == [
        "| a     | b     |",
        "|-------|-------|",
        "| 1,234 | 0.500 |",
        "| x     | -     |",
    ]
