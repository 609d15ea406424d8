"""Silences, inhibition, quiet hours, SLA clocks and self-alerts, through the AlertService
on a ManualClock with recording notifiers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts import incidents as svc
from alerts import silences
from alerts.config import AlertsConfig, Matchers
from alerts.models import Delivery, Incident, IncidentEvent, Silence
from alerts.notifiers.base import AlertMessage, DeliveryError, RateLimit
from alerts.service import AlertService
from core.bus.memory import MemoryBus
from core.clock import ManualClock
from core.db import unit_of_work
from core.events import Signal
from core.metrics import Metrics
from tests.support import tier_signal

Sessions = async_sessionmaker[AsyncSession]
CHANNELS = ("cs", "pr", "legal", "exec")


class Recording:
    kind = "console"
    rate_limits: ClassVar[tuple[RateLimit, ...]] = ()

    def __init__(self, name: str, log: list[tuple[str, AlertMessage]], fail: bool = False):
        self.name, self.log, self.fail = name, log, fail

    async def send(self, alert: AlertMessage) -> None:
        if self.fail:
            raise DeliveryError(f"channel {self.name}: 404 (no such robot)", retryable=False)
        self.log.append((self.name, alert))


def signal(
    clock: ManualClock, sid: str, tier: int, story: str = "s1", watch: str = "acme"
) -> Signal:
    return tier_signal(clock.now(), signal_id=sid, story_id=story, tier=tier, watch=watch)


class World:
    def __init__(self, sessions: Sessions, clock: ManualClock, service: AlertService) -> None:
        self.sessions, self.clock, self.service = sessions, clock, service
        self.log: list[tuple[str, AlertMessage]] = []
        for name in list(service.notifiers):
            service.notifiers[name] = Recording(name, self.log)

    async def signal(self, *args: Any, **kw: Any) -> None:
        await self.service.handle_signals([signal(self.clock, *args, **kw)])
        await self.service.sent()

    def sent(self) -> list[str]:
        out = sorted(ch for ch, _ in self.log)
        self.log.clear()
        return out

    async def events(self, kind: str) -> list[IncidentEvent]:
        async with self.sessions() as session:
            return list(
                await session.scalars(select(IncidentEvent).where(IncidentEvent.kind == kind))
            )

    async def incident(self, story: str) -> Incident:
        async with self.sessions() as session:
            found = await session.scalar(select(Incident).where(Incident.story_id == story))
            assert found is not None
            return found

    def metric(self, name: str, **labels: str) -> float:
        return self.service.metrics.registry.get_sample_value(name, labels) or 0.0


async def make_world(
    sessions: Sessions, clock: ManualClock, **overrides: Any
) -> AsyncIterator[World]:
    data: dict[str, Any] = {
        "channels": {name: {"type": "console"} for name in CHANNELS},
        "teams": {
            "customer_service": {"channels": ["cs"]},
            "pr": {"channels": ["pr"]},
            "legal": {"channels": ["legal"]},
            "executives": {"channels": ["exec"]},
        },
        "routes": {1: ["customer_service"], 2: ["pr"], 3: ["pr", "legal", "executives"]},
    }
    data.update(overrides)
    metrics = Metrics()
    async with httpx.AsyncClient() as http:
        service = AlertService(
            MemoryBus(metrics=metrics),
            sessions,
            AlertsConfig.model_validate(data),
            http,
            clock,
            metrics,
        )
        try:
            yield World(sessions, clock, service)
        finally:
            service.jobs.close()


@pytest.fixture
async def world(sessions: Sessions, clock: ManualClock) -> AsyncIterator[World]:
    async for w in make_world(sessions, clock):
        yield w


async def test_a_silence_mutes_matching_alerts_until_it_ends(world: World) -> None:
    now = world.clock.now()
    async with unit_of_work(world.sessions) as session:
        silence = silences.create(
            session,
            matchers=Matchers(watch=["acme"], tier=[1]),
            ends_at=now + timedelta(hours=1),
            author="maria",
            reason="known outage, statement already out",
            now=now,
        )
    await world.signal("a", tier=1, story="s1")
    await world.signal("b", tier=2, story="s2")  # tier 2 is not silenced
    assert world.sent() == ["pr"]
    (event,) = await world.events("silenced")
    assert event.detail["silence"] == silence.id and event.detail["author"] == "maria"
    assert (await world.incident("s1")).next_escalation_at is None
    assert world.metric("crisiswatch_alerts_suppressed_total", reason="silenced") == 1
    world.clock.advance(3600)
    await world.signal("c", tier=1, story="s3")
    assert world.sent() == ["cs"]
    async with unit_of_work(world.sessions) as session:
        with pytest.raises(silences.InvalidSilence, match="at least one matcher"):
            silences.create(
                session,
                matchers=Matchers(),
                ends_at=world.clock.now() + timedelta(hours=1),
                author="x",
                reason="y",
                now=world.clock.now(),
            )


async def test_a_tier3_incident_inhibits_lower_tiers_of_its_watch(world: World) -> None:
    world.service.config = world.service.config.model_copy(update={"deliver_on_signal": False})
    await world.signal("low", tier=1, story="s-low")  # queued, not sent yet
    await world.signal("top", tier=3, story="s-top")
    await world.service.tick()
    assert world.sent() == ["exec", "legal", "pr"], "the tier-1 alert was muted"
    (muted,) = await world.events("inhibited")
    low = await world.incident("s-low")
    assert muted.incident_id == low.id and low.next_escalation_at is None
    await world.signal("low2", tier=2, story="s-other")  # same watch, while tier 3 is open
    await world.service.tick()
    assert world.sent() == []
    assert world.metric("crisiswatch_alerts_suppressed_total", reason="inhibited") == 1
    await world.signal("elsewhere", tier=1, story="s-x", watch="other-brand")
    await world.service.tick()
    assert world.sent() == ["cs"], "another watch is not inhibited"


async def test_quiet_hours_hold_tier1_for_a_morning_digest_but_never_tier3(
    sessions: Sessions,
) -> None:
    # 23:00 in Shanghai
    clock = ManualClock(datetime(2026, 1, 5, 15, 0, tzinfo=UTC))
    quiet = {"start": "22:00", "end": "08:00", "timezone": "Asia/Shanghai", "tiers": [1]}
    async for world in make_world(sessions, clock, quiet_hours=quiet):
        await world.signal("a", tier=1, story="s1")
        clock.advance(3 * 3600)
        await world.signal("b", tier=1, story="s2")
        await world.signal("c", tier=3, story="s3", watch="other-brand")
        await world.service.tick()
        assert world.sent() == ["exec", "legal", "pr"], "tier 3 is never held"
        morning = datetime(2026, 1, 6, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai
        clock.set(morning - timedelta(seconds=1))
        await world.service.tick()
        # (the tier-3 incident's private reply, a task of every tier from 1 up, is
        # reminded to customer service meanwhile: a tier-3 reminder is never held)
        assert not [m for ch, m in world.log if ch == "cs" and not m.reason.startswith("TASK")]
        world.log.clear()  # (tier 3 escalated meanwhile)
        clock.set(morning)
        await world.service.tick()
        (digest,) = [m for ch, m in world.log if ch == "cs" and not m.reason.startswith("TASK")]
        assert sorted(i.title for i in digest.digest) == ["Acme: minor complaint"] * 2
        held = await world.incident("s1")
        assert held.alerted_at == morning, "escalation and SLA count from the morning"
        assert held.next_escalation_at == morning + timedelta(minutes=30)


async def test_sla_warnings_and_a_met_statement_deadline(world: World) -> None:
    await world.signal("a", tier=2, story="s1")  # tier 2: statement within 1 h
    incident = await world.incident("s1")
    for minutes in (29, 30, 47, 48):
        world.clock.set(incident.alerted_at + timedelta(minutes=minutes))
        await world.service.check_slas()
    warnings = await world.events("sla_warning")
    assert [(e.at - incident.alerted_at, e.detail["at"]) for e in warnings] == [
        (timedelta(minutes=30), 0.5),
        (timedelta(minutes=48), 0.8),
    ]
    world.clock.set(incident.alerted_at + timedelta(minutes=50))
    async with unit_of_work(world.sessions) as session:
        await svc.record_response(
            session, incident.id, "statement", "pr-lead", world.clock, metrics=world.service.metrics
        )
    world.clock.set(incident.alerted_at + timedelta(hours=2))
    assert await world.service.check_slas() == 0
    assert await world.events("sla_breached") == []
    assert (
        world.metric("crisiswatch_time_to_statement_seconds_sum", tier="2", drill="false") == 3000
    )
    assert world.metric("crisiswatch_sla_warnings_total", tier="2", drill="false") == 2


async def test_a_missed_ack_deadline_is_recorded_and_escalates(world: World) -> None:
    await world.signal("a", tier=3, story="s1")  # tier 3: acknowledged within 10 min
    world.sent()
    incident = await world.incident("s1")
    world.clock.set(incident.alerted_at + timedelta(minutes=4))  # before the first step
    await world.service.tick()
    world.clock.set(incident.alerted_at + timedelta(minutes=4, seconds=59))
    await world.service.tick()
    assert await world.events("sla_breached") == []
    # steps (default tier-3 policy) at 5 and 10 min; the breach at 10 pulls step 3 forward
    for minute in (5, 10):
        world.clock.set(incident.alerted_at + timedelta(minutes=minute))
        await world.service.tick()
    (breach,) = await world.events("sla_breached")
    assert breach.detail["what"] == "emergency group convened"
    levels = [(e.detail["level"], e.detail["why"]) for e in await world.events("escalated")]
    assert levels == [(1, None), (2, None), (3, "SLA deadline of tier 3 missed")]
    assert world.metric("crisiswatch_sla_breaches_total", tier="3", drill="false") == 1


async def test_a_drill_breach_is_counted_as_a_drill_not_as_a_real_breach(world: World) -> None:
    drill = signal(world.clock, "d", tier=3, story="drill").model_copy(update={"drill": True})
    await world.service.handle_signals([drill])
    await world.service.sent()
    incident = await world.incident("drill")
    assert incident.drill
    for minute in (5, 10):  # nobody acknowledges the drill: its ack deadline passes
        world.clock.set(incident.alerted_at + timedelta(minutes=minute))
        await world.service.tick()
    assert len(await world.events("sla_breached")) == 1
    # its own series: the operator rule and the dashboard (drill="false") never see it
    assert world.metric("crisiswatch_sla_breaches_total", tier="3", drill="true") == 1
    assert world.metric("crisiswatch_sla_breaches_total", tier="3", drill="false") == 0
    assert world.metric("crisiswatch_incidents_opened_total", tier="3", drill="true") == 1
    assert world.metric("crisiswatch_incidents_opened_total", tier="3", drill="false") == 0
    assert world.metric("crisiswatch_escalations_total", tier="3", drill="true") == 3
    assert world.metric("crisiswatch_incidents_open", tier="3", drill="true") == 1
    assert world.metric("crisiswatch_incidents_open", tier="3", drill="false") == 0


async def test_a_channel_failing_for_good_raises_an_incident_about_crisiswatch(
    world: World,
) -> None:
    world.service.notifiers["legal"] = Recording("legal", world.log, fail=True)
    await world.signal("a", tier=3, story="s1")
    async with world.sessions() as session:
        own = await session.scalar(select(Incident).where(Incident.watch_id == "crisiswatch"))
        failed = await session.scalar(select(Delivery).where(Delivery.channel == "legal"))
    assert own is not None and own.story_id == "channel:legal" and own.tier == 2
    assert "404" in own.explanation
    assert failed is not None and failed.status == "failed"
    await world.service.deliver()
    assert ("pr", "crisiswatch") in [(ch, m.watch_id) for ch, m in world.log]


async def test_a_channel_failing_again_after_its_incident_was_resolved_alerts_again(
    world: World,
) -> None:
    world.service.notifiers["legal"] = Recording("legal", world.log, fail=True)
    await world.signal("a", tier=3, story="s1")
    first = await world.incident("channel:legal")
    await world.service.deliver()
    async with unit_of_work(world.sessions) as session:
        await svc.resolve(session, first.id, "ops", world.clock)
    await world.service.tick()
    world.log.clear()

    world.clock.advance(7 * 24 * 3600)  # a week later the channel breaks again
    await world.signal("b", tier=3, story="s2")
    await world.service.deliver()
    second = await world.incident("channel:legal#2")
    assert second.id != first.id and second.status == "open" and "404" in second.explanation
    assert (await world.incident("channel:legal")).status == "resolved"
    assert ("pr", second.id) in [(ch, m.incident_id) for ch, m in world.log]

    world.clock.advance(60)
    await world.signal("c", tier=3, story="s3")  # while it is open: noted on it
    async with world.sessions() as session:
        own = list(
            await session.scalars(select(Incident).where(Incident.watch_id == "crisiswatch"))
        )
    assert [i.id for i in own] == [first.id, second.id]
    notes = [e for e in await world.events("signal") if e.incident_id == second.id]
    assert len(notes) == 1


async def test_an_inhibited_incident_records_its_sla_breach_but_does_not_escalate(
    world: World,
) -> None:
    await world.signal("lo", tier=2, story="s-lo")  # tier 2: statement within 1 h
    await world.signal("hi", tier=3, story="s-hi")  # same watch: mutes the tier 2
    lo = await world.incident("s-lo")
    for _ in range(8):  # 2 h: past the tier-2 deadline, the tier 3 still open
        world.clock.advance(15 * 60)
        await world.service.tick()
    (breach,) = [e for e in await world.events("sla_breached") if e.incident_id == lo.id]
    assert breach.detail["escalation"].startswith("not running")
    assert [e for e in await world.events("escalated") if e.incident_id == lo.id] == []
    lo = await world.incident("s-lo")
    assert lo.escalation_level == 0 and lo.next_escalation_at is None
    async with world.sessions() as session:
        reasons = list(
            await session.scalars(select(Delivery.reason).where(Delivery.incident_id == lo.id))
        )
    assert not [r for r in reasons if r.startswith("escalation-")]


async def test_grouping_waits_group_wait_then_group_interval(
    sessions: Sessions, clock: ManualClock
) -> None:
    routes = {
        "teams": ["customer_service"],
        "group_by": ["watch"],
        "group_wait": "PT30S",
        "group_interval": "PT5M",
        "routes": [{"match": {"tier": [3]}, "teams": ["pr"], "group_wait": "PT0S"}],
    }
    async for world in make_world(sessions, clock, routes=routes):
        start = clock.now()

        async def at(seconds: float, w: World = world, t0: datetime = start) -> list[str]:
            clock.set(t0 + timedelta(seconds=seconds))
            await w.service.tick()
            return w.sent()

        await world.signal("a", tier=1, story="s1")
        clock.set(start + timedelta(seconds=10))
        await world.signal("b", tier=1, story="s2")
        assert await at(29) == []
        clock.set(start + timedelta(seconds=30))
        await world.service.tick()
        ((channel, first),) = world.log
        assert channel == "cs" and len(first.digest) == 2, "one message for the group"
        world.log.clear()
        clock.set(start + timedelta(seconds=60))
        await world.signal("c", tier=1, story="s3")
        assert await at(90) == [], "the group was notified 30 s ago: wait for the interval"
        assert await at(330) == ["cs"]
        clock.set(start + timedelta(seconds=340))
        await world.signal("d", tier=3, story="s4", watch="other")
        assert world.sent() == ["pr"], "tier 3 is not held by the group interval"


async def make_silence(
    world: World, *, tier: int = 2, hours: float = 1, author: str = "maria"
) -> Silence:
    now = world.clock.now()
    async with unit_of_work(world.sessions) as session:
        created = silences.create(
            session,
            matchers=Matchers(watch=["acme"], tier=[tier]),
            ends_at=now + timedelta(hours=hours),
            author=author,
            reason="known outage",
            now=now,
        )
    return created


async def test_a_silenced_incident_alerts_and_escalates_once_its_silence_ends(
    world: World,
) -> None:
    muting = await make_silence(world, tier=2)
    end = muting.ends_at
    await world.signal("a", tier=2, story="s1")
    world.clock.set(end - timedelta(minutes=1))
    await world.service.tick()
    assert world.sent() == [], "muted while the silence lasts"
    world.clock.set(end)
    await world.service.tick()
    ((channel, message),) = world.log
    assert channel == "pr" and message.reason == "silence ended" and message.tier == 2
    world.sent()
    incident = await world.incident("s1")
    assert incident.alerted_at == end, "the SLA clock and escalation count from the end"
    assert incident.sla_due_at == end + timedelta(hours=1)
    assert incident.next_escalation_at == end + timedelta(minutes=10)
    (event,) = await world.events("unsilenced")
    assert event.incident_id == incident.id and event.detail["silence"] == muting.id
    assert world.metric("crisiswatch_alerts_unsilenced_total", tier="2") == 1
    await world.service.tick()
    assert world.sent() == [], "a silence is released once"
    world.clock.set(end + timedelta(minutes=10))
    await world.service.tick()
    assert world.sent() == ["pr"], "the escalation runs"
    assert [e.detail["level"] for e in await world.events("escalated")] == [1]


async def test_an_incident_acknowledged_during_the_silence_gets_nothing_at_its_end(
    world: World,
) -> None:
    muting = await make_silence(world, tier=2)
    await world.signal("a", tier=2, story="s1")
    incident = await world.incident("s1")
    async with unit_of_work(world.sessions) as session:
        await svc.acknowledge(session, incident.id, "pr-lead", world.clock)
    world.clock.set(muting.ends_at)
    await world.service.tick()
    # no alert: only its playbook tasks' reminders, due from the ack (the statement within
    # the hour), as ticks during the silence send them; the late tick coalesces them
    assert {(ch, m.why.code if m.why else None) for ch, m in world.log} <= {("pr", "task_overdue")}
    world.sent()
    assert await world.events("unsilenced") == []
    async with world.sessions() as session:
        released = await session.get(Silence, muting.id)
        assert released is not None and released.released_at == muting.ends_at


async def test_a_silence_expired_early_releases_at_the_next_tick(world: World) -> None:
    muting = await make_silence(world, tier=2, hours=4)
    await world.signal("a", tier=2, story="s1")
    world.clock.advance(600)
    async with unit_of_work(world.sessions) as session:
        await silences.expire(session, muting.id, world.clock.now())
    world.clock.advance(5)
    await world.service.tick()
    assert world.sent() == ["pr"]
    await world.service.tick()
    world.clock.advance(60)
    await world.service.tick()
    assert world.sent() == [], "nothing more for that silence"
    assert len(await world.events("unsilenced")) == 1


async def test_an_incident_still_matched_by_another_silence_stays_muted(world: World) -> None:
    first = await make_silence(world, tier=2, hours=1)
    second = await make_silence(world, tier=2, hours=3, author="li")
    await world.signal("a", tier=2, story="s1")
    world.clock.set(first.ends_at)
    await world.service.tick()
    assert world.sent() == [], "the second silence still mutes it"
    assert (await world.incident("s1")).next_escalation_at is None
    muted = [e.detail["silence"] for e in await world.events("silenced")]
    assert muted == [first.id, second.id]
    world.clock.set(second.ends_at)
    await world.service.tick()
    assert world.sent() == ["pr"], "alerted when the last silence ends"
    await world.service.tick()
    assert world.sent() == []


async def test_an_incident_alerted_since_its_silence_is_not_alerted_again(world: World) -> None:
    muting = await make_silence(world, tier=1)
    await world.signal("a", tier=1, story="s1")
    await world.signal("b", tier=2, story="s1")  # the upgrade is not silenced
    assert world.sent() == ["pr"]
    world.clock.set(muting.ends_at)
    await world.service.tick()  # (the tier-2 escalation runs meanwhile)
    assert [m.reason for _, m in world.log if m.reason == "silence ended"] == []
    assert await world.events("unsilenced") == []


async def test_two_alerters_release_a_silence_once(sessions: Sessions, clock: ManualClock) -> None:
    async for one in make_world(sessions, clock):
        async for two in make_world(sessions, clock):
            muting = await make_silence(one, tier=2)
            await one.signal("a", tier=2, story="s1")
            clock.set(muting.ends_at)
            await asyncio.gather(one.service.tick(), two.service.tick())
            assert one.sent() + two.sent() == ["pr"]
            assert len(await one.events("unsilenced")) == 1
