"""A reconnect backoff after a long outage: the delay stays within its cap however many
attempts failed in a row. Was: the step was computed as ``first * factor**attempts`` before
the cap, and at the 1,025th failed attempt in a row (a Jetstream or Mastodon instance
unreachable for about a day at the 2-minute cap) ``2.0**1024`` raised ``OverflowError``
from inside the source's error handler: every later reconnect failed with it instead of
its own error, outside the source's backoff, health state and reconnect count."""

from __future__ import annotations

import random

from core.events import Mention
from listener.backoff import Backoff, TransientError
from listener.cursors import MemoryCursorStore
from listener.sources.live import Step
from tests.support import RecordingClock
from tests.unit.test_source_live import T0, Scripted

FAILURES = 1_100


def test_the_delay_stays_within_its_cap_after_more_than_a_thousand_failures() -> None:
    backoff = Backoff(1.0, 120.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(FAILURES)]
    assert all(0.5 <= delay <= 120.0 for delay in delays)
    assert min(delays[20:]) >= 60.0  # at the cap: half of it at least (jitter)


async def test_a_source_failing_for_a_day_goes_on_reconnecting_within_its_backoff() -> None:
    clock = RecordingClock(T0)
    post = Mention(id="t:1", source="t", text="back", created_at=T0)
    steps: list[Step | Exception] = [TransientError("unreachable")] * FAILURES
    steps.append((post, "c1"))
    source = Scripted(steps, clock=clock, cursors=MemoryCursorStore())
    source.backoff = Backoff(1.0, 120.0, rng=random.Random(7))
    await source.start()
    stream = source.mentions()
    assert await anext(stream) == post  # no error escaped the source's own reconnects
    await stream.aclose()
    assert source.health.reconnects == FAILURES
    assert max(clock.sleeps) <= 120.0
