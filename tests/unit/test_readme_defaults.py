"""Defaults the README states, against the models: a default changed in the code (or in
the README) alone fails here. Each entry is the README's wording, with the number in a
group, and the setting it documents."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from api.settings import Settings, load_settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
NUMBER = r"([0-9][0-9,.e-]*)"


def _number(text: str) -> float:
    return float(text.replace(",", ""))


DOCUMENTED: list[tuple[str, Callable[[Settings], Any], Callable[[str], Any]]] = [
    (rf"`bus\.session_timeout_ms` \({NUMBER}", lambda s: s.bus.session_timeout_ms, _number),
    (rf"`bus\.heartbeat_interval_ms` \({NUMBER}", lambda s: s.bus.heartbeat_interval_ms, _number),
    (rf"`bus\.max_poll_interval_ms` \({NUMBER}\)", lambda s: s.bus.max_poll_interval_ms, _number),
    (rf"`bus\.stop_timeout` \({NUMBER} s\)", lambda s: s.bus.stop_timeout, _number),
    (
        rf"`bus\.max_dead_letters_per_minute` \({NUMBER}\)",
        lambda s: s.bus.max_dead_letters_per_minute,
        _number,
    ),
    (rf"`bus\.max_failures_in_a_row` \({NUMBER}\)", lambda s: s.bus.max_failures_in_a_row, _number),
    (
        rf"`listener\.cascade_flush_seconds` \({NUMBER} s\)",
        lambda s: s.listener.cascade_flush_seconds,
        _number,
    ),
    (
        rf"`listener\.cascade_keep_days` \({NUMBER}\)",
        lambda s: s.listener.cascade_keep_days,
        _number,
    ),
    (
        rf"`listener\.cascade_load_seconds` \({NUMBER} s\)",
        lambda s: s.listener.cascade_load_seconds,
        _number,
    ),
    (rf"`dedup_capacity` {NUMBER} ids", lambda s: s.listener.dedup_capacity, _number),
    (rf"`cascade_capacity` {NUMBER}\)", lambda s: s.listener.cascade_capacity, _number),
    (
        rf"`scorer\.classifier\.timeout_s` \({NUMBER} s",
        lambda s: s.scorer.classifier.timeout_s,
        _number,
    ),
    (rf"`scorer\.cache_size` \({NUMBER} results\)", lambda s: s.scorer.cache_size, _number),
    (
        rf"`scorer\.classifier\.cascade_threshold` \({NUMBER}\)",
        lambda s: s.scorer.classifier.cascade_threshold,
        _number,
    ),
    (
        rf"`scorer\.classifier\.chinese_cascade_threshold` \({NUMBER}\)",
        lambda s: s.scorer.classifier.chinese_cascade_threshold,
        _number,
    ),
    (rf"`burst_alpha` \({NUMBER}\)", lambda s: s.detector.burst_alpha, _number),
    (rf"`max_stories` \({NUMBER} per watch\)", lambda s: s.detector.max_stories, _number),
    (
        rf"`detector\.future_tolerance_minutes` \({NUMBER};",
        lambda s: s.detector.future_tolerance_minutes,
        _number,
    ),
    (
        r"`api\.max_body_bytes` \(([0-9]+) MiB\)",
        lambda s: s.api.max_body_bytes,
        lambda t: int(t) * 1024 * 1024,
    ),
    (
        r"`give_up_after` \(default ([0-9]+) h\)",
        lambda s: s.alerts.delivery.give_up_after,
        lambda t: timedelta(hours=int(t)),
    ),
    (
        r"`keep_trying_tier` \(default ([0-9])\)",
        lambda s: s.alerts.delivery.keep_trying_tier,
        int,
    ),
    (
        r"`initial_backoff` ([0-9]+) s doubling",
        lambda s: s.alerts.delivery.initial_backoff,
        lambda t: timedelta(seconds=int(t)),
    ),
    (
        r"up to `max_backoff` ([0-9]+) min",
        lambda s: s.alerts.delivery.max_backoff,
        lambda t: timedelta(minutes=int(t)),
    ),
    (
        r"`warn_at`, default ([0-9]+) % and [0-9]+ %",
        lambda s: s.alerts.sla[1].warn_at[0],
        lambda t: int(t) / 100,
    ),
    (
        r"tier 1 private reply in ([0-9]+) h",
        lambda s: s.alerts.sla[1].target,
        lambda t: timedelta(hours=int(t)),
    ),
    (
        r"tier 3 acknowledged in ([0-9]+) min",
        lambda s: s.alerts.sla[3].target,
        lambda t: timedelta(minutes=int(t)),
    ),
    (
        r"Defaults: tier 1 on-call after ([0-9]+) min",
        lambda s: s.alerts.escalation_policies["tier-1"].steps[0].after,
        lambda t: timedelta(minutes=int(t)),
    ),
    (
        r"tier 3 every ([0-9]+) min, three times",
        lambda s: s.alerts.escalation_policies["tier-3"].steps[0].after,
        lambda t: timedelta(minutes=int(t)),
    ),
    (
        r'drills: \{enabled: true, cron: "([^"]+)".*\n\(quarterly by default',
        lambda s: s.drills.cron,
        str,
    ),
]


@pytest.fixture(scope="module")
def defaults() -> Settings:
    saved = {n: os.environ.pop(n) for n in list(os.environ) if n.startswith("CRISISWATCH_")}
    try:
        return load_settings()
    finally:
        os.environ.update(saved)


@pytest.mark.parametrize(
    ("pattern", "setting", "parse"),
    DOCUMENTED,
    ids=[pattern[:50] for pattern, _, _ in DOCUMENTED],  # the same in every process
)
def test_a_documented_default_is_the_models(
    pattern: str,
    setting: Callable[[Settings], Any],
    parse: Callable[[str], Any],
    defaults: Settings,
) -> None:
    match = re.search(pattern, README)
    assert match, f"the README no longer says {pattern!r}: update this test with it"
    assert setting(defaults) == parse(match.group(1)), match.group(0)
