"""Follow-ups to the silence/inhibition release: a restarted escalation pages again, a met
SLA stays met, the tasks of an incident acknowledged while muted are reminded, the released
scan, the tick with the database down, and the playbook teams in a key's scope."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection

from alerts import incidents as svc
from alerts import inhibition
from alerts.models import Delivery
from alerts.outbox import escalation_reason, is_page
from alerts.workflow import service as workflow
from api.scope import teams_of_watches
from core.clock import ManualClock
from core.db import (
    downgrade_database,
    make_engine,
    make_sessionmaker,
    unit_of_work,
    upgrade_database,
)
from tests.integration.test_alerts_policies import Sessions, World, make_silence, make_world


@pytest.fixture
async def world(sessions: Sessions, clock: ManualClock) -> AsyncIterator[World]:
    async for w in make_world(sessions, clock):
        yield w


async def _escalate_inhibit_release(world: World) -> int:
    """A tier-2 incident alerted and escalated once, then inhibited by a tier-3 incident
    that is resolved and released; returns its id."""
    await world.signal("low", tier=2, story="s-low")
    low = await world.incident("s-low")
    world.clock.set(low.alerted_at + timedelta(minutes=10))
    await world.service.tick()
    await world.signal("top", tier=3, story="s-top")
    top = await world.incident("s-top")
    async with unit_of_work(world.sessions) as session:
        await svc.resolve(session, top.id, "x", world.clock)
    world.clock.advance(30)
    await world.service.tick()
    world.log.clear()
    return low.id


async def test_an_escalation_restarted_by_a_release_pages_again(world: World) -> None:
    low_id = await _escalate_inhibit_release(world)
    low = await world.incident("s-low")
    assert low.next_escalation_at is not None and low.escalation_level == 0
    world.clock.set(low.next_escalation_at)
    await world.service.tick()
    again = [m.reason for _, m in world.log if m.incident_id == low_id]
    assert again == ["ESCALATION level 1: not acknowledged within 10 min"]
    async with world.sessions() as session:
        reasons = list(
            await session.scalars(
                select(Delivery.reason).where(Delivery.incident_id == low_id).order_by(Delivery.id)
            )
        )
    assert reasons == ["alert", "escalation-1", "realert-1", "escalation-1@2"]
    assert all(is_page(r) for r in reasons)
    escalated = [e for e in await world.events("escalated") if e.incident_id == low_id]
    assert [e.detail["level"] for e in escalated] == [1, 1]
    assert world.metric("crisiswatch_escalations_total", tier="2", drill="false") == 2


async def test_an_escalation_step_queuing_nothing_new_is_not_claimed(world: World) -> None:
    """Whatever reuses a dedupe key (an escalation started before the run numbers), the
    timeline and the metric say the step sent nothing."""
    await world.signal("low", tier=2, story="s-low")
    low = await world.incident("s-low")
    async with unit_of_work(world.sessions) as session:
        taken = Delivery(
            incident_id=low.id,
            tier=2,
            channel="pr",
            channel_type="console",
            reason=escalation_reason(1),
            dedupe_key=f"{low.id}:2:pr:{escalation_reason(1)}",
            payload={},
            status="sent",
            attempts=1,
            created_at=world.clock.now(),
        )
        session.add(taken)
    world.log.clear()
    world.clock.set(low.alerted_at + timedelta(minutes=10))
    await world.service.tick()
    assert [m for _, m in world.log if m.incident_id == low.id] == []
    assert [e for e in await world.events("escalated") if e.incident_id == low.id] == []
    (skipped,) = [e for e in await world.events("escalation_skipped") if e.incident_id == low.id]
    assert skipped.detail["skipped"].startswith("already queued")
    assert world.metric("crisiswatch_escalations_total", tier="2", drill="false") == 0


async def test_a_met_sla_stays_met_after_a_release(world: World) -> None:
    await world.signal("low", tier=2, story="s-low")
    low = await world.incident("s-low")
    t0 = low.alerted_at
    world.clock.set(t0 + timedelta(minutes=5))
    async with unit_of_work(world.sessions) as session:
        await svc.record_response(session, low.id, "statement", "pr-lead", world.clock)
    world.clock.set(t0 + timedelta(minutes=6))
    await world.signal("top", tier=3, story="s-top")
    top = await world.incident("s-top")
    async with unit_of_work(world.sessions) as session:
        await svc.resolve(session, top.id, "x", world.clock)
    world.clock.set(t0 + timedelta(minutes=7))
    await world.service.tick()
    assert await world.events("uninhibited")
    low = await world.incident("s-low")
    assert low.sla_met_at == t0 + timedelta(minutes=5)
    assert low.sla_due_at == t0 + timedelta(hours=1), "the deadline it met, for the report"
    world.clock.set(t0 + timedelta(hours=3))
    await world.service.tick()
    assert [e for e in await world.events("sla_breached") if e.incident_id == low.id] == []
    assert world.metric("crisiswatch_sla_breaches_total", tier="2", drill="false") == 0


async def test_a_response_recorded_while_muted_meets_the_restarted_sla(world: World) -> None:
    muting = await make_silence(world, tier=2)
    await world.signal("low", tier=2, story="s-low")  # silenced when raised
    low = await world.incident("s-low")
    world.clock.advance(60)
    async with unit_of_work(world.sessions) as session:
        await svc.record_response(session, low.id, "statement", "pr-lead", world.clock)
    world.clock.set(muting.ends_at)
    await world.service.tick()
    assert await world.events("unsilenced")
    low = await world.incident("s-low")
    assert low.alerted_at == muting.ends_at and low.sla_met_at == low.responded_at
    world.clock.set(muting.ends_at + timedelta(hours=2))
    await world.service.tick()
    assert await world.events("sla_breached") == []


async def _reminded(world: World, incident_id: int) -> list[str]:
    world.log.clear()
    for _ in range(0, 3 * 60, 5):
        world.clock.advance(300)
        await world.service.tick()
    return [m.reason for _, m in world.log if m.incident_id == incident_id]


async def test_tasks_of_an_incident_acked_while_inhibited_are_reminded(world: World) -> None:
    await world.signal("top", tier=3, story="s-top")
    await world.signal("low", tier=2, story="s-low")  # inhibited when raised
    top, low = await world.incident("s-top"), await world.incident("s-low")
    async with unit_of_work(world.sessions) as session:
        await svc.acknowledge(session, low.id, "pr-lead", world.clock)
    async with unit_of_work(world.sessions) as session:
        await svc.resolve(session, top.id, "pr-lead", world.clock)
    got = await _reminded(world, low.id)
    assert any(r.startswith("TASK") for r in got), got
    low = await world.incident("s-low")
    assert low.acked_at is not None
    async with world.sessions() as session:
        tasks = await workflow.tasks_of(session, low.id)
    # each by its own tier's time from the ack: tier 2's in 1 h, tier 1's reply in 2 h
    assert {t.key: t.due_at - low.acked_at for t in tasks} == {
        "publish_statement": timedelta(hours=1),
        "internal_investigation": timedelta(hours=1),
        "private_reply": timedelta(hours=2),
    }


async def test_tasks_of_an_incident_acked_during_a_silence_are_reminded(world: World) -> None:
    """No release ever comes for it (acknowledged), the silence still runs."""
    await make_silence(world, tier=2, hours=24)
    await world.signal("low", tier=2, story="s-low")  # silenced when raised
    low = await world.incident("s-low")
    async with unit_of_work(world.sessions) as session:
        await workflow.mitigate(session, low.id, "pr-lead", world.clock)
    got = await _reminded(world, low.id)
    assert [r for r in got if r.startswith("TASK REMINDER")], got
    planned = [e for e in await world.events("task_updated") if e.incident_id == low.id]
    assert planned and len(planned) == len(await _tasks(world, low.id)), "planned once"


async def _tasks(world: World, incident_id: int) -> list[object]:
    async with world.sessions() as session:
        return list(await workflow.tasks_of(session, incident_id))


async def test_ended_reads_only_the_inhibiting_tier(world: World) -> None:
    """A finished incident below the inhibiting tier inhibits nothing: not read, never
    released; a tier-3 one is, once."""
    await world.signal("low", tier=2, story="s-low")
    await world.signal("top", tier=3, story="s-top")
    low, top = await world.incident("s-low"), await world.incident("s-top")
    for incident_id in (low.id, top.id):
        async with unit_of_work(world.sessions) as session:
            await svc.resolve(session, incident_id, "x", world.clock)
    rule = world.service.config.inhibit
    async with world.sessions() as session:
        assert await inhibition.ended(session, rule) == [top.id]
    await world.service.tick()
    async with world.sessions() as session:
        assert await inhibition.ended(session, rule) == []
    assert (await world.incident("s-top")).inhibition_released_at is not None
    assert (await world.incident("s-low")).inhibition_released_at is None


def _indexes(connection: Connection) -> dict[str, list[str | None]]:
    return {
        str(ix["name"]): list(ix["column_names"])
        for ix in inspect(connection).get_indexes("incidents")
    }


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_migration_0014_up_and_down(database: str, sqlite_url: str, pg_url: str) -> None:
    engine = make_engine(sqlite_url if database == "sqlite" else pg_url)
    try:
        await upgrade_database(engine, "0013")
        async with engine.connect() as conn:
            assert "ix_incidents_inhibition_unreleased" not in await conn.run_sync(_indexes)
        await upgrade_database(engine)
        async with engine.connect() as conn:
            found = await conn.run_sync(_indexes)
            assert found["ix_incidents_inhibition_unreleased"] == ["tier", "id"]
            if database == "sqlite":
                sql = await conn.scalar(
                    text(
                        "SELECT sql FROM sqlite_master WHERE name = "
                        "'ix_incidents_inhibition_unreleased'"
                    )
                )
            else:
                sql = await conn.scalar(
                    text(
                        "SELECT indexdef FROM pg_indexes WHERE indexname = "
                        "'ix_incidents_inhibition_unreleased'"
                    )
                )
            assert "inhibition_released_at IS NULL" in str(sql)
        await downgrade_database(engine, "0013")
        async with engine.connect() as conn:
            assert "ix_incidents_inhibition_unreleased" not in await conn.run_sync(_indexes)
        await upgrade_database(engine)
    finally:
        await engine.dispose()


async def test_a_scoped_key_sees_the_teams_its_playbooks_remind(
    sessions: Sessions, clock: ManualClock
) -> None:
    overrides = {
        "channels": {n: {"type": "console"} for n in ("cs", "acme", "legal", "exec")},
        "teams": {
            "customer_service": {"channels": ["cs"]},
            "acme_pr": {"channels": ["acme"]},
            "legal": {"channels": ["legal"]},
            "executives": {"channels": ["exec"]},
        },
        "routes": {
            "teams": ["customer_service"],
            "routes": [{"match": {"watch": ["acme"]}, "teams": ["acme_pr"]}],
        },
    }
    async for w in make_world(sessions, clock, **overrides):
        config = w.service.config
        owners = {task.team for tasks in config.playbooks.values() for task in tasks}
        assert {"legal", "executives"} <= owners, "the default playbooks' teams"
        assert teams_of_watches(config, ["acme"]) == {
            "customer_service",
            "acme_pr",
            "legal",
            "executives",
        }


async def test_a_tick_with_the_database_down_logs_one_line(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    dead = make_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    try:
        world.service.sessions = make_sessionmaker(dead)
        caplog.set_level(logging.ERROR)
        report = await world.service.tick()
    finally:
        await dead.dispose()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None
    assert "database is unavailable" in errors[0].getMessage()
    assert report.failed == ("deliver",)
    assert world.metric("crisiswatch_alert_tick_errors_total", step="deliver") == 1
    assert world.metric("crisiswatch_alert_tick_errors_total", step="escalate") == 0


async def test_other_step_errors_stay_isolated(
    world: World, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken() -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(world.service, "escalate", broken)
    monkeypatch.setattr(world.service, "check_slas", broken)
    caplog.set_level(logging.ERROR)
    report = await world.service.tick()
    assert report.failed == ("escalate", "check_slas")
    assert [r.exc_info is not None for r in caplog.records if r.levelno >= logging.ERROR] == [
        True,
        True,
    ]


def test_the_tick_failing_rule_wants_a_step_failing_for_5_minutes() -> None:
    rules = yaml.safe_load(Path("deploy/prometheus/rules.yml").read_text())
    (rule,) = [
        r
        for group in rules["groups"]
        for r in group["rules"]
        if r.get("alert") == "CrisiswatchAlertTickFailing"
    ]
    assert rule["for"] == "5m"
    assert rule["expr"].strip() == (
        "sum by (job, step) (rate(crisiswatch_alert_tick_errors_total[2m])) > 0"
    )
    assert "kept failing for 5 minutes" in rule["annotations"]["description"]
