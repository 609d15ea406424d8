"""Pure parts of access and review: the throttle's window and memory, the transition table."""

from __future__ import annotations

import pytest

from alerts.templates.workflow import TRANSITIONS, TransitionRefused, next_status
from api.auth import AuthThrottle
from core.clock import ManualClock


def test_throttle_locks_out_after_max_failures_in_the_window() -> None:
    clock = ManualClock()
    throttle = AuthThrottle(clock, max_failures=3, window_s=10, lockout_s=30)
    assert not throttle.failed("a") and not throttle.failed("a")
    assert throttle.retry_after("a") is None
    assert not throttle.failed("b")  # per address
    assert throttle.failed("a")
    assert throttle.retry_after("a") == 30 and throttle.retry_after("b") is None
    clock.advance(29.5)
    assert throttle.retry_after("a") == 1
    clock.advance(0.5)
    assert throttle.retry_after("a") is None
    assert not throttle.failed("a")  # a fresh window after the lockout


def test_throttle_memory_is_bounded() -> None:
    throttle = AuthThrottle(ManualClock(), max_failures=2, max_clients=100)
    for i in range(1000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle._failures) == 100
    for i in range(1000):
        throttle.failed(f"10.9.{i // 256}.{i % 256}")
        throttle.failed(f"10.9.{i // 256}.{i % 256}")
    assert len(throttle._locked) == 100  # the oldest lockouts make room
    assert throttle.retry_after("10.9.3.231") is not None  # the newest is still locked


@pytest.mark.parametrize(
    ("action", "current", "expected"),
    [
        ("submit", "draft", "in_review"),
        ("approve", "in_review", "approved"),
        ("reject", "in_review", "draft"),
        ("retire", "approved", "retired"),
    ],
)
def test_allowed_transitions(action: str, current: str, expected: str) -> None:
    assert next_status(action, current, 1) == expected


def test_every_other_transition_is_refused() -> None:
    statuses = ("draft", "in_review", "approved", "retired")
    refused = 0
    for action, (sources, _) in TRANSITIONS.items():
        for current in statuses:
            if current in sources:
                continue
            with pytest.raises(TransitionRefused, match=f"cannot {action} version 4"):
                next_status(action, current, 4)
            refused += 1
    assert refused == 4 * 4 - 4
    with pytest.raises(TransitionRefused, match="it is retired"):
        next_status("approve", "retired", 1)
