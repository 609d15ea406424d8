"""When the incident that inhibited others ends (resolved, closed, merged), the next tick
alerts the ones it muted that are still open and unacknowledged, once; playbook task
reminders pause while an incident is inhibited, start from the release for tasks created
while it was muted, and never go to channels keyed per incident (PagerDuty). Through the
AlertService on a ManualClock with recording notifiers (tests/integration/
test_alerts_policies.py's world)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from alerts import incidents as svc
from alerts.models import Delivery, Incident, IncidentEvent
from alerts.workflow import service as workflow
from alerts.workflow.models import IncidentTask
from core.clock import ManualClock
from core.db import make_engine, make_sessionmaker, unit_of_work, upgrade_database
from tests.integration.test_alerts_policies import Sessions, World, make_silence, make_world

WHO = "pr-lead"
PD_KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture
async def world(sessions: Sessions, clock: ManualClock) -> AsyncIterator[World]:
    async for w in make_world(sessions, clock):
        yield w


def messages(world: World, incident_id: int, *, tasks: bool = False) -> list[tuple[str, str]]:
    """(channel, reason) of what went out about the incident since the last call (task
    reminders only with ``tasks``); clears the log."""
    out = sorted(
        (channel, m.reason)
        for channel, m in world.log
        if m.incident_id == incident_id and m.reason.startswith("TASK ") == tasks
    )
    world.log.clear()
    return out


def reminders(world: World, incident_id: int) -> list[tuple[str, str]]:
    return messages(world, incident_id, tasks=True)


async def events(world: World, incident_id: int, kind: str) -> list[IncidentEvent]:
    return [e for e in await world.events(kind) if e.incident_id == incident_id]


async def resolve(world: World, incident_id: int) -> None:
    async with unit_of_work(world.sessions) as session:
        await svc.resolve(session, incident_id, WHO, world.clock)


async def tasks_of(world: World, incident_id: int) -> dict[str, IncidentTask]:
    async with world.sessions() as session:
        return {t.key: t for t in await workflow.tasks_of(session, incident_id)}


async def test_an_incident_inhibited_when_raised_is_alerted_once_its_inhibitor_is_resolved(
    world: World,
) -> None:
    await world.signal("top", tier=3, story="s-top")
    await world.signal("low", tier=2, story="s-low")  # same watch: muted by the tier 3
    top, low = await world.incident("s-top"), await world.incident("s-low")
    assert messages(world, low.id) == []
    world.clock.advance(20 * 60)
    await world.service.tick()
    assert messages(world, low.id) == [], "muted while the tier-3 incident is open"

    await resolve(world, top.id)
    world.clock.advance(30)
    released = world.clock.now()
    await world.service.tick()
    assert messages(world, low.id) == [("pr", f"inhibition ended (incident {top.id} resolved)")]
    low = await world.incident("s-low")
    assert low.alerted_at == released, "escalation and the SLA clock count from the release"
    assert low.sla_due_at == released + timedelta(hours=1)
    assert low.next_escalation_at == released + timedelta(minutes=10)
    (event,) = await events(world, low.id, "uninhibited")
    assert event.detail["by_incident"] == top.id and event.detail["inhibitor"] == "resolved"
    assert world.metric("crisiswatch_alerts_uninhibited_total", tier="2") == 1
    # its tasks, created while it was muted, are due from the release and reminded then
    # (tier 2's by its 1 h, tier 1's private reply, which a tier 2 has too, by its 2 h)
    tasks = await tasks_of(world, low.id)
    assert {k: t.due_at - released for k, t in tasks.items()} == {
        "publish_statement": timedelta(hours=1),
        "internal_investigation": timedelta(hours=1),
        "private_reply": timedelta(hours=2),
    }
    assert {k: t.next_reminder_at - released for k, t in tasks.items() if t.next_reminder_at} == {
        "publish_statement": timedelta(minutes=45),
        "internal_investigation": timedelta(minutes=45),
        "private_reply": timedelta(minutes=105),
    }

    await world.service.tick()
    world.clock.advance(60)
    await world.service.tick()
    assert messages(world, low.id) == [], "released once"
    assert len(await events(world, low.id, "uninhibited")) == 1
    world.clock.set(released + timedelta(minutes=10))
    await world.service.tick()
    assert messages(world, low.id) == [("pr", "ESCALATION level 1: not acknowledged within 10 min")]


async def test_an_incident_alerted_before_it_was_inhibited_is_alerted_again_at_the_end(
    world: World,
) -> None:
    await world.signal("low", tier=1, story="s-low")
    low = await world.incident("s-low")
    assert messages(world, low.id) == [("cs", "new")]
    world.clock.advance(60)
    await world.signal("top", tier=3, story="s-top")  # mutes the tier-1 incident
    top = await world.incident("s-top")
    await resolve(world, top.id)
    async with unit_of_work(world.sessions) as session:
        await workflow.close(session, top.id, WHO, world.clock)
    world.clock.advance(60)
    await world.service.tick()
    # a tier-1 alert of this incident went to cs before: the release is a new one
    assert messages(world, low.id) == [("cs", f"inhibition ended (incident {top.id} closed)")]
    async with world.sessions() as session:
        rows = list(await session.scalars(select(Delivery).where(Delivery.incident_id == low.id)))
    assert sorted((r.reason, r.status) for r in rows) == [("alert", "sent"), ("realert-1", "sent")]
    assert (await world.incident("s-low")).next_escalation_at is not None


async def test_one_still_inhibited_by_another_open_incident_waits_for_that_one(
    world: World,
) -> None:
    await world.signal("t1", tier=3, story="s-t1")
    await world.signal("t2", tier=3, story="s-t2")
    await world.signal("low", tier=2, story="s-low")
    low = await world.incident("s-low")
    (muted,) = await events(world, low.id, "inhibited")
    first = muted.detail["by_incident"]
    (other,) = {(await world.incident(s)).id for s in ("s-t1", "s-t2")} - {first}
    async with unit_of_work(world.sessions) as session:  # the inhibitor merged into the other
        await workflow.merge(session, first, other, WHO, world.clock)
    world.clock.advance(60)
    await world.service.tick()
    assert messages(world, low.id) == [], "the survivor, also tier 3, still inhibits it"
    assert [e.detail["by_incident"] for e in await events(world, low.id, "inhibited")] == [
        first,
        other,
    ]
    assert (await world.incident("s-low")).next_escalation_at is None
    await resolve(world, other)
    world.clock.advance(60)
    await world.service.tick()
    assert messages(world, low.id) == [("pr", f"inhibition ended (incident {other} resolved)")]
    await world.service.tick()
    assert messages(world, low.id) == []


async def test_one_silenced_by_then_waits_for_the_silence(world: World) -> None:
    await world.signal("top", tier=3, story="s-top")
    await world.signal("low", tier=2, story="s-low")
    top, low = await world.incident("s-top"), await world.incident("s-low")
    muting = await make_silence(world, tier=2)
    await resolve(world, top.id)
    await world.service.tick()
    assert messages(world, low.id) == []
    (silenced,) = await events(world, low.id, "silenced")
    assert silenced.detail["silence"] == muting.id
    world.clock.set(muting.ends_at)
    await world.service.tick()
    assert messages(world, low.id) == [("pr", "silence ended")]


async def test_an_incident_acknowledged_meanwhile_is_not_alerted_at_the_end(
    world: World,
) -> None:
    await world.signal("top", tier=3, story="s-top")
    await world.signal("low", tier=2, story="s-low")
    top, low = await world.incident("s-top"), await world.incident("s-low")
    async with unit_of_work(world.sessions) as session:
        await svc.acknowledge(session, low.id, WHO, world.clock)
    await resolve(world, top.id)
    await world.service.tick()
    assert messages(world, low.id) == []
    assert await world.events("uninhibited") == []


async def test_an_incident_alerted_since_by_an_upgrade_is_not_alerted_again_at_the_end(
    world: World,
) -> None:
    await world.signal("top", tier=3, story="s-top")
    await world.signal("up", tier=1, story="s-up")  # inhibited
    await world.signal("up3", tier=3, story="s-up")  # alerted as tier 3
    top, up = await world.incident("s-top"), await world.incident("s-up")
    assert messages(world, up.id) == [
        ("exec", "upgraded to tier 3 (was tier 1)"),
        ("legal", "upgraded to tier 3 (was tier 1)"),
        ("pr", "upgraded to tier 3 (was tier 1)"),
    ]
    await resolve(world, top.id)
    await world.service.tick()
    assert messages(world, up.id) == []
    assert await world.events("uninhibited") == []


async def test_two_alerters_release_an_inhibition_once(
    sessions: Sessions, clock: ManualClock
) -> None:
    await two_alerters(sessions, clock)


@pytest.mark.postgres
async def test_two_alerters_release_an_inhibition_once_on_postgres(
    pg_sessions: Sessions, clock: ManualClock
) -> None:
    await two_alerters(pg_sessions, clock)


async def two_alerters(sessions: Sessions, clock: ManualClock) -> None:
    async for one in make_world(sessions, clock):
        async for two in make_world(sessions, clock):
            await one.signal("top", tier=3, story="s-top")
            await one.signal("a", tier=2, story="s-a")
            await one.signal("b", tier=1, story="s-b")
            top = await one.incident("s-top")
            one.log.clear()
            await resolve(one, top.id)
            clock.advance(60)
            await asyncio.gather(one.service.tick(), two.service.tick())
            alerts = [(ch, m.incident_id) for w in (one, two) for ch, m in w.log if m.tier < 3]
            a, b = await one.incident("s-a"), await one.incident("s-b")
            assert sorted(alerts) == sorted([("pr", a.id), ("cs", b.id)])
            assert len(await one.events("uninhibited")) == 2


async def test_a_merged_incidents_moved_timeline_does_not_release_the_survivor(
    world: World,
) -> None:
    """A merge moves the merged incident's timeline to the survivor: a mute recorded there
    for the merged one is not the survivor's own."""
    muting = await make_silence(world, tier=1)
    await world.signal("survivor", tier=2, story="s-2")  # alerted
    await world.signal("merged", tier=1, story="s-1")  # silenced
    survivor, merged = await world.incident("s-2"), await world.incident("s-1")
    async with unit_of_work(world.sessions) as session:
        await workflow.merge(session, merged.id, survivor.id, WHO, world.clock)
    world.log.clear()
    world.clock.set(muting.ends_at)
    await world.service.tick()
    assert [m.reason for _, m in world.log if m.reason == "silence ended"] == []
    assert await world.events("unsilenced") == []


# -- task reminders --------------------------------------------------------------------


async def test_tasks_created_while_silenced_are_reminded_from_the_silence_end(
    world: World,
) -> None:
    muting = await make_silence(world, tier=2)
    # tier 2: its two tasks, due in 1 h, and tier 1's private reply, due in 2 h
    await world.signal("a", tier=2, story="s1")
    incident = await world.incident("s1")
    end = muting.ends_at
    world.clock.set(end)
    await world.service.tick()
    assert messages(world, incident.id) == [("pr", "silence ended")]
    tasks = await tasks_of(world, incident.id)
    due = {k: t.due_at - end for k, t in tasks.items()}
    assert due == {
        "publish_statement": timedelta(hours=1),
        "internal_investigation": timedelta(hours=1),
        "private_reply": timedelta(hours=2),
    }
    planned = await events(world, incident.id, "task_updated")
    assert sorted(e.detail["key"] for e in planned) == sorted(tasks)
    assert {e.detail["key"]: e.detail["due_at"] for e in planned} == {
        k: (end + d).isoformat() for k, d in due.items()
    }
    expected_at = ((44, []), (45, ["pr"] * 2), (50, []), (60, ["pr"] * 2), (104, []))
    for minutes, expected in (*expected_at, (105, ["cs"]), (120, ["cs"]), (180, [])):
        world.clock.set(end + timedelta(minutes=minutes))
        await world.service.tick()
        got = reminders(world, incident.id)
        assert [ch for ch, _ in got] == expected, f"at +{minutes} min: {got}"
        if minutes == 45:
            assert all("is due in 15 min" in reason for _, reason in got)
    assert {t.reminders_sent for t in (await tasks_of(world, incident.id)).values()} == {2}


async def test_an_inhibited_incident_is_not_reminded_until_its_inhibitor_ends(
    world: World,
) -> None:
    await world.signal("low", tier=2, story="s-low")  # alerted: tasks due in 1 h
    await world.signal("else", tier=2, story="s-else", watch="other")  # not inhibited
    low, elsewhere = await world.incident("s-low"), await world.incident("s-else")
    start = low.alerted_at
    world.clock.set(start + timedelta(minutes=10))
    await world.signal("top", tier=3, story="s-top")
    top = await world.incident("s-top")
    for minutes in (30, 45, 50):
        world.clock.set(start + timedelta(minutes=minutes))
        await world.service.tick()
        other = [ch for ch, m in world.log if m.incident_id == elsewhere.id and "TASK" in m.reason]
        assert other == (["pr", "pr"] if minutes == 45 else [])
        assert reminders(world, low.id) == [], f"reminded while inhibited (+{minutes} min)"
    await resolve(world, top.id)
    await world.service.tick()
    # alerted again; the reminders missed while it was muted go now (coalesced), once
    sent = sorted(m.reason for _, m in world.log if m.incident_id == low.id)
    assert sent == [
        "TASK REMINDER: 'Open an internal investigation' is due in 10 min (owner: incident_lead)",
        "TASK REMINDER: 'Publish a legally reviewed statement from the official account' is due"
        " in 10 min (owner: pr_owner)",
        f"inhibition ended (incident {top.id} resolved)",
    ]
    world.log.clear()
    await world.service.tick()
    assert reminders(world, low.id) == []
    world.clock.set(start + timedelta(minutes=60))
    await world.service.tick()
    assert [ch for ch, _ in reminders(world, low.id)] == ["pr", "pr"], "the due-time reminders"


async def test_an_acknowledged_inhibited_incident_is_reminded_after_its_inhibitor_ends(
    world: World,
) -> None:
    await world.signal("low", tier=2, story="s-low")
    low = await world.incident("s-low")
    async with unit_of_work(world.sessions) as session:
        await svc.acknowledge(session, low.id, WHO, world.clock)
    await world.signal("top", tier=3, story="s-top")
    top = await world.incident("s-top")
    world.clock.set(low.alerted_at + timedelta(minutes=45))
    await world.service.tick()
    assert reminders(world, low.id) == []
    await resolve(world, top.id)
    world.clock.advance(60)
    await world.service.tick()
    assert [ch for ch, _ in reminders(world, low.id)] == ["pr", "pr"]
    assert messages(world, low.id) == [], "acknowledged: no new alert"


def with_pagerduty(**teams: Any) -> dict[str, Any]:
    channels: dict[str, Any] = {n: {"type": "console"} for n in ("cs", "pr", "legal", "exec")}
    channels["pager"] = {"type": "pagerduty", "routing_key": PD_KEY}
    base: dict[str, Any] = {
        "customer_service": {"channels": ["cs"]},
        "pr": {"channels": ["pr", "pager"]},
        "legal": {"channels": ["pager"], "fallback_channels": ["legal"]},
        "executives": {"channels": ["pager"]},
    }
    return {"channels": channels, "teams": base | teams}


async def test_task_reminders_never_go_to_pagerduty(sessions: Sessions, clock: ManualClock) -> None:
    async for world in make_world(sessions, clock, **with_pagerduty()):
        await world.signal("a", tier=2, story="s2")
        s2 = await world.incident("s2")
        assert messages(world, s2.id) == [("pager", "new"), ("pr", "new")]
        clock.set(s2.alerted_at + timedelta(minutes=45))
        await world.service.tick()
        assert [ch for ch, _ in reminders(world, s2.id)] == ["pr", "pr"], "not to PagerDuty"

        await world.signal("b", tier=3, story="s3", watch="other")
        s3 = await world.incident("s3")
        world.log.clear()
        clock.set(s3.alerted_at + timedelta(minutes=5))  # tier 3: due in 10, reminded at 5
        await world.service.tick()
        # legal's reminder goes to its fallback channel; the executives have nothing else
        assert [ch for ch, _ in reminders(world, s3.id)] == ["legal"]
        sent = {e.detail["key"]: e.detail for e in await events(world, s3.id, "task_reminder")}
        assert sent["legal_review_statements"]["channels"] == ["legal"]
        assert sent["convene_emergency_group"]["channels"] == []
        assert sent["convene_emergency_group"]["left_out"] == ["pager"]


# -- the migration ----------------------------------------------------------------------


async def test_incidents_ended_before_0013_count_as_released(sqlite_url: str) -> None:
    await released_by_0013(sqlite_url, "sqlite")


@pytest.mark.postgres
async def test_incidents_ended_before_0013_count_as_released_on_postgres(pg_url: str) -> None:
    await released_by_0013(pg_url, "postgresql")


async def released_by_0013(url: str, database: str) -> None:
    """The first tick after the upgrade must not alert every incident that an incident
    resolved long ago had inhibited; an open one releases its own when it ends."""
    engine = make_engine(url)
    try:
        await upgrade_database(engine, "0012")
        now = datetime.now(UTC)
        async with engine.begin() as conn:
            at = now - timedelta(days=3)
            when = at.replace(tzinfo=None) if database == "sqlite" else at
            for story, status in (("s-done", "resolved"), ("s-gone", "closed"), ("s-on", "open")):
                await conn.execute(
                    text(
                        "INSERT INTO incidents (watch_id, story_id, brand, tier, spread, status,"
                        " title, explanation, opened_at, updated_at, alerted_at,"
                        " escalation_level, escalation_token, drill, sla_warned, page,"
                        " resolved_at, closed_at) VALUES ('acme', :story, 'Acme', 3, 3,"
                        " :status, 't', '', :at, :at, :at, 0, 'x', false, 0, 0,"
                        " :resolved, :closed)"
                    ),
                    {
                        "story": story,
                        "status": status,
                        "at": when,
                        "resolved": None if status == "open" else when,
                        "closed": when if status == "closed" else None,
                    },
                )
        await upgrade_database(engine)
        async with make_sessionmaker(engine)() as session:
            rows = {i.story_id: i for i in await session.scalars(select(Incident))}
        assert rows["s-done"].inhibition_released_at == rows["s-done"].resolved_at
        assert rows["s-gone"].inhibition_released_at == rows["s-gone"].closed_at
        assert rows["s-on"].inhibition_released_at is None
    finally:
        await engine.dispose()


async def drill_signal(world: World, sid: str, tier: int, story: str) -> None:
    from tests.integration.test_alerts_policies import signal

    drill = signal(world.clock, sid, tier, story=story).model_copy(update={"drill": True})
    await world.service.handle_signals([drill])
    await world.service.sent()


async def test_a_drill_never_inhibits_a_real_incident_but_does_inhibit_drills(
    world: World,
) -> None:
    await world.signal("real-low", tier=1, story="s-real-low")
    real_low = await world.incident("s-real-low")
    assert messages(world, real_low.id) == [("cs", "new")]
    await drill_signal(world, "drill-top", tier=3, story="s-drill-top")
    await world.signal("real-mid", tier=2, story="s-real-mid")  # raised during the drill
    await drill_signal(world, "drill-low", tier=2, story="s-drill-low")
    drill_top = await world.incident("s-drill-top")
    real_mid = await world.incident("s-real-mid")
    drill_low = await world.incident("s-drill-low")
    assert drill_top.drill and drill_low.drill and not real_mid.drill
    assert messages(world, real_mid.id) == [("pr", "new")], "a real alert goes out"
    assert await events(world, real_low.id, "inhibited") == []
    assert await events(world, real_mid.id, "inhibited") == []
    (muted,) = await events(world, drill_low.id, "inhibited")
    assert muted.detail["by_incident"] == drill_top.id, "the drill exercises inhibition"
    assert messages(world, drill_low.id) == []


async def test_a_silenced_tier_3_incident_still_inhibits_lower_ones_once(world: World) -> None:
    """As for new alerts and reminders (``inhibitor_of``), a silenced tier-3 incident mutes
    the lower incidents already alerted: their escalation stops; when its silence ends it
    does not mute them again; when it ends they are alerted again."""
    await world.signal("low", tier=1, story="s-low")
    low = await world.incident("s-low")
    assert messages(world, low.id) == [("cs", "new")]
    assert low.next_escalation_at is not None
    muting = await make_silence(world, tier=3, hours=1)
    await world.signal("top", tier=3, story="s-top")
    top = await world.incident("s-top")
    assert messages(world, top.id) == []
    (event,) = await events(world, low.id, "inhibited")
    assert event.detail["by_incident"] == top.id
    assert (await world.incident("s-low")).next_escalation_at is None

    world.clock.set(muting.ends_at + timedelta(seconds=30))
    await world.service.tick()  # the silence ends: the tier 3 is alerted now
    assert messages(world, top.id) != []
    assert len(await events(world, low.id, "inhibited")) == 1, "not muted twice"

    await resolve(world, top.id)
    world.clock.advance(30)
    await world.service.tick()
    assert messages(world, low.id) == [("cs", f"inhibition ended (incident {top.id} resolved)")]
