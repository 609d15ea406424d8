"""The outbox under the failures it promises to survive: a channel's ``Retry-After`` longer
than the backoff cap, seen by a second alerter (or after a restart); the failure hook (the
self-alert) raising while a round is recorded."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any, ClassVar

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts.config import AlertsConfig
from alerts.incidents import apply_signal
from alerts.models import Delivery, Incident
from alerts.notifiers.base import AlertMessage, DeliveryError, Notifier, RateLimit
from alerts.outbox import deliver_due
from alerts.ratelimit import RateLimiter
from alerts.selfalert import channel_failure_handler
from core.clock import ManualClock
from core.db import unit_of_work
from core.metrics import Metrics
from tests.support import tier_signal

Sessions = async_sessionmaker[AsyncSession]
ON_BOTH = pytest.mark.parametrize(
    "db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


@pytest.fixture(params=["sqlite"])
def db(request: pytest.FixtureRequest) -> Sessions:
    """The alerts database: SQLite, or PostgreSQL where a test asks for it."""
    name = "pg_sessions" if request.param == "postgres" else "sessions"
    sessions: Sessions = request.getfixturevalue(name)
    return sessions


class Scripted:
    """A console-typed channel: raises the scripted errors in turn, then records."""

    kind = "console"
    rate_limits: ClassVar[tuple[RateLimit, ...]] = ()

    def __init__(self, *errors: DeliveryError) -> None:
        self.errors = list(errors)
        self.sent: list[AlertMessage] = []
        self.tries = 0

    async def send(self, alert: AlertMessage) -> None:
        self.tries += 1
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append(alert)


def config(*channels: str, **delivery: Any) -> AlertsConfig:
    return AlertsConfig.model_validate(
        {
            "channels": {name: {"type": "console"} for name in channels},
            "teams": {name: {"channels": [name]} for name in channels},
            "routes": {1: list(channels), 2: list(channels), 3: list(channels)},
            "delivery": {"jitter": 0} | delivery,
        }
    )


async def raise_incident(sessions: Sessions, cfg: AlertsConfig, clock: ManualClock) -> None:
    signal = tier_signal(clock.now(), signal_id="a", story_id="s1", tier=2)
    async with unit_of_work(sessions) as session:
        assert await apply_signal(session, signal, cfg, clock) is not None


async def deliveries(sessions: Sessions, watch: str = "acme") -> dict[str, Delivery]:
    async with sessions() as session:
        rows = await session.scalars(
            select(Delivery).join(Incident).where(Incident.watch_id == watch)
        )
        return {row.channel: row for row in rows}


async def test_a_retry_after_longer_than_the_backoff_cap_is_honoured(
    sessions: Sessions, clock: ManualClock, metrics: Metrics
) -> None:
    """A 429 asking for 5 minutes: the row waits 5 minutes, not ``max_backoff`` (1 min).
    The in-memory block of the limiter that saw the 429 hid the early retry on that one
    process; another alerter replica, or this one after a restart, sent again after a
    minute, into the platform's penalty."""
    cfg = config("pr")
    assert cfg.delivery.max_backoff == timedelta(minutes=1)
    pr = Scripted(DeliveryError("channel pr: HTTP 429", retryable=True, retry_after=300))
    notifiers: dict[str, Notifier] = {"pr": pr}
    await raise_incident(sessions, cfg, clock)
    start = clock.now()
    await deliver_due(sessions, notifiers, cfg, clock, metrics, rng=random.Random(0))
    row = (await deliveries(sessions))["pr"]
    assert (row.status, row.next_attempt_at) == ("pending", start + timedelta(seconds=300))

    clock.advance(90)  # a second replica (its own limiter, which never saw the 429)
    other = RateLimiter(notifiers)
    await deliver_due(sessions, notifiers, cfg, clock, metrics, limiter=other)
    assert pr.tries == 1
    clock.set(start + timedelta(seconds=300))
    await deliver_due(sessions, notifiers, cfg, clock, metrics, limiter=other)
    assert (pr.tries, len(pr.sent)) == (2, 1)


@ON_BOTH
async def test_a_failure_hook_that_raises_does_not_undo_the_round(
    db: Sessions, clock: ManualClock, metrics: Metrics
) -> None:
    """'legal' is sent and 'pr' fails for good in one round; the hook that reports the
    failure raises. The round's outcomes stay recorded: before, the whole record rolled
    back, so 'legal' was sent again after the claim timeout, and again, as often as the
    hook raised, and 'pr' was never marked failed."""
    cfg = config("pr", "legal")
    pr = Scripted(
        DeliveryError("channel pr: 404", retryable=False),
        DeliveryError("channel pr: 404", retryable=False),
    )
    legal = Scripted()
    notifiers: dict[str, Notifier] = {"pr": pr, "legal": legal}
    calls: list[str] = []

    async def broken(session: AsyncSession, channel: str, error: str, now: Any) -> None:
        calls.append(channel)
        raise RuntimeError("the self-alert could not be raised")

    await raise_incident(db, cfg, clock)
    await deliver_due(db, notifiers, cfg, clock, metrics, on_failed=broken)
    rows = await deliveries(db)
    assert (rows["legal"].status, rows["pr"].status) == ("sent", "failed")
    assert calls == ["pr"]
    clock.advance(cfg.delivery.claim_timeout.total_seconds() + 1)
    await deliver_due(db, notifiers, cfg, clock, metrics, on_failed=broken)
    assert (len(legal.sent), pr.tries) == (1, 1)


@ON_BOTH
@pytest.mark.parametrize("length", [230, 255])
async def test_a_channel_with_a_long_name_that_fails_for_good_raises_its_self_alert(
    db: Sessions, clock: ManualClock, metrics: Metrics, length: int
) -> None:
    """A channel name may be up to 255 characters (the outbox's column): the self-alert's
    signal id and story (``channel:<name>``) must still fit the incidents' 255. Before,
    they did not, ``apply_signal`` refused the signal (``InvalidSignal``) inside the
    round's record, and the round was never recorded (see the test above)."""
    name = "c" * length
    cfg = config(name, "pr")
    broken = Scripted(DeliveryError(f"channel {name}: 404", retryable=False))
    notifiers: dict[str, Notifier] = {name: broken, "pr": Scripted()}
    hook = channel_failure_handler(cfg)
    await raise_incident(db, cfg, clock)
    await deliver_due(db, notifiers, cfg, clock, metrics, on_failed=hook)
    rows = await deliveries(db)
    assert (rows[name].status, rows["pr"].status) == ("failed", "sent")
    async with db() as session:
        own = list(
            await session.scalars(select(Incident).where(Incident.watch_id == "crisiswatch"))
        )
    assert len(own) == 1 and len(own[0].story_id) <= 255
    assert name[:100] in own[0].story_id and "404" in own[0].explanation

    # it fails for good again while that incident is open: noted on it, no second one
    clock.advance(60)
    broken.errors.append(DeliveryError(f"channel {name}: 404", retryable=False))
    signal = tier_signal(clock.now(), signal_id="b", story_id="s2", tier=2)
    async with unit_of_work(db) as session:
        await apply_signal(session, signal, cfg, clock)
    await deliver_due(db, notifiers, cfg, clock, metrics, on_failed=hook)
    async with db() as session:
        count = len(
            list(await session.scalars(select(Incident).where(Incident.watch_id == "crisiswatch")))
        )
    assert count == 1
