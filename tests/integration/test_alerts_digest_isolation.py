"""A digest that @-mentions the on-call person is sent; a message that cannot be built, or a
tick step that raises, fails alone: the other channels' deliveries in that round, the
escalations, SLA checks and reminders still go."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts import outbox
from alerts.config import AlertsConfig
from alerts.models import Delivery, IncidentEvent
from alerts.notifiers.base import AlertMessage, RateLimit
from alerts.ratelimit import RateLimiter
from alerts.service import AlertService
from core.bus.memory import MemoryBus
from core.clock import ManualClock
from core.metrics import Metrics
from tests.support import tier_signal

Sessions = async_sessionmaker[AsyncSession]


class Recorder:
    """A console-typed channel that records what it is sent."""

    kind = "console"

    def __init__(self, name: str, sent: list[tuple[str, AlertMessage]], limits: Any) -> None:
        self.name, self.sent, self.rate_limits = name, sent, limits

    async def send(self, alert: AlertMessage) -> None:
        self.sent.append((self.name, alert))


CONFIG = {
    "channels": {"pr": {"type": "console"}, "legal": {"type": "console"}},
    "people": {"lilei": {"name": "Li Lei", "chat_ids": {"slack": "U0ONCALL"}}},
    "teams": {
        "pr": {
            "channels": ["pr"],
            "rota": {"start": "2026-01-01T09:00:00+00:00", "people": ["lilei"]},
        },
        "legal": {"channels": ["legal"]},
    },
    "routes": {1: ["pr"], 2: ["pr", "legal"], 3: ["pr", "legal"]},
}


World = tuple[AlertService, list[tuple[str, AlertMessage]]]


@pytest.fixture(params=["sqlite"])
def db(request: pytest.FixtureRequest) -> Sessions:
    """The alerts database: SQLite, or PostgreSQL where a test asks for it."""
    name = "pg_sessions" if request.param == "postgres" else "sessions"
    sessions: Sessions = request.getfixturevalue(name)
    return sessions


@pytest.fixture(params=[True], ids=["deliver_on_signal"])
async def world(
    request: pytest.FixtureRequest, db: Sessions, clock: ManualClock, metrics: Metrics
) -> AsyncIterator[World]:
    """Two tier-2 incidents, their first alerts sent at once (or, with
    ``deliver_on_signal`` off, all due at the first tick), step 1 of their escalation due."""
    sent: list[tuple[str, AlertMessage]] = []
    async with httpx.AsyncClient() as http:
        service = AlertService(
            MemoryBus(metrics=metrics),
            db,
            AlertsConfig.model_validate(CONFIG | {"deliver_on_signal": request.param}),
            http,
            clock,
            metrics,
        )
        # 'pr' limited as Slack is (one message a second): what is due together is merged
        service.notifiers["pr"] = Recorder("pr", sent, (RateLimit(count=1, per_seconds=1),))
        service.notifiers["legal"] = Recorder("legal", sent, ())
        service.limiter = RateLimiter(service.notifiers)
        try:
            for sid, story in (("a", "s1"), ("b", "s2")):
                await service.handle_signals(
                    [tier_signal(clock.now(), signal_id=sid, story_id=story, tier=2)]
                )
                await service.sent()
            sent.clear()
            clock.advance(3600)  # step 1 of both (notify: on_call -> @Li Lei) is due
            yield service, sent
        finally:
            service.jobs.close()


async def _pending(sessions: Sessions, channel: str) -> list[Delivery]:
    async with sessions() as session:
        return list(
            await session.scalars(
                select(Delivery).where(Delivery.status == "pending", Delivery.channel == channel)
            )
        )


async def test_a_digest_of_alerts_that_mention_the_on_call_person_is_sent(
    world: World,
    db: Sessions,
    clock: ManualClock,
) -> None:
    service, sent = world
    for _ in range(6):
        report = await service.tick()
        assert report.failed == ()
        clock.advance(30)
    digests = [m for channel, m in sent if channel == "pr" and m.digest]
    assert digests, [(c, m.reason) for c, m in sent]
    assert [c.name for c in digests[0].mentions] == ["Li Lei"]  # once, for both escalations
    assert len(digests[0].digest) >= 2
    assert await _pending(db, "pr") == []


@pytest.mark.parametrize("world", [False], ids=["held_until_the_tick"], indirect=True)
@pytest.mark.parametrize(
    "db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_a_digest_that_cannot_be_built_fails_alone(
    world: World,
    db: Sessions,
    metrics: Metrics,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object, **kwargs: object) -> AlertMessage:
        raise RuntimeError("cannot merge these")

    monkeypatch.setattr(outbox, "digest_message", broken)
    service, sent = world
    # the first round claims the two first alerts of each channel: 'pr' (one message a
    # second) must merge its two, 'legal' sends its own
    report = await service.tick()
    assert report.failed == ()
    assert [m.reason for channel, m in sent if channel == "legal"][:2] == ["new", "new"]
    assert [channel for channel, _ in sent].count("pr") == 0
    # the rows of the broken digest: recorded as a failed attempt, retried later
    failed = [row for row in await _pending(db, "pr") if row.last_error]
    assert len(failed) >= 2
    for row in failed:
        assert row.attempts == 1 and row.first_failed_at is not None
        assert "could not build the digest message (RuntimeError)" in (row.last_error or "")
    retries = metrics.registry.get_sample_value(
        "crisiswatch_deliveries_total", {"channel": "console", "outcome": "retry"}
    )
    assert retries is not None and retries >= 2
    async with db() as session:
        kinds = list(await session.scalars(select(IncidentEvent.kind)))
    assert "alert_failed" in kinds


async def test_the_tick_still_escalates_checks_slas_and_reminds_when_delivery_raises(
    world: World,
    db: Sessions,
    metrics: Metrics,
) -> None:
    service, sent = world
    ran: list[str] = []

    async def broken() -> int:
        raise RuntimeError("delivery bug")

    remind = service.remind_tasks

    async def reminding() -> int:
        ran.append("remind_tasks")
        return await remind()

    service.deliver = broken  # type: ignore[method-assign]
    service.remind_tasks = reminding  # type: ignore[method-assign]
    report = await service.tick()
    assert report.failed == ("deliver", "deliver_again")
    assert report.escalated == 2  # both incidents' step 1 ran
    assert ran == ["remind_tasks"]
    sample = metrics.registry.get_sample_value
    assert sample("crisiswatch_sla_breaches_total", {"tier": "2", "drill": "false"}) == 2
    # step 1 of both, then step 2 of both at once (the SLA breaches)
    assert sample("crisiswatch_escalations_total", {"tier": "2", "drill": "false"}) == 4
    assert sample("crisiswatch_alert_tick_errors_total", {"step": "deliver"}) == 1
    assert sample("crisiswatch_alert_tick_errors_total", {"step": "escalate"}) == 0
    assert sent == []
