"""The issue's delivery goals, on a ManualClock (ticks every 5 s of clock time):

* with the primary chat channel answering 500s, 429s with Retry-After, or timing out, a
  tier-3 alert still reaches a person on another channel within 10 minutes;
* 200 tier-1 incidents in one minute to one DingTalk-like robot (20 messages a minute):
  at most 20 messages in any minute, and every incident in some message.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import ClassVar

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts.config import AlertsConfig
from alerts.models import Delivery, Incident, IncidentEvent
from alerts.notifiers.base import AlertMessage, DeliveryError, RateLimit
from alerts.ratelimit import RateLimiter
from alerts.service import AlertService
from core.bus.memory import MemoryBus
from core.clock import ManualClock
from core.events import Signal
from core.metrics import Metrics
from tests.support import tier_signal

Sessions = async_sessionmaker[AsyncSession]
TICK = 5.0
SECRET = "signing-secret-0123456789"


def signal(clock: ManualClock, n: int, tier: int) -> Signal:
    return tier_signal(clock.now(), signal_id=f"sig-{n}", story_id=f"story-{n}", tier=tier)


# -- a tier-3 alert reaches a person although the primary channel is down --------------


def failover_config() -> AlertsConfig:
    def hook(name: str) -> dict[str, object]:
        return {"type": "webhook", "url": f"https://{name}.example/{name}", "secret": SECRET}

    names = ("pr-chat", "legal-chat", "exec-chat", "olga-chat", "olga-sms")
    return AlertsConfig.model_validate(
        {
            "channels": {name: hook(name) for name in names},
            "people": {"olga": {"phone": "+8613800000000", "channels": ["olga-chat", "olga-sms"]}},
            "teams": {
                "pr": {
                    "channels": ["pr-chat"],
                    "rota": {"start": "2026-01-01T09:00:00+08:00", "people": ["olga"]},
                },
                "legal": {"channels": ["legal-chat"]},
                "executives": {"channels": ["exec-chat"]},
                "customer_service": {"channels": ["pr-chat"]},
            },
            "routes": {1: ["customer_service"], 2: ["pr"], 3: ["pr", "legal", "executives"]},
        }
    )


Failure = Callable[[httpx.Request], httpx.Response]


def status_500(request: httpx.Request) -> httpx.Response:
    return httpx.Response(500)


def status_429(request: httpx.Request) -> httpx.Response:
    return httpx.Response(429, headers={"Retry-After": "120"})


def timing_out(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


@pytest.mark.parametrize(
    ("failure", "tries"),
    # 429 with a 2-minute Retry-After: the next channel at once, not after three waits
    [(status_500, 3), (status_429, 1), (timing_out, 3)],
    ids=["500", "429", "timeout"],
)
async def test_a_tier3_alert_reaches_a_person_on_another_channel_within_10_minutes(
    sessions: Sessions, clock: ManualClock, metrics: Metrics, failure: Failure, tries: int
) -> None:
    start = clock.now()
    reached: list[tuple[float, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        host = request.url.host.split(".")[0]
        if host.endswith("-chat"):  # the chat platform is down for everyone
            return failure(request)
        reached.append(((clock.now() - start).total_seconds(), host))
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        service = AlertService(
            MemoryBus(metrics=metrics), sessions, failover_config(), http, clock, metrics
        )
        try:
            await service.handle_signals([signal(clock, 1, tier=3)])
            await service.sent()
            while not reached and clock.now() - start <= timedelta(minutes=10):
                clock.advance(TICK)
                await service.tick()
        finally:
            service.jobs.close()
    assert reached, "no person was reached within 10 minutes"
    seconds, channel = reached[0]
    assert channel == "olga-sms" and seconds <= 600
    async with sessions() as session:
        kinds = list(await session.scalars(select(IncidentEvent.kind)))
        rows = list(await session.scalars(select(Delivery).where(Delivery.channel == "olga-chat")))
    assert "alert_fallback" in kinds
    assert rows and rows[0].status == "failed" and rows[0].attempts == tries


# -- 200 tier-1 incidents in a minute to one DingTalk-like robot -----------------------


class FakeDingTalk:
    """A channel class with DingTalk's published limit: 20 messages a minute."""

    kind = "dingtalk"
    rate_limits: ClassVar[tuple[RateLimit, ...]] = (
        RateLimit(count=20, per_seconds=60, penalty_seconds=600),
    )

    def __init__(self, name: str, clock: ManualClock) -> None:
        self.name = name
        self.clock = clock
        self.messages: list[tuple[datetime, AlertMessage]] = []

    async def send(self, alert: AlertMessage) -> None:
        self.messages.append((self.clock.now(), alert))


async def test_a_burst_of_200_incidents_is_merged_never_dropped(
    sessions: Sessions, clock: ManualClock, metrics: Metrics
) -> None:
    config = AlertsConfig.model_validate(
        {
            "channels": {"robot": {"type": "console"}},
            "teams": {"customer_service": {"channels": ["robot"]}},
            "routes": {"teams": ["customer_service"]},
        }
    )
    robot = FakeDingTalk("robot", clock)
    async with httpx.AsyncClient() as http:
        service = AlertService(MemoryBus(metrics=metrics), sessions, config, http, clock, metrics)
        service.notifiers["robot"] = robot
        service.limiter = RateLimiter(service.notifiers)
        start = clock.now()
        try:
            for n in range(200):  # one every 0.3 s: 200 in one minute
                clock.set(start + timedelta(seconds=0.3 * n))
                await service.handle_signals([signal(clock, n, tier=1)])
                await service.sent()
                if n % 17 == 0:
                    await service.tick()
            while clock.now() - start < timedelta(minutes=5):
                clock.advance(TICK)
                await service.tick()
        finally:
            service.jobs.close()
    times = [t for t, _ in robot.messages]
    for t in times:
        in_window = [u for u in times if t <= u < t + timedelta(seconds=60)]
        assert len(in_window) <= 20, f"{len(in_window)} messages in the minute from {t}"
    covered = {item.incident_id for _, m in robot.messages for item in m.digest} | {
        m.incident_id for _, m in robot.messages if not m.digest
    }
    async with sessions() as session:
        ids = set(await session.scalars(select(Incident.id)))
        pending = list(await session.scalars(select(Delivery).where(Delivery.status != "sent")))
    assert len(ids) == 200 and covered == ids, f"{len(ids - covered)} incidents never sent"
    assert pending == []
    assert any(m.digest for _, m in robot.messages)
    # merged, not queued for ever: every incident was in a message within 2 minutes
    first_sent: dict[int, datetime] = {}
    for t, m in robot.messages:
        for incident_id in [i.incident_id for i in m.digest] or [m.incident_id]:
            first_sent.setdefault(incident_id, t)
    assert max(first_sent.values()) - start <= timedelta(minutes=2)
    assert metrics.registry.get_sample_value(
        "crisiswatch_alert_digests_total", {"channel": "console"}
    )


def robot_service(
    robot: FakeDingTalk,
    http: httpx.AsyncClient,
    sessions: Sessions,
    clock: ManualClock,
    metrics: Metrics,
) -> AlertService:
    """An alerter whose one channel is ``robot`` (customer service's, every tier), with the
    robot's rate limit: one process of a restart test."""
    config = AlertsConfig.model_validate(
        {
            "channels": {"robot": {"type": "console"}},
            "teams": {"customer_service": {"channels": ["robot"]}},
            "routes": {"teams": ["customer_service"]},
        }
    )
    service = AlertService(MemoryBus(metrics=metrics), sessions, config, http, clock, metrics)
    service.notifiers["robot"] = robot
    service.limiter = RateLimiter(service.notifiers)
    return service


async def test_after_a_restart_the_rate_limit_counts_what_was_sent_before(
    sessions: Sessions, clock: ManualClock, metrics: Metrics
) -> None:
    def service_with(robot: FakeDingTalk, http: httpx.AsyncClient) -> AlertService:
        return robot_service(robot, http, sessions, clock, metrics)

    async with httpx.AsyncClient() as http:
        before, after = FakeDingTalk("robot", clock), FakeDingTalk("robot", clock)
        first = service_with(before, http)
        for n in range(20):
            clock.advance(1)
            await first.handle_signals([signal(clock, n, tier=1)])
            await first.sent()
        first.jobs.close()
        assert len(before.messages) == 20
        second = service_with(after, http)  # the restart
        try:
            await second.resume()
            await second.handle_signals([signal(clock, 99, tier=1)])
            await second.sent()
            assert after.messages == [], "the window of the first process still counts"
            clock.advance(41)  # 60 s after the first message
            await second.tick()
            assert [m.incident_id for _, m in after.messages] == [21]
        finally:
            second.jobs.close()


async def test_after_a_restart_messages_sent_in_one_round_count_one_by_one(
    sessions: Sessions, clock: ManualClock, metrics: Metrics
) -> None:
    """20 alerts due together go out as 20 messages in one delivery round, all recorded at
    the round's time: the restarted process must count 20, not 1 (DingTalk blocks a robot
    over 20 a minute for 10 minutes)."""

    def service_with(robot: FakeDingTalk, http: httpx.AsyncClient) -> AlertService:
        return robot_service(robot, http, sessions, clock, metrics)

    async with httpx.AsyncClient() as http:
        before, after = FakeDingTalk("robot", clock), FakeDingTalk("robot", clock)
        first = service_with(before, http)
        await first.handle_signals([signal(clock, n, tier=1) for n in range(20)])
        await first.sent()
        first.jobs.close()
        assert len(before.messages) == 20 and len({t for t, _ in before.messages}) == 1
        second = service_with(after, http)  # the restart
        try:
            await second.resume()
            clock.advance(5)
            await second.handle_signals([signal(clock, 99, tier=1)])
            await second.sent()
            assert after.messages == [], "20 messages of one round still fill the window"
            clock.advance(56)  # the round's messages leave the window
            await second.tick()
            assert [m.incident_id for _, m in after.messages] == [21]
        finally:
            second.jobs.close()


class BlockingRobot(FakeDingTalk):
    """Answers its first message with "too fast" (DingTalk then blocks for 10 minutes)."""

    async def send(self, alert: AlertMessage) -> None:
        if not self.messages and not getattr(self, "refused", False):
            self.refused = True
            raise DeliveryError("robot: sending too fast", retryable=True, retry_after=30)
        await super().send(alert)


async def test_a_channel_blocked_by_its_platform_hands_alerts_to_the_next_channel(
    sessions: Sessions, clock: ManualClock, metrics: Metrics
) -> None:
    config = AlertsConfig.model_validate(
        {
            "channels": {"robot": {"type": "console"}, "mail": {"type": "console"}},
            "teams": {"pr": {"channels": ["robot"], "fallback_channels": ["mail"]}},
            "routes": {"teams": ["pr"]},
        }
    )
    robot, mail = BlockingRobot("robot", clock), FakeDingTalk("mail", clock)
    async with httpx.AsyncClient() as http:
        service = AlertService(MemoryBus(metrics=metrics), sessions, config, http, clock, metrics)
        service.notifiers.update(robot=robot, mail=mail)
        service.limiter = RateLimiter(service.notifiers)
        try:
            await service.handle_signals([signal(clock, 1, tier=3)])
            await service.sent()
            clock.advance(5)
            await service.handle_signals([signal(clock, 2, tier=3)])  # while blocked
            await service.sent()
            assert [m.incident_id for _, m in mail.messages] == [2], "not held 10 minutes"
            clock.advance(30)  # the first one's retry: the robot is still blocked
            await service.tick()
        finally:
            service.jobs.close()
    assert sorted(m.incident_id for _, m in mail.messages) == [1, 2]
    assert robot.messages == []
