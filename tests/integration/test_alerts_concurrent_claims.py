"""A channel's rate limit holds across two delivery rounds of one alerter running at once
(the send right after a signal and the tick's round share one ``RateLimiter``).

On PostgreSQL ``FOR UPDATE SKIP LOCKED`` gives the two claims different rows: each planned
against the same free slots before either took one, so a robot limited to 20 a minute got
up to 40 (DingTalk then blocks it for 10 minutes). On SQLite both claims see the same rows,
so the overlap does not show there: PostgreSQL only."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts import outbox
from alerts.config import AlertsConfig
from alerts.incidents import apply_signal
from alerts.models import Delivery
from alerts.notifiers.base import AlertMessage, RateLimit
from alerts.outbox import deliver_due
from alerts.ratelimit import RateLimiter
from core.clock import ManualClock
from core.db import unit_of_work
from core.metrics import Metrics
from tests.support import tier_signal

Sessions = async_sessionmaker[AsyncSession]
LIMIT = 20
BATCH = 15  # each claim's rows fit the free slots: each plans one message per row

pytestmark = pytest.mark.postgres


class Robot:
    """A channel with DingTalk's published limit: 20 messages a minute."""

    kind = "console"
    rate_limits: ClassVar[tuple[RateLimit, ...]] = (
        RateLimit(count=LIMIT, per_seconds=60, penalty_seconds=600),
    )

    def __init__(self) -> None:
        self.sent: list[AlertMessage] = []

    async def send(self, alert: AlertMessage) -> None:
        self.sent.append(alert)


async def test_two_concurrent_rounds_send_no_more_than_the_channel_limit(
    pg_sessions: Sessions,
    clock: ManualClock,
    metrics: Metrics,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = AlertsConfig.model_validate(
        {
            "channels": {"robot": {"type": "console"}},
            "teams": {"customer_service": {"channels": ["robot"]}},
            "routes": {"teams": ["customer_service"]},
            "delivery": {"jitter": 0, "batch_size": BATCH},
        }
    )
    for n in range(2 * BATCH):
        signal = tier_signal(clock.now(), signal_id=f"sig-{n}", story_id=f"story-{n}", tier=2)
        async with unit_of_work(pg_sessions) as session:
            assert await apply_signal(session, signal, config, clock) is not None
    async with pg_sessions() as session:
        due = await session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.channel == "robot")
        )
    assert due == 2 * BATCH

    # The first claim to reach its first row update waits there until the other claim has
    # planned too (or, where claims are serialised and it cannot, for at most 1 s): the
    # interleaving that let both plan against the same free slots.
    plans = 0
    real_plan = outbox._plan
    real_claim_rows = outbox._claim_rows
    waited = False

    def plan(*args: Any, **kwargs: Any) -> Any:
        nonlocal plans
        plans += 1
        return real_plan(*args, **kwargs)

    async def claim_rows(
        session: AsyncSession, rows: Sequence[Delivery], lease_until: datetime, channel_type: str
    ) -> list[Any]:
        nonlocal waited
        if not waited:
            waited = True
            for _ in range(100):
                if plans >= 2:
                    break
                await asyncio.sleep(0.01)
        return await real_claim_rows(session, rows, lease_until, channel_type)

    monkeypatch.setattr(outbox, "_plan", plan)
    monkeypatch.setattr(outbox, "_claim_rows", claim_rows)

    robot = Robot()
    notifiers = {"robot": robot}
    limiter = RateLimiter(notifiers)
    await asyncio.gather(
        *(
            deliver_due(pg_sessions, notifiers, config, clock, metrics, limiter=limiter)
            for _ in range(2)
        )
    )
    assert 0 < len(robot.sent) <= LIMIT, f"{len(robot.sent)} messages in one minute"
    # nothing dropped: what did not fit was merged into digests or waits
    covered = sum(len(m.digest) or 1 for m in robot.sent)
    async with pg_sessions() as session:
        waiting = await session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.status == "pending")
        )
    assert covered + (waiting or 0) == 2 * BATCH
