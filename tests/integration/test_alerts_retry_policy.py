"""The delivery retry policy (``alerts.delivery``), through the AlertService on a
ManualClock: a retryable failure is retried (capped backoff) until delivered, until the
incident no longer needs the alert (acknowledged), or until ``give_up_after``; an open
tier-3 incident is never given up; a permanent error fails at once. The clock jumps from
one due retry to the next, so hours of outage take a fraction of a second."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, ClassVar

import pytest
from sqlalchemy import func, select

from alerts import incidents as svc
from alerts.config import AlertsConfig
from alerts.models import Delivery, Incident
from alerts.notifiers.base import AlertMessage, DeliveryError, RateLimit
from core.clock import ManualClock
from core.db import unit_of_work
from tests.integration.test_alerts_policies import Sessions, World, make_world

OLD_LIMIT = timedelta(seconds=sum(2 * 2**i for i in range(7)))  # 8 attempts: 254 s of backoff


class Flaky:
    """Answers like a chat endpoint that is down (retryable) or refuses (permanent)."""

    kind = "console"
    rate_limits: ClassVar[tuple[RateLimit, ...]] = ()

    def __init__(self, name: str, log: list[tuple[str, AlertMessage]]) -> None:
        self.name, self.log = name, log
        self.down = False
        self.permanent = False
        self.refused: list[str] = []  # idempotency keys

    async def send(self, alert: AlertMessage) -> None:
        if self.permanent:
            self.refused.append(alert.idempotency_key)
            raise DeliveryError(f"channel {self.name}: HTTP 404 (no such hook)", retryable=False)
        if self.down:
            self.refused.append(alert.idempotency_key)
            raise DeliveryError(f"channel {self.name}: HTTP 503", retryable=True)
        self.log.append((self.name, alert))


@pytest.fixture
async def world(sessions: Sessions, clock: ManualClock) -> AsyncIterator[World]:
    async for w in make_world(sessions, clock):
        yield w


def flaky(world: World, name: str = "pr") -> Flaky:
    channel = Flaky(name, world.log)
    world.service.notifiers[name] = channel
    return channel


async def rows(world: World, story: str = "s1", channel: str = "pr") -> list[Delivery]:
    """The first alerts (not escalations, not self-alerts) of ``story`` on ``channel``."""
    async with world.sessions() as session:
        return list(
            await session.scalars(
                select(Delivery)
                .join(Incident, Incident.id == Delivery.incident_id)
                .where(
                    Delivery.channel == channel,
                    Delivery.reason == "alert",
                    Incident.story_id == story,
                )
                .order_by(Delivery.id)
            )
        )


async def next_due(world: World) -> None:
    """Move the clock to the next pending delivery's due time, then tick."""
    async with world.sessions() as session:
        due = await session.scalar(
            select(func.min(Delivery.next_attempt_at)).where(Delivery.status == "pending")
        )
    assert due is not None, "nothing pending"
    world.clock.advance(max((due - world.clock.now()).total_seconds(), 0.0))
    await world.service.tick()


def retrying(world: World, channel: str = "pr") -> tuple[float, float]:
    return (
        world.metric("crisiswatch_alert_deliveries_retrying", channel=channel),
        world.metric("crisiswatch_alert_delivery_retrying_seconds", channel=channel),
    )


async def test_a_retryable_outage_longer_than_the_old_limit_is_delivered_once(
    world: World,
) -> None:
    pr = flaky(world)
    pr.down = True
    start = world.clock.now()
    await world.signal("a", tier=2, story="s1")  # tier 2: the age limit applies
    up_at = start + timedelta(minutes=10)
    gaps: list[float] = []
    while world.clock.now() < up_at:
        before = world.clock.now()
        await next_due(world)
        gaps.append((world.clock.now() - before).total_seconds())
        if world.clock.now() >= up_at:
            pr.down = False
            await world.service.tick()  # (next_due ticked while it was still down)
            break
        (row,) = await rows(world)
        assert row.status == "pending", (row.attempts, row.last_error)
    (row,) = await rows(world)
    refused = pr.refused.count(row.dedupe_key)
    assert refused > 8, "more attempts than the old max_attempts"
    assert world.clock.now() - start > OLD_LIMIT
    # backoff capped at max_backoff (5 min, +20 % jitter)
    assert max(gaps) <= 300 * 1.2 + 1
    assert world.metric("crisiswatch_deliveries_total", channel="console", outcome="retry") > 8
    while row.status == "pending":  # its next retry may be due after the endpoint is back
        await next_due(world)
        (row,) = await rows(world)
    assert (row.status, row.attempts) == ("sent", refused + 1)
    assert row.first_failed_at == start
    got = [m.idempotency_key for ch, m in world.log if ch == "pr"]
    assert got.count(row.dedupe_key) == 1, "delivered exactly once"
    await world.service.tick()
    assert retrying(world) == (0, 0)
    async with world.sessions() as session:
        own = await session.scalar(select(Incident).where(Incident.watch_id == "crisiswatch"))
    assert own is None, "no self-alert: nothing failed for good"


async def test_the_gauges_show_a_delivery_still_retrying(world: World) -> None:
    pr = flaky(world)
    pr.down = True
    start = world.clock.now()
    await world.signal("a", tier=2, story="s1")
    for _ in range(10):
        await next_due(world)
    async with world.sessions() as session:
        failing = (
            await session.scalars(
                select(Delivery).where(
                    Delivery.channel == "pr",
                    Delivery.status == "pending",
                    Delivery.first_failed_at.is_not(None),
                )
            )
        ).all()
    count, age = retrying(world)
    assert count == len(failing) >= 1  # the alert, and its escalation once it is due
    assert age == (world.clock.now() - start).total_seconds() > OLD_LIMIT.total_seconds()
    assert retrying(world, "legal") == (0, 0)


async def test_ack_stops_the_retries_of_the_alert(world: World) -> None:
    pr = flaky(world)
    pr.down = True
    await world.signal("a", tier=3, story="s1")  # open tier 3: never given up
    for _ in range(4):
        await next_due(world)
    incident = await world.incident("s1")
    async with unit_of_work(world.sessions) as session:
        await svc.acknowledge(session, incident.id, "maria", world.clock)
    (row,) = await rows(world)
    assert row.status == "cancelled" and row.next_attempt_at is None
    assert "acknowledged" in (row.last_error or "") and "HTTP 503" in (row.last_error or "")
    (acked,) = await world.events("acknowledged")
    assert acked.detail["cancelled_retries"] == 1
    refused = len(pr.refused)
    pr.down = False
    world.clock.advance(3600)
    await world.service.tick()
    assert len(pr.refused) == refused, "no attempt after the ack"
    # (the pr team's reminders of the statement a tier 3 has are tasks, not the alert)
    alerts = [m for ch, m in world.log if ch == "pr" and m.action == "trigger"]
    assert not [m for m in alerts if not m.reason.startswith("TASK")]
    assert retrying(world) == (0, 0)


async def test_an_alert_failing_after_the_ack_is_not_retried(world: World) -> None:
    """Acked before its first attempt failed (held, or in flight): the outbox's own check."""
    world.service.config = world.service.config.model_copy(update={"deliver_on_signal": False})
    pr = flaky(world)
    pr.down = True
    await world.signal("a", tier=3, story="s1")
    incident = await world.incident("s1")
    async with unit_of_work(world.sessions) as session:
        await svc.acknowledge(session, incident.id, "maria", world.clock)
    await world.service.tick()  # the alert's first attempt, after the ack
    assert len(pr.refused) == 1
    (row,) = await rows(world)
    assert row.status == "cancelled"
    (event,) = [e for e in await world.events("alert_failed") if e.detail["channel"] == "pr"]
    assert event.detail["will_retry"] is False
    assert event.detail["cancelled"] == "incident acknowledged"
    assert world.metric("crisiswatch_deliveries_total", channel="console", outcome="cancelled")


async def test_give_up_after_the_max_age_fails_and_raises_the_self_alert(
    sessions: Sessions, clock: ManualClock
) -> None:
    # max_backoff 10 min (1 min by default): the hour is a dozen attempts per delivery
    # instead of sixty, on a clock that jumps anyway; the policy under test is the same
    delivery = {"give_up_after": "PT1H", "max_backoff": "PT10M"}
    async for world in make_world(sessions, clock, delivery=delivery):
        await _gives_up_after_an_hour(world)


async def _gives_up_after_an_hour(world: World) -> None:
    pr = flaky(world)
    pr.down = True
    give_up = timedelta(hours=1)  # 6 h by default: fewer ticks to run here
    start = world.clock.now()
    await world.signal("a", tier=2, story="s1")
    # an open tier-3 incident on the same channel, another watch (no inhibition)
    await world.signal("b", tier=3, story="s2", watch="other-brand")
    while True:
        (row,) = await rows(world)
        if row.status != "pending":
            break
        await next_due(world)
    assert row.status == "failed"
    assert world.clock.now() == start + give_up, "the last attempt is at the deadline"
    assert row.last_error and "HTTP 503" in row.last_error
    async with world.sessions() as session:
        own = await session.scalar(select(Incident).where(Incident.watch_id == "crisiswatch"))
    assert own is not None and own.story_id == "channel:pr"
    assert "gave up" in own.explanation and "1:00:00" in own.explanation
    failed = [
        e.detail
        for e in await world.events("alert_failed")
        if e.incident_id == row.incident_id and e.detail["will_retry"] is False
    ]
    assert [d["gave_up"] for d in failed if d["reason"] == "alert"] == [
        "still failing 1:00:00 after its first failure"
    ]
    # the tier-3 alert of the open incident keeps trying
    (crisis,) = await rows(world, "s2")
    assert crisis.status == "pending"
    assert retrying(world)[1] >= give_up.total_seconds()
    pr.down = False
    while crisis.status == "pending":
        await next_due(world)
        (crisis,) = await rows(world, "s2")
    assert crisis.status == "sent"


async def test_a_permanent_error_fails_at_once_even_for_an_open_tier3(world: World) -> None:
    pr = flaky(world)
    pr.permanent = True
    await world.signal("a", tier=3, story="s1")
    (row,) = await rows(world)
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 1, None)
    async with world.sessions() as session:
        own = await session.scalar(select(Incident).where(Incident.watch_id == "crisiswatch"))
    assert own is not None and "404" in own.explanation


async def test_max_attempts_from_an_old_config_is_still_a_limit(
    sessions: Sessions, clock: ManualClock
) -> None:
    async for world in make_world(sessions, clock, delivery={"max_attempts": 8}):
        pr = flaky(world)
        pr.down = True
        await world.signal("a", tier=2, story="s1")
        while (await rows(world))[0].status == "pending":
            await next_due(world)
        (row,) = await rows(world)
        assert (row.status, row.attempts) == ("failed", 8)


def test_delivery_config_defaults_and_old_keys() -> None:
    default = AlertsConfig().delivery
    assert (default.max_attempts, default.give_up_after, default.keep_trying_tier) == (
        None,
        timedelta(hours=6),
        3,
    )
    old: dict[str, Any] = {
        "max_attempts": 8,
        "fallback_after": 3,
        "fallback_if_wait_over": "PT1M",
        "initial_backoff": "PT2S",
        "max_backoff": "PT5M",
    }
    assert AlertsConfig.model_validate({"delivery": old}).delivery.max_attempts == 8
    never = {"give_up_after": None, "keep_trying_tier": None}
    assert AlertsConfig.model_validate({"delivery": never}).delivery.give_up_after is None
    with pytest.raises(ValueError, match="give_up_after must be positive"):
        AlertsConfig.model_validate({"delivery": {"give_up_after": "PT0S"}})
