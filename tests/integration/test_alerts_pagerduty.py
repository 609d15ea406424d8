"""Channels that key their alerts per incident (PagerDuty): pages, follow-ups of alerts
that arrive late, no digests. Through the AlertService on a ManualClock, against a fake
PagerDuty that keeps the Events API v2 dedup semantics."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts import incidents as svc
from alerts.channels import PagerDutyChannelConfig
from alerts.models import Delivery
from alerts.notifiers.pagerduty import PagerDutyNotifier
from alerts.outbox import _plan, _units
from core.clock import ManualClock
from core.db import unit_of_work
from tests.integration.test_alerts_policies import CHANNELS, World, make_world
from tests.notifier_fakes import PagerDutyAlerts

Sessions = async_sessionmaker[AsyncSession]
PD_KEY = "p" * 32


class PagerDuty(PagerDutyAlerts):
    """The Events API v2 endpoint: records each event and applies it (``PagerDutyAlerts``)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, str]] = []  # (event_action, dedup_key)
        self.severities: list[tuple[str, str]] = []  # (dedup_key, severity) of each trigger

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        key, action = body["dedup_key"], body["event_action"]
        self.events.append((action, key))
        if action == "trigger":
            self.severities.append((key, body["payload"]["severity"]))
        self.apply(action, key)
        return httpx.Response(202, json={"status": "success", "dedup_key": key})


async def pd_world(
    sessions: Sessions, clock: ManualClock, **overrides: Any
) -> AsyncIterator[tuple[World, PagerDuty]]:
    """The policies world with a PagerDuty channel ``pd`` beside the PR team's chat."""
    channels: dict[str, Any] = {name: {"type": "console"} for name in CHANNELS}
    channels["pd"] = {"type": "pagerduty", "routing_key": PD_KEY}
    teams = {
        "customer_service": {"channels": ["cs", "pd"]},
        "pr": {"channels": ["pr", "pd"]},
        "legal": {"channels": ["legal"]},
        "executives": {"channels": ["exec"]},
    }
    data = {"channels": channels, "teams": teams} | overrides
    pd = PagerDuty()
    async with httpx.AsyncClient(transport=httpx.MockTransport(pd.handle)) as http:
        async for world in make_world(sessions, clock, **data):
            config = PagerDutyChannelConfig(routing_key=PD_KEY)  # type: ignore[arg-type]
            world.service.notifiers["pd"] = PagerDutyNotifier("pd", config, http)
            yield world, pd


@pytest.fixture
async def pd_pair(sessions: Sessions, clock: ManualClock) -> AsyncIterator[tuple[World, PagerDuty]]:
    async for pair in pd_world(sessions, clock):
        yield pair


async def _ack(world: World, incident_id: int, actor: str = "alice") -> None:
    async with unit_of_work(world.sessions) as session:
        await svc.acknowledge(session, incident_id, actor, world.clock)


async def _resolve(world: World, incident_id: int, actor: str = "alice") -> None:
    async with unit_of_work(world.sessions) as session:
        await svc.resolve(session, incident_id, actor, world.clock)


async def test_an_upgrade_after_an_ack_pages_again_on_a_new_key(
    pd_pair: tuple[World, PagerDuty],
) -> None:
    world, pd = pd_pair
    await world.signal("a", tier=2, story="s1")
    incident = (await world.incident("s1")).id
    await _ack(world, incident)
    await world.service.tick()
    assert pd.alerts == {"crisiswatch-incident-1": "acknowledged"}

    world.clock.advance(60)
    await world.signal("b", tier=3, story="s1")  # reopened: the new teams must be paged
    assert pd.pages == ["crisiswatch-incident-1", "crisiswatch-incident-1-1"]
    assert pd.alerts == {
        "crisiswatch-incident-1": "resolved",  # the superseded page does not stay open
        "crisiswatch-incident-1-1": "triggered",
    }
    assert (await world.incident("s1")).page == 1
    for _ in range(2):  # the escalation steps go to the alert that pages
        world.clock.advance(301)
        await world.service.tick()
    escalations = [k for action, k in pd.events[4:] if action == "trigger"]
    assert escalations and set(escalations) == {"crisiswatch-incident-1-1"}

    await _ack(world, incident, "bob")
    await world.service.tick()
    assert pd.open_alerts() == {"crisiswatch-incident-1-1": "acknowledged"}
    await _resolve(world, incident, "bob")
    await world.service.tick()
    assert pd.open_alerts() == {}
    chat = [m for ch, m in world.log if ch == "pr"]
    assert {m.thread_key for m in chat} == {"crisiswatch-incident-1"}


async def test_an_upgrade_of_an_open_incident_pages_anew_at_the_new_severity(
    pd_pair: tuple[World, PagerDuty],
) -> None:
    """Nobody acknowledged the tier-1 alert (``warning``: low urgency). Under its key the
    tier-3 trigger was folded into it: the alert kept its severity, nobody was paged as
    for a crisis. The upgrade starts a new page: a new alert at ``critical``, the old one
    resolved; the ack and resolve that follow go to the new key."""
    world, pd = pd_pair
    await world.signal("a", tier=1, story="s1")
    incident = (await world.incident("s1")).id
    assert pd.events == [("trigger", "crisiswatch-incident-1")]

    world.clock.advance(60)
    await world.signal("b", tier=3, story="s1")
    assert sorted(pd.events[1:]) == [
        ("resolve", "crisiswatch-incident-1"),
        ("trigger", "crisiswatch-incident-1-1"),
    ]
    assert pd.severities == [
        ("crisiswatch-incident-1", "warning"),
        ("crisiswatch-incident-1-1", "critical"),
    ]
    assert pd.pages == ["crisiswatch-incident-1", "crisiswatch-incident-1-1"]
    assert pd.open_alerts() == {"crisiswatch-incident-1-1": "triggered"}
    upgraded = await world.incident("s1")
    assert (upgraded.page, upgraded.tier, upgraded.status) == (1, 3, "open")
    (event,) = await world.events("upgraded")
    assert (event.detail["was"], event.detail["page"]) == ("open", 1)

    world.clock.advance(60)
    await world.signal("c", tier=2, story="s1")  # lower: stays on its page, alerts nobody
    await world.signal("d", tier=3, story="s1")  # same tier: the same
    assert (await world.incident("s1")).page == 1
    assert len(pd.events) == 3

    await _ack(world, incident)
    await world.service.tick()
    assert pd.events[3:] == [("acknowledge", "crisiswatch-incident-1-1")]
    await _resolve(world, incident, "bob")
    await world.service.tick()
    assert pd.events[4:] == [("resolve", "crisiswatch-incident-1-1")]
    assert pd.open_alerts() == {}


async def test_an_upgrade_of_an_alert_held_for_pagerduty_replaces_it(
    sessions: Sessions,
) -> None:
    """Quiet hours hold the tier-1 alert, PagerDuty's too; the upgrade to tier 3 at night
    starts a new page: the held trigger is cancelled (it never went: nothing to resolve),
    and the morning sends PagerDuty nothing under the old key."""
    clock = ManualClock(datetime(2026, 3, 2, 23, 0, tzinfo=UTC))
    quiet = {"start": "22:00", "end": "08:00", "tiers": [1]}
    async for world, pd in pd_world(sessions, clock, quiet_hours=quiet):
        await world.signal("a", tier=1, story="s1")
        clock.advance(600)
        await world.signal("b", tier=3, story="s1")
        assert pd.severities == [("crisiswatch-incident-1-1", "critical")]
        clock.set(datetime(2026, 3, 3, 8, 0, tzinfo=UTC))
        await world.service.tick()
        assert {key for _, key in pd.events} == {"crisiswatch-incident-1-1"}  # (escalations)
        assert ("cs", "trigger") in [(ch, m.action) for ch, m in world.log], "chats still hear"


async def test_an_upgrade_with_nothing_on_a_keyed_channel_stays_on_its_page(
    sessions: Sessions, clock: ManualClock
) -> None:
    """Chats only: a new page would change nothing there but how late alerts are followed
    (once per channel and page), so an open incident's upgrade keeps its page."""
    async for world in make_world(sessions, clock):
        await world.signal("a", tier=1, story="s1")
        await world.signal("b", tier=3, story="s1")
        assert (await world.incident("s1")).page == 0
        (event,) = await world.events("upgraded")
        assert "page" not in event.detail


async def test_a_resolved_superseded_page_is_resolved_again_only_if_needed(
    pd_pair: tuple[World, PagerDuty],
) -> None:
    """A resolved incident reopened by an upgrade: page 0 was resolved by its resolve,
    so the upgrade queues nothing for it; the final resolve closes page 1."""
    world, pd = pd_pair
    await world.signal("a", tier=2, story="s1")
    incident = (await world.incident("s1")).id
    await _resolve(world, incident)
    await world.service.tick()
    await world.signal("b", tier=3, story="s1")
    await _resolve(world, incident, "bob")
    await world.service.tick()
    assert pd.events == [
        ("trigger", "crisiswatch-incident-1"),
        ("resolve", "crisiswatch-incident-1"),
        ("trigger", "crisiswatch-incident-1-1"),
        ("resolve", "crisiswatch-incident-1-1"),
    ]


async def test_an_alert_held_past_the_ack_is_followed_by_the_ack(
    sessions: Sessions,
) -> None:
    """Quiet hours hold a tier-1 alert; somebody acknowledges it in the console at night;
    the held alert still goes in the morning, and its ack follows it at once."""
    clock = ManualClock(datetime(2026, 3, 2, 23, 0, tzinfo=UTC))
    quiet = {"start": "22:00", "end": "08:00", "tiers": [1]}
    async for world, pd in pd_world(sessions, clock, quiet_hours=quiet):
        await world.signal("a", tier=1, story="s1")
        incident = (await world.incident("s1")).id
        clock.advance(600)
        await _ack(world, incident)
        await world.service.tick()
        assert pd.events == [] and world.sent() == []
        clock.set(datetime(2026, 3, 3, 8, 0, tzinfo=UTC))
        await world.service.tick()
        assert pd.events == [
            ("trigger", "crisiswatch-incident-1"),
            ("acknowledge", "crisiswatch-incident-1"),
        ]
        assert [(ch, m.action, m.actor) for ch, m in world.log] == [
            ("cs", "trigger", None),
            ("cs", "acknowledge", "alice"),
        ]
        clock.advance(3600)
        await world.service.tick()
        assert len(pd.events) == 2, "one follow-up per alert"


async def test_an_alert_in_flight_at_the_resolve_is_followed_by_the_resolve(
    pd_pair: tuple[World, PagerDuty],
) -> None:
    """The alert was claimed and on its way when the incident was resolved: the resolve
    found nothing sent to mirror; recording the send queues it."""
    world, pd = pd_pair
    world.service.config = world.service.config.model_copy(update={"deliver_on_signal": False})
    await world.signal("a", tier=2, story="s1")
    incident = (await world.incident("s1")).id
    notifier = world.service.notifiers["pd"]

    class ResolvedMeanwhile:
        name, kind, rate_limits = "pd", "pagerduty", notifier.rate_limits

        async def send(self, alert: Any) -> None:
            await notifier.send(alert)
            await _resolve(world, incident)  # commits while the send is not recorded

    world.service.notifiers["pd"] = ResolvedMeanwhile()
    await world.service.deliver()
    assert pd.events == [
        ("trigger", "crisiswatch-incident-1"),
        ("resolve", "crisiswatch-incident-1"),
    ]


async def test_pagerduty_gets_one_event_per_incident_never_a_digest(
    sessions: Sessions, clock: ManualClock
) -> None:
    routes = {
        "teams": ["customer_service"],
        "group_by": ["watch"],
        "group_wait": "PT30S",
        "routes": [{"match": {"tier": [2]}, "teams": ["pr"]}],
    }
    async for world, pd in pd_world(sessions, clock, routes=routes):
        await world.signal("a", tier=2, story="s1")
        clock.advance(10)
        await world.signal("b", tier=2, story="s2")
        clock.advance(25)
        await world.service.tick()
        assert pd.alerts == {
            "crisiswatch-incident-1": "triggered",
            "crisiswatch-incident-2": "triggered",
        }
        ((channel, digest),) = world.log
        assert channel == "pr" and len(digest.digest) == 2, "chat channels still get one"
        await _resolve(world, (await world.incident("s1")).id)
        await world.service.tick()
        assert pd.open_alerts() == {"crisiswatch-incident-2": "triggered"}


def test_a_keyed_channel_over_its_rate_limit_defers_instead_of_merging() -> None:
    now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    rows = [
        Delivery(id=i, incident_id=i, channel="pd", channel_type="pagerduty", digest_group="g")
        for i in (1, 2, 3)
    ]
    for row in rows:
        row.next_attempt_at = now
    send, defer = _plan(_units(rows, merge=False), 2, 50, merge=False)
    assert [[r.id for r in unit] for unit in send] == [[1], [2]]
    assert [r.id for r in defer] == [3]
    merged, _ = _plan(_units(rows), 2, 50)
    assert [[r.id for r in unit] for unit in merged] == [[1, 2, 3]]


async def test_a_merged_incidents_alert_is_resolved_where_it_went(
    pd_pair: tuple[World, PagerDuty],
) -> None:
    """Merging closes the incident: its PagerDuty alert is resolved (it stayed open and
    would page again at PagerDuty's acknowledgement timeout), its chats hear of it."""
    from alerts.workflow import service as workflow

    world, pd = pd_pair
    await world.signal("a", tier=2, story="s1")
    await world.signal("b", tier=2, story="s2")
    await world.service.tick()
    survivor, merged = (await world.incident("s1")).id, (await world.incident("s2")).id
    assert pd.open_alerts() == {
        f"crisiswatch-incident-{survivor}": "triggered",
        f"crisiswatch-incident-{merged}": "triggered",
    }
    async with unit_of_work(world.sessions) as session:
        await workflow.merge(session, merged, survivor, "alice", world.clock)
    await world.service.tick()
    assert pd.open_alerts() == {f"crisiswatch-incident-{survivor}": "triggered"}
    async with world.sessions() as session:
        resolves = (
            await session.scalars(
                select(Delivery).where(Delivery.incident_id == merged, Delivery.reason == "resolve")
            )
        ).all()
    assert {r.channel for r in resolves} == {"pd", "pr"}
    assert {r.status for r in resolves} == {"sent"}
    assert all("merged into incident" in r.payload["reason"] for r in resolves if r.channel == "pr")


async def test_a_chat_is_told_of_the_resolve_once_though_an_escalation_was_in_flight(
    pd_pair: tuple[World, PagerDuty],
) -> None:
    """The resolve mirrors the alert sent to the chat; the escalation on its way at that
    moment is recorded later: per alert, it queued a second "resolved by" to the same
    chat. A chat or mailbox hears it once per page (PagerDuty still resolves per key)."""
    world, _ = pd_pair
    await world.signal("a", tier=2, story="s1")
    await world.service.tick()
    incident = (await world.incident("s1")).id
    chat = world.service.notifiers["pr"]

    class ResolvedDuringTheEscalation:
        name, kind, rate_limits = chat.name, chat.kind, chat.rate_limits

        async def send(self, alert: Any) -> None:
            await chat.send(alert)
            if alert.reason.startswith("ESCALATION"):
                await _resolve(world, incident)  # commits while the send is not recorded

    world.service.notifiers["pr"] = ResolvedDuringTheEscalation()
    world.clock.advance(601)  # tier 2: the first escalation step after 10 minutes
    await world.service.tick()
    await world.service.tick()
    on_pr = [(m.action, m.reason) for ch, m in world.log if ch == "pr"]
    assert [a for a, _ in on_pr].count("resolve") == 1, on_pr
    assert any(r.startswith("ESCALATION") for _, r in on_pr), on_pr


async def test_merging_a_resolved_incident_keeps_its_queued_resolve(
    pd_pair: tuple[World, PagerDuty],
) -> None:
    """An incident resolved and merged before the outbox ran: the merge cancelled every
    pending delivery, its queued resolve too, and queued none (it was resolved already),
    so its PagerDuty alert stayed open and paged again at the acknowledgement timeout."""
    from alerts.workflow import service as workflow

    world, pd = pd_pair
    await world.signal("a", tier=2, story="s1")
    await world.signal("b", tier=2, story="s2")
    await world.service.tick()
    survivor, merged = (await world.incident("s1")).id, (await world.incident("s2")).id
    await _resolve(world, merged)  # the resolve to PagerDuty is queued, not sent yet
    async with unit_of_work(world.sessions) as session:
        await workflow.merge(session, merged, survivor, "alice", world.clock)
    await world.service.tick()
    assert pd.open_alerts() == {f"crisiswatch-incident-{survivor}": "triggered"}
