"""The incident workflow on a migrated database with a ManualClock: the transitions
table, playbook tasks and their reminders through the alerter's tick, merging, the heat
curve; PostgreSQL for merge + reminders."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts import incidents
from alerts.config import AlertsConfig
from alerts.incidents import InvalidTransition, apply_signal
from alerts.models import Delivery, Incident, IncidentEvent
from alerts.service import AlertService
from alerts.workflow import evidence, service
from alerts.workflow.drills import Drill
from alerts.workflow.models import IncidentTask
from core.bus.memory import MemoryBus
from core.clock import ManualClock
from core.db import unit_of_work
from core.events import Evidence, HeatFeatures, Signal, WatchMatch
from core.metrics import Metrics

Sessions = async_sessionmaker[AsyncSession]
WHO = "alice"


def signal(
    clock: ManualClock,
    sid: str,
    *,
    story: str = "story-1",
    tier: int = 2,
    watch: str = "acme",
    mentions: int = 40,
    evidence_ids: tuple[str, ...] = (),
    drill: bool = False,
) -> Signal:
    return Signal(
        id=sid,
        story_id=story,
        story_root=f"bsky:{story}",
        watch=WatchMatch(id=watch, brand="Acme"),
        tier=tier,
        previous_tier=0,
        spread=tier,
        heat=HeatFeatures(
            mentions=mentions,
            mentions_window=mentions,
            window_minutes=10,
            unique_authors=mentions - 3,
            reach=mentions * 1000,
            negative_share=0.8,
        ),
        explanation=f"{mentions} negative posts in 10 min",
        evidence=tuple(
            Evidence(
                id=eid,
                text=f"post {eid}",
                author=f"@{eid}",
                followers=100 * (i + 1),
                created_at=clock.now(),
                label="negative" if i % 3 else "neutral",
            )
            for i, eid in enumerate(evidence_ids)
        ),
        at=clock.now(),
        drill=drill,
    )


def config() -> AlertsConfig:
    hook = {"type": "webhook", "secret": "signing-secret-0123456789"}
    teams = ("customer_service", "pr", "marketing", "legal", "executives")
    return AlertsConfig.model_validate(
        {
            "channels": {t: {**hook, "url": f"https://hooks.example/{t}"} for t in teams},
            "teams": {t: {"channels": [t]} for t in teams},
            "escalation_policies": {
                "p": {"steps": [{"after": "PT10M", "notify": "route"}], "repeat": 1}
            },
            "escalation": {1: "p", 2: "p", 3: "p"},
            "deliver_on_signal": False,
        }
    )


async def apply(sessions: Sessions, sig: Signal, cfg: AlertsConfig, clock: ManualClock) -> int:
    async with unit_of_work(sessions) as session:
        incident = await apply_signal(session, sig, cfg, clock)
        assert incident is not None
        return incident.id


async def get(sessions: Sessions, incident_id: int) -> Incident:
    async with sessions() as session:
        return await incidents.get_incident(session, incident_id)


# -- the transitions table ------------------------------------------------------------

Step = Callable[[AsyncSession, int, ManualClock], Awaitable[Any]]


async def _ack(s: AsyncSession, i: int, c: ManualClock) -> Any:
    return await incidents.acknowledge(s, i, WHO, c)


async def _mitigate(s: AsyncSession, i: int, c: ManualClock) -> Any:
    return await service.mitigate(s, i, WHO, c)


async def _resolve(s: AsyncSession, i: int, c: ManualClock) -> Any:
    return await incidents.resolve(s, i, WHO, c)


async def _close(s: AsyncSession, i: int, c: ManualClock) -> Any:
    return await service.close(s, i, WHO, c)


ACTIONS: dict[str, Step] = {
    "acknowledged": _ack,
    "mitigating": _mitigate,
    "resolved": _resolve,
    "closed": _close,
}
# how to reach each status from open
PATHS = {
    "open": [],
    "acknowledged": ["acknowledged"],
    "mitigating": ["acknowledged", "mitigating"],
    "resolved": ["resolved"],
    "closed": ["resolved", "closed"],
}
# (from, to) -> expected: the status after, or None for a 409
EXPECTED: dict[tuple[str, str], str | None] = {
    ("open", "acknowledged"): "acknowledged",
    ("open", "mitigating"): "mitigating",
    ("open", "resolved"): "resolved",
    ("open", "closed"): None,
    ("acknowledged", "acknowledged"): "acknowledged",
    ("acknowledged", "mitigating"): "mitigating",
    ("acknowledged", "resolved"): "resolved",
    ("acknowledged", "closed"): None,
    ("mitigating", "acknowledged"): "mitigating",  # already past the ack: harmless
    ("mitigating", "mitigating"): "mitigating",
    ("mitigating", "resolved"): "resolved",
    ("mitigating", "closed"): None,
    ("resolved", "acknowledged"): None,
    ("resolved", "mitigating"): None,
    ("resolved", "resolved"): "resolved",
    ("resolved", "closed"): "closed",
    ("closed", "acknowledged"): None,
    ("closed", "mitigating"): None,
    ("closed", "resolved"): None,
    ("closed", "closed"): "closed",
}


@pytest.mark.parametrize(("start", "target"), sorted(EXPECTED))
async def test_transitions_table(
    sessions: Sessions, clock: ManualClock, start: str, target: str
) -> None:
    cfg = config()
    incident_id = await apply(sessions, signal(clock, "s1"), cfg, clock)
    for step in PATHS[start]:
        async with unit_of_work(sessions) as session:
            await ACTIONS[step](session, incident_id, clock)
    assert (await get(sessions, incident_id)).status == start
    expected = EXPECTED[(start, target)]
    if expected is None:
        with pytest.raises(InvalidTransition, match=f"incident {incident_id} is {start}"):
            async with unit_of_work(sessions) as session:
                await ACTIONS[target](session, incident_id, clock)
        assert (await get(sessions, incident_id)).status == start
    else:
        async with unit_of_work(sessions) as session:
            await ACTIONS[target](session, incident_id, clock)
        assert (await get(sessions, incident_id)).status == expected


async def test_mitigating_an_open_incident_acknowledges_it_and_stops_escalation(
    sessions: Sessions, clock: ManualClock
) -> None:
    incident_id = await apply(sessions, signal(clock, "s1"), config(), clock)
    clock.advance(60)
    async with unit_of_work(sessions) as session:
        await service.mitigate(session, incident_id, WHO, clock, note="rolling back")
    incident = await get(sessions, incident_id)
    assert incident.acked_by == WHO and incident.next_escalation_at is None
    kinds = [e.kind for e in incident.timeline]
    assert kinds.index("acknowledged") < kinds.index("mitigating")


async def test_a_higher_tier_signal_reopens_a_closed_incident_and_records_the_tier(
    sessions: Sessions, clock: ManualClock
) -> None:
    cfg = config()
    incident_id = await apply(sessions, signal(clock, "s1", tier=1), cfg, clock)
    async with unit_of_work(sessions) as session:
        await incidents.resolve(session, incident_id, WHO, clock)
        await service.close(session, incident_id, WHO, clock)
    clock.advance(600)
    await apply(sessions, signal(clock, "s2", tier=3, mentions=400), cfg, clock)
    incident = await get(sessions, incident_id)
    assert (incident.status, incident.tier, incident.closed_at) == ("open", 3, None)
    async with sessions() as session:
        history = await service.tier_history(session, incident_id)
    assert [(t.from_tier, t.tier) for t in history] == [(0, 1), (1, 3)]


# -- playbook tasks and reminders -----------------------------------------------------


class Hooks:
    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = request.content.decode()
        self.texts.append((request.url.path.strip("/"), body))
        return httpx.Response(200)

    def reminders(self) -> list[str]:
        return [team for team, body in self.texts if "TASK " in body]

    def reminder_texts(self) -> list[str]:
        return [body for _, body in self.texts if "TASK " in body]


@pytest.fixture
async def alerter(
    sessions: Sessions, clock: ManualClock, metrics: Metrics
) -> AsyncIterator[tuple[AlertService, Hooks]]:
    hooks = Hooks()
    bus = MemoryBus(metrics=metrics)
    async with httpx.AsyncClient(transport=httpx.MockTransport(hooks)) as http:
        alerts = AlertService(bus, sessions, config(), http, clock, metrics)
        await alerts.jobs.start()
        try:
            yield alerts, hooks
        finally:
            alerts.jobs.close()
            await bus.stop()


async def tasks_of(sessions: Sessions, incident_id: int) -> dict[str, IncidentTask]:
    async with sessions() as session:
        return {t.key: t for t in await service.tasks_of(session, incident_id)}


async def test_tier2_playbook_tasks_are_due_by_the_sla_and_remind_pr_before_and_at_the_deadline(
    sessions: Sessions,
    clock: ManualClock,
    metrics: Metrics,
    alerter: tuple[AlertService, Hooks],
) -> None:
    alerts, hooks = alerter
    opened = clock.now()
    incident_id = await apply(sessions, signal(clock, "s1", tier=2), alerts.config, clock)
    tasks = await tasks_of(sessions, incident_id)
    # tier 2's playbook and tier 1's (a tier 2 still owes the author a private reply)
    assert set(tasks) == {"publish_statement", "internal_investigation", "private_reply"}
    reply = tasks["private_reply"]
    assert (reply.tier, reply.team) == (1, "customer_service")
    assert reply.due_at == opened + timedelta(hours=2)  # by its own tier's SLA
    statement = tasks["publish_statement"]
    assert statement.due_at == opened + timedelta(hours=1)  # the tier-2 SLA
    assert (statement.team, statement.owner_role) == ("pr", "pr_owner")
    assert statement.next_reminder_at == opened + timedelta(minutes=45)

    await alerts.tick()  # the alert itself goes out
    hooks.texts.clear()
    clock.advance(44 * 60)
    await alerts.tick()
    assert hooks.reminders() == []
    clock.advance(60)  # 15 min before the due time
    await alerts.tick()
    assert hooks.reminders() == ["pr", "pr"]  # one per open task
    assert all("due in 15 min" in text for text in hooks.reminder_texts())
    await alerts.tick()
    assert len(hooks.reminders()) == 2  # a reminder goes once

    # the statement is recorded: its task is done, only the investigation is reminded
    async with unit_of_work(sessions) as session:
        await incidents.record_response(session, incident_id, "statement", WHO, clock)
    clock.advance(15 * 60)
    await alerts.tick()
    assert len(hooks.reminders()) == 3
    last = hooks.reminder_texts()[-1]
    assert "TASK OVERDUE" in last and "investigation" in last
    clock.advance(3600)
    await alerts.tick()
    # no pr reminder after the last one; the private reply is due now (2 h): customer
    # service's reminders (15 min before, at) missed by this late tick coalesced into one
    assert hooks.reminders() == ["pr"] * 3 + ["customer_service"]
    assert "Reply privately" in hooks.reminder_texts()[-1]
    tasks = await tasks_of(sessions, incident_id)
    assert tasks["publish_statement"].status == "done"
    assert tasks["internal_investigation"].reminders_sent == 2
    assert (
        metrics.registry.get_sample_value(
            "crisiswatch_task_reminders_total", {"tier": "2", "kind": "overdue"}
        )
        == 2
    )
    incident = await get(sessions, incident_id)
    reminders = [e for e in incident.timeline if e.kind == "task_reminder"]
    assert [e.detail["overdue"] for e in reminders] == [False, False, True, True]


async def test_an_upgrade_adds_the_new_tiers_tasks_and_a_resolve_stops_reminders(
    sessions: Sessions, clock: ManualClock, alerter: tuple[AlertService, Hooks]
) -> None:
    alerts, hooks = alerter
    incident_id = await apply(sessions, signal(clock, "s1", tier=1), alerts.config, clock)
    clock.advance(60)
    upgraded = clock.now()
    await apply(sessions, signal(clock, "s2", tier=3, mentions=300), alerts.config, clock)
    tasks = await tasks_of(sessions, incident_id)
    # tier 3 includes tier 2's duties: its statement and investigation are created too
    assert set(tasks) == {
        "private_reply",
        "publish_statement",
        "internal_investigation",
        "convene_emergency_group",
        "legal_review_statements",
    }
    assert tasks["convene_emergency_group"].due_at == upgraded + timedelta(minutes=10)
    assert tasks["publish_statement"].due_at == upgraded + timedelta(hours=1)
    assert tasks["publish_statement"].tier == 2
    assert tasks["private_reply"].tier == 1
    await alerts.tick()
    async with unit_of_work(sessions) as session:
        await incidents.resolve(session, incident_id, WHO, clock)
    hooks.texts.clear()
    clock.advance(3 * 3600)
    await alerts.tick()
    assert hooks.reminders() == []


async def test_marking_a_task_done_stops_its_reminders_and_twice_is_a_conflict(
    sessions: Sessions, clock: ManualClock
) -> None:
    cfg = config()
    incident_id = await apply(sessions, signal(clock, "s1", tier=1), cfg, clock)
    task = (await tasks_of(sessions, incident_id))["private_reply"]
    clock.advance(30 * 60)
    async with unit_of_work(sessions) as session:
        done = await service.update_task(session, incident_id, task.id, "done", WHO, clock.now())
        assert done.next_reminder_at is None and done.finished_by == WHO
    with pytest.raises(InvalidTransition, match="already done"):
        async with unit_of_work(sessions) as session:
            await service.update_task(session, incident_id, task.id, "skipped", WHO, clock.now())


# -- merge ----------------------------------------------------------------------------


async def test_merge_closes_one_points_to_the_survivor_and_moves_evidence_and_timeline(
    sessions: Sessions, clock: ManualClock
) -> None:
    await check_merge(sessions, clock)


async def check_merge(sessions: Sessions, clock: ManualClock) -> None:
    cfg = config()
    survivor = await apply(
        sessions, signal(clock, "a1", story="a", tier=3, evidence_ids=("m1", "m2")), cfg, clock
    )
    clock.advance(60)
    merged = await apply(
        sessions, signal(clock, "b1", story="b", tier=2, evidence_ids=("m2", "m3")), cfg, clock
    )
    async with unit_of_work(sessions) as session:
        await service.assign_role(session, merged, "pr_owner", "bob", WHO, clock.now())
        await service.add_note(session, merged, "same recall story", WHO, clock.now())
    clock.advance(60)
    async with unit_of_work(sessions) as session:
        await service.merge(session, merged, survivor, WHO, clock, note="one story")

    gone = await get(sessions, merged)
    assert (gone.status, gone.merged_into_id, gone.closed_by) == ("closed", survivor, WHO)
    assert [e.kind for e in gone.timeline] == ["merged_into"]
    assert all(d.status != "pending" for d in gone.deliveries)
    kept = await get(sessions, survivor)
    assert sorted(e.mention_id for e in kept.evidence) == ["m1", "m2", "m3"]
    moved = [e for e in kept.timeline if e.detail.get("from_incident") == merged]
    assert {"opened", "note", "role_assigned"} <= {e.kind for e in moved}
    assert kept.timeline[-1].kind == "merged_from"
    assert kept.timeline[-1].detail["moved_roles"] == ["pr_owner"]
    async with sessions() as session:
        assert [r.person for r in await service.roles_of(session, survivor)] == ["bob"]
        found = await evidence.collect(session, survivor)
        assert {p.story_id for p in found.heat_curve} == {"a", "b"}
        cancelled = await service.tasks_of(session, merged)
        assert cancelled and {t.status for t in cancelled} == {"cancelled"}

    # the merged story's next signal goes to the survivor
    clock.advance(60)
    assert await apply(sessions, signal(clock, "b2", story="b", tier=2), cfg, clock) == survivor
    async with sessions() as session:
        assert (
            await session.scalar(
                select(IncidentEvent.incident_id).where(IncidentEvent.signal_id == "b2")
            )
            == survivor
        )


async def test_merges_that_cannot_be(sessions: Sessions, clock: ManualClock) -> None:
    cfg = config()
    high = await apply(sessions, signal(clock, "a1", story="a", tier=3), cfg, clock)
    low = await apply(sessions, signal(clock, "b1", story="b", tier=2), cfg, clock)
    other = await apply(sessions, signal(clock, "c1", story="c", watch="globex"), cfg, clock)
    drill = await apply(sessions, signal(clock, "d1", story="d", drill=True), cfg, clock)
    cases: list[tuple[int, int, type[Exception], str]] = [
        (low, low, service.InvalidMerge, "into itself"),
        (high, low, InvalidTransition, "merge the lower-tier incident into the higher one"),
        (other, high, InvalidTransition, "different watches"),
        (drill, high, InvalidTransition, "drill incident never merges"),
        (low, 999, incidents.IncidentNotFound, "999"),
    ]
    for source, into, error, message in cases:
        with pytest.raises(error, match=message):
            async with unit_of_work(sessions) as session:
                await service.merge(session, source, into, WHO, clock)
    async with unit_of_work(sessions) as session:
        await service.merge(session, low, high, WHO, clock)
    with pytest.raises(InvalidTransition, match="closed"):
        async with unit_of_work(sessions) as session:
            await service.merge(session, low, high, WHO, clock)


# -- evidence -------------------------------------------------------------------------


async def test_evidence_has_the_heat_curve_of_every_signal_and_the_sentiment_mix(
    sessions: Sessions, clock: ManualClock
) -> None:
    cfg = config()
    incident_id = await apply(
        sessions, signal(clock, "s1", tier=1, mentions=10, evidence_ids=("m1",)), cfg, clock
    )
    for n, (tier, mentions) in enumerate([(1, 25), (2, 60), (2, 45)], start=2):
        clock.advance(300)
        ids = (f"m{n}", f"m{n + 10}")
        await apply(
            sessions,
            signal(clock, f"s{n}", tier=tier, mentions=mentions, evidence_ids=ids),
            cfg,
            clock,
        )
    async with sessions() as session:
        found = await evidence.collect(session, incident_id, limit=3)
    assert [p.heat["mentions_window"] for p in found.heat_curve] == [10, 25, 60, 45]
    assert [p.tier for p in found.heat_curve] == [1, 1, 2, 2]
    assert found.total_mentions == 7 and sum(found.sentiment_mix.values()) == 7
    assert found.sentiment_mix == {"negative": 3, "neutral": 4, "positive": 0}
    assert [m.followers for m in found.mentions] == [200, 200, 200]
    assert found.peak() is not None and found.peak()["mentions_window"] == 60  # type: ignore[index]


# -- PostgreSQL -----------------------------------------------------------------------


@pytest.mark.postgres
async def test_merge_and_tasks_on_postgres(pg_sessions: Sessions, clock: ManualClock) -> None:
    await check_merge(pg_sessions, clock)
    async with pg_sessions() as session:
        rows = (await session.scalars(select(Delivery).where(Delivery.status == "pending"))).all()
        assert rows  # the survivor's alerts are still queued
    async with unit_of_work(pg_sessions) as session:
        queued = await service_remind(session, clock)
    assert queued > 0


async def service_remind(session: AsyncSession, clock: ManualClock) -> int:
    from alerts.workflow.tasks import remind_due

    clock.advance(3 * 3600)
    return await remind_due(session, config(), clock.now(), Metrics())


def before_the_first_update(
    session: AsyncSession, meanwhile: Callable[[], Awaitable[None]]
) -> list[bool]:
    """Run ``meanwhile`` (another user's change, in its own transaction) just before
    ``session`` sends its first UPDATE: between a job's read and its compare-and-set.
    The list it returns holds True once ``meanwhile`` ran."""
    from sqlalchemy.sql.dml import Update

    send = session.execute
    ran: list[bool] = []

    async def execute(statement: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(statement, Update) and not ran:
            await meanwhile()
            ran.append(True)
        return await send(statement, *args, **kwargs)

    session.execute = execute  # type: ignore[method-assign]
    return ran


async def test_a_task_marked_done_while_the_tick_reads_it_is_not_reminded(
    pg_sessions: Sessions, clock: ManualClock
) -> None:
    """Someone marks the task done between the tick's read and its compare-and-set: the
    set compared only ``reminders_sent``, which finishing a task leaves alone, so the team
    got a "TASK OVERDUE" for a task already done and the done task a reminder time again."""
    from alerts.workflow.tasks import remind_due

    cfg = config()
    incident_id = await apply(pg_sessions, signal(clock, "s1", tier=1), cfg, clock)
    task = (await tasks_of(pg_sessions, incident_id))["private_reply"]
    clock.advance(3 * 3600)

    async def mark_done() -> None:
        async with unit_of_work(pg_sessions) as other:
            await service.update_task(other, incident_id, task.id, "done", "bob", clock.now())

    async with unit_of_work(pg_sessions) as session:
        finished = before_the_first_update(session, mark_done)
        queued = await remind_due(session, cfg, clock.now(), Metrics())
    assert finished == [True]
    assert queued == 0
    done = (await tasks_of(pg_sessions, incident_id))["private_reply"]
    assert (done.status, done.next_reminder_at) == ("done", None)
    incident = await get(pg_sessions, incident_id)
    assert [e for e in incident.timeline if e.kind == "task_reminder"] == []


def _rumour_drill(root: str, first_post: datetime) -> Drill:
    """A rumour drill on acme whose first post (and start) was ``first_post``."""
    return Drill(
        scenario="rumour",
        watch_id="acme",
        story_root=root,
        mentions=200,
        first_mention_at=first_post,
        started_at=first_post,
        started_by=WHO,
    )


async def test_a_drill_whose_incident_was_merged_is_measured_on_the_survivor(
    sessions: Sessions, clock: ManualClock
) -> None:
    """The drill's incident merged into another drill incident (its story joined the
    other's): its heat curve moved and it was never acknowledged itself, so the report
    said "detection: not done" and "acknowledgement: not done" for a drill that was
    detected and acknowledged in time."""
    from alerts.workflow.drills import measure

    cfg = config()
    first_post = clock.now()
    root = "bsky:drill-root"
    theirs = signal(clock, "o#1", story="acme:drill:other", tier=2, drill=True)
    other = await apply(sessions, theirs, cfg, clock)
    clock.advance(60)
    mine = await apply(
        sessions, signal(clock, "d#1", story=f"acme:drill:{root}", tier=2, drill=True), cfg, clock
    )
    clock.advance(60)
    async with unit_of_work(sessions) as session:
        await incidents.acknowledge(session, other, WHO, clock)
        await service.merge(session, mine, other, WHO, clock)
        drill = _rumour_drill(root, first_post)
        session.add(drill)
    async with sessions() as session:
        report = await measure(session, drill, cfg, clock.now())
    assert report["incident_id"] == other
    verdicts = {m["what"].split(" ")[0]: m["verdict"] for m in report["measurements"]}
    assert verdicts["detection"] == "met", report
    assert verdicts["acknowledgement"] != "not done", report


@pytest.mark.parametrize("end", ["resolve", "merge"])
async def test_the_report_keeps_the_deadline_of_an_sla_missed_before_the_end(
    sessions: Sessions, clock: ManualClock, end: str
) -> None:
    """A tier-2 incident whose statement never came: the breach is recorded, then it is
    resolved (or merged). That stopped the clock by clearing its deadline, so the report
    read "tier 2 SLA missed, due -": the one date a review of the miss needs was gone."""
    from alerts import sla
    from alerts.workflow import report

    cfg = config()
    opened = clock.now()
    incident_id = await apply(sessions, signal(clock, "s1", tier=2), cfg, clock)
    clock.advance(61 * 60)
    async with unit_of_work(sessions) as session:
        assert await sla.check(session, cfg, clock.now(), Metrics())
    clock.advance(60)
    survivor = await apply(sessions, signal(clock, "t1", story="story-2", tier=2), cfg, clock)
    async with unit_of_work(sessions) as session:
        if end == "resolve":
            await incidents.resolve(session, incident_id, WHO, clock)
        else:
            await service.merge(session, incident_id, survivor, WHO, clock)
    async with sessions() as session:
        data = await report.build(session, incident_id, clock.now())
    (deadline,) = [d for d in data["deadlines"] if d["kind"] == "sla"]
    assert deadline["outcome"] == "missed"
    assert deadline["due_at"] == (opened + timedelta(hours=1)).isoformat()


async def test_an_ack_while_the_sla_check_reads_the_incident_is_no_breach(
    pg_sessions: Sessions, clock: ManualClock
) -> None:
    """A tier-3 incident acknowledged between the SLA check's read and its
    compare-and-set: the set compared only ``sla_warned``, which the ack leaves alone, so
    an incident acknowledged in time was recorded as breached and its next escalation step
    ran (the executives paged for a crisis already in hand). (The ack, 11 min in, is past
    the 10 min deadline all the same: it records the breach itself, once, running no step:
    ``sla.missed_at_stop``.)"""
    from alerts import sla

    cfg = config()
    incident_id = await apply(pg_sessions, signal(clock, "s1", tier=3), cfg, clock)
    clock.advance(11 * 60)

    async def acknowledge() -> None:
        async with unit_of_work(pg_sessions) as other:
            await incidents.acknowledge(other, incident_id, WHO, clock)

    async with unit_of_work(pg_sessions) as session:
        acked = before_the_first_update(session, acknowledge)
        breaches = await sla.check(session, cfg, clock.now(), Metrics())
    assert acked == [True]
    assert breaches == []
    incident = await get(pg_sessions, incident_id)
    (breach,) = [e for e in incident.timeline if e.kind == "sla_breached"]
    assert breach.detail["stopped_by"] == "acknowledged"


# -- time to acknowledge after a reopen -------------------------------------------------


async def test_time_to_ack_after_a_reopen_counts_from_the_reopen(
    sessions: Sessions, clock: ManualClock, metrics: Metrics
) -> None:
    """Acknowledged and resolved, then reopened by a higher-tier signal an hour later and
    acknowledged 3 min after that: the report's time to ack counted from the first open
    (3780 s) for an episode acknowledged in 180 s."""
    from alerts.workflow import report

    cfg = config()
    opened = clock.now()
    incident_id = await apply(sessions, signal(clock, "s1", tier=1), cfg, clock)
    clock.advance(300)
    async with unit_of_work(sessions) as session:
        await incidents.acknowledge(session, incident_id, "bob", clock, metrics=metrics)
    clock.advance(300)
    async with unit_of_work(sessions) as session:
        await incidents.resolve(session, incident_id, "bob", clock)
    clock.advance(3000)
    reopened = clock.now()
    await apply(sessions, signal(clock, "s2", tier=2, mentions=90), cfg, clock)
    clock.advance(180)
    async with unit_of_work(sessions) as session:
        await incidents.acknowledge(session, incident_id, WHO, clock, metrics=metrics)
    async with sessions() as session:
        data = await report.build(session, incident_id, clock.now())
    when = data["when"]
    assert when["time_to_ack_s"] == 180
    assert (when["opened_at"], when["reopened_at"], when["reopens"]) == (
        opened.isoformat(),
        reopened.isoformat(),
        1,
    )
    assert (when["acknowledged_by"], when["resolved_at"], when["time_to_resolve_s"]) == (
        WHO,
        None,
        None,
    )
    assert [
        (e["reopened_from"], e["time_to_ack_s"], e["acknowledged_by"], e["resolved_at"])
        for e in data["episodes"]
    ] == [
        (None, 300, "bob", (opened + timedelta(seconds=600)).isoformat()),
        ("resolved", 180, WHO, None),
    ]
    md = report.markdown(data)
    assert "| reopened |" in md and "Time to acknowledge: 180" in md and "Reopened 1 time" in md
    # the metric counts from the alert each ack answers: the reopen for the second one
    sample = metrics.registry.get_sample_value
    assert sample("crisiswatch_time_to_ack_seconds_sum", {"tier": "1", "drill": "false"}) == 300
    assert sample("crisiswatch_time_to_ack_seconds_sum", {"tier": "2", "drill": "false"}) == 180
    # a never reopened incident: no reopen, one episode (the fields as before)
    other = await apply(sessions, signal(clock, "o1", story="story-2", tier=2), cfg, clock)
    clock.advance(42)
    async with unit_of_work(sessions) as session:
        await incidents.acknowledge(session, other, WHO, clock)
    async with sessions() as session:
        plain = await report.build(session, other, clock.now())
    assert (plain["when"]["time_to_ack_s"], plain["when"]["reopened_at"]) == (42, None)
    assert [e["time_to_ack_s"] for e in plain["episodes"]] == [42]


async def test_a_reopened_drill_measures_the_ack_from_the_reopen(
    sessions: Sessions, clock: ManualClock
) -> None:
    """The drill report measured the acknowledgement of a reopened drill incident from its
    first open, as the incident report did."""
    from alerts.workflow.drills import measure

    cfg = config()
    first_post = clock.now()
    root = "bsky:drill-reopen"
    story = f"acme:drill:{root}"
    incident_id = await apply(
        sessions, signal(clock, "d#1", story=story, tier=1, drill=True), cfg, clock
    )
    async with unit_of_work(sessions) as session:
        await incidents.resolve(session, incident_id, WHO, clock)
    clock.advance(3600)
    await apply(sessions, signal(clock, "d#2", story=story, tier=3, drill=True), cfg, clock)
    clock.advance(240)
    async with unit_of_work(sessions) as session:
        await incidents.acknowledge(session, incident_id, WHO, clock)
        drill = _rumour_drill(root, first_post)
        session.add(drill)
    async with sessions() as session:
        measured = await measure(session, drill, cfg, clock.now())
    (ack,) = [m for m in measured["measurements"] if m["what"] == "acknowledgement"]
    assert (ack["seconds"], ack["verdict"]) == (240, "met"), measured


# -- an SLA deadline passed between two ticks ------------------------------------------


async def _breaches(sessions: Sessions, incident_id: int) -> list[IncidentEvent]:
    return [e for e in (await get(sessions, incident_id)).timeline if e.kind == "sla_breached"]


@pytest.mark.parametrize("end", ["resolve", "acknowledge", "merge", "tick, then resolve"])
async def test_a_deadline_missed_before_the_tick_saw_it_is_a_breach_once(
    sessions: Sessions, clock: ManualClock, metrics: Metrics, end: str
) -> None:
    """A tier-3 incident (acknowledged within 10 min) nobody acknowledged, resolved (or
    acknowledged, or merged) 11 min in, before a tick recorded the breach: the tick never
    looks at a finished incident or a met clock, and the resolve cleared the deadline, so
    no breach was recorded or counted and the report had no SLA line at all. Recorded at
    the resolve now; and once only, when the tick recorded it first or runs after."""
    from alerts import sla
    from alerts.workflow import report

    cfg = config()
    opened = clock.now()
    incident_id = await apply(sessions, signal(clock, "s1", tier=3), cfg, clock)
    survivor = await apply(sessions, signal(clock, "t1", story="story-2", tier=3), cfg, clock)
    clock.advance(11 * 60)
    if end.startswith("tick"):
        async with unit_of_work(sessions) as session:
            assert len(await sla.check(session, cfg, clock.now(), metrics)) == 2
    async with unit_of_work(sessions) as session:
        if end == "acknowledge":
            await incidents.acknowledge(session, incident_id, WHO, clock, metrics=metrics)
        elif end == "merge":
            await service.merge(session, incident_id, survivor, WHO, clock, metrics=metrics)
        else:
            await incidents.resolve(session, incident_id, WHO, clock, metrics=metrics)
    clock.advance(60)
    async with unit_of_work(sessions) as session:  # the tick after it records nothing more
        breaches = await sla.check(session, cfg, clock.now(), metrics)
    assert incident_id not in [b.incident_id for b in breaches]

    assert len(await _breaches(sessions, incident_id)) == 1
    tier3 = {"tier": "3", "drill": "false"}
    counted = metrics.registry.get_sample_value("crisiswatch_sla_breaches_total", tier3)
    assert counted == 2  # its breach and the other incident's (recorded by a tick)
    due = opened + timedelta(minutes=10)
    incident = await get(sessions, incident_id)
    assert (incident.sla_due_at, incident.sla_breached_at is not None) == (due, True)
    async with sessions() as session:
        data = await report.build(session, incident_id, clock.now())
    (deadline,) = [d for d in data["deadlines"] if d["kind"] == "sla"]
    assert (deadline["outcome"], deadline["due_at"]) == ("missed", due.isoformat())


async def test_a_merged_incident_keeps_the_sla_it_met(
    sessions: Sessions, clock: ManualClock
) -> None:
    """Acknowledged in time, then merged: its report still says the SLA was met (the merge
    cleared the deadline, so the report had no SLA line; a resolve keeps it)."""
    from alerts.workflow import report

    cfg = config()
    opened = clock.now()
    incident_id = await apply(sessions, signal(clock, "s1", tier=3), cfg, clock)
    survivor = await apply(sessions, signal(clock, "t1", story="story-2", tier=3), cfg, clock)
    clock.advance(5 * 60)
    async with unit_of_work(sessions) as session:
        await incidents.acknowledge(session, incident_id, WHO, clock)
    clock.advance(15 * 60)
    async with unit_of_work(sessions) as session:
        await service.merge(session, incident_id, survivor, WHO, clock)
    async with sessions() as session:
        data = await report.build(session, incident_id, clock.now())
    (deadline,) = [d for d in data["deadlines"] if d["kind"] == "sla"]
    due = opened + timedelta(minutes=10)
    assert (deadline["outcome"], deadline["due_at"]) == ("met", due.isoformat()), deadline


async def test_a_resolve_in_time_is_no_breach(
    sessions: Sessions, clock: ManualClock, metrics: Metrics
) -> None:
    from alerts import sla

    cfg = config()
    incident_id = await apply(sessions, signal(clock, "s1", tier=3), cfg, clock)
    clock.advance(9 * 60)
    async with unit_of_work(sessions) as session:
        await incidents.resolve(session, incident_id, WHO, clock, metrics=metrics)
    clock.advance(3600)
    async with unit_of_work(sessions) as session:
        assert await sla.check(session, cfg, clock.now(), metrics) == []
    assert await _breaches(sessions, incident_id) == []
    tier3 = {"tier": "3", "drill": "false"}
    assert metrics.registry.get_sample_value("crisiswatch_sla_breaches_total", tier3) in (0, None)


@pytest.mark.postgres
async def test_a_resolve_while_the_sla_check_reads_the_incident_is_one_breach(
    pg_sessions: Sessions, clock: ManualClock, metrics: Metrics
) -> None:
    """Resolved past the deadline between the SLA check's read and its compare-and-set:
    the check's set fails (the incident is finished) and the resolve had cleared the
    deadline, so the breach was recorded by neither."""
    from alerts import sla

    cfg = config()
    incident_id = await apply(pg_sessions, signal(clock, "s1", tier=3), cfg, clock)
    clock.advance(11 * 60)

    async def resolve() -> None:
        async with unit_of_work(pg_sessions) as other:
            await incidents.resolve(other, incident_id, WHO, clock, metrics=metrics)

    async with unit_of_work(pg_sessions) as session:
        resolved = before_the_first_update(session, resolve)
        breaches = await sla.check(session, cfg, clock.now(), metrics)
    assert resolved == [True]
    assert breaches == []
    assert len(await _breaches(pg_sessions, incident_id)) == 1
    tier3 = {"tier": "3", "drill": "false"}
    assert metrics.registry.get_sample_value("crisiswatch_sla_breaches_total", tier3) == 1
