"""Sliding-window limits per channel; Retry-After blocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerts.notifiers.base import RateLimit
from alerts.ratelimit import ChannelLimiter

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_twenty_a_minute_in_any_window() -> None:
    limiter = ChannelLimiter((RateLimit(count=20, per_seconds=60, penalty_seconds=600),))
    assert limiter.available(T0) == 20
    limiter.take(T0, 15)
    limiter.take(T0 + timedelta(seconds=30), 5)
    assert limiter.available(T0 + timedelta(seconds=59)) == 0
    assert limiter.next_free(T0 + timedelta(seconds=59)) == T0 + timedelta(seconds=60)
    assert limiter.available(T0 + timedelta(seconds=60)) == 15
    assert limiter.available(T0 + timedelta(seconds=90)) == 20
    assert limiter.penalty() == timedelta(seconds=600)


def test_several_limits_the_tightest_counts() -> None:
    limiter = ChannelLimiter(
        (RateLimit(count=5, per_seconds=1), RateLimit(count=100, per_seconds=60))
    )
    limiter.take(T0, 5)
    assert limiter.available(T0) == 0
    assert limiter.available(T0 + timedelta(seconds=1)) == 5
    for i in range(19):
        limiter.take(T0 + timedelta(seconds=1 + i), 5)
    assert limiter.available(T0 + timedelta(seconds=30)) == 0
    assert limiter.next_free(T0 + timedelta(seconds=30)) == T0 + timedelta(seconds=60)


def test_blocked_until_retry_after() -> None:
    limiter = ChannelLimiter(())
    assert limiter.available(T0) > 1000
    limiter.block(T0 + timedelta(seconds=30))
    assert limiter.available(T0 + timedelta(seconds=29)) == 0
    assert limiter.next_free(T0) == T0 + timedelta(seconds=30)
    assert limiter.available(T0 + timedelta(seconds=30)) > 0
