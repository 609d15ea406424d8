"""A story the detector merged into another: its incident follows (re-keyed to the other
story, or merged into the other story's incident, lower tier into higher), through the
alerter's signal handler, once per Signal; the other story's Signals reach the survivor."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from alerts.models import Incident, IncidentEvent
from alerts.service import AlertService
from core.clock import ManualClock
from core.events import Signal
from tests.integration import test_incident_workflow
from tests.integration.test_incident_workflow import Hooks, Sessions, get, signal

alerter = test_incident_workflow.alerter  # the fixture: an AlertService on a MemoryBus


def merged(clock: ManualClock, sid: str, story: str, into: str, previous_tier: int) -> Signal:
    return signal(clock, sid, story=story, tier=0).model_copy(
        update={
            "previous_tier": previous_tier,
            "spread": 0,
            "merged_into": into,
            "explanation": f"Part of story {into}",
        }
    )


async def by_story(sessions: Sessions) -> dict[str, Incident]:
    async with sessions() as session:
        rows = (await session.scalars(select(Incident).order_by(Incident.id))).all()
    return {row.story_id: row for row in rows}


async def kinds(sessions: Sessions, incident_id: int) -> list[str]:
    async with sessions() as session:
        rows = await session.scalars(
            select(IncidentEvent.kind)
            .where(IncidentEvent.incident_id == incident_id)
            .order_by(IncidentEvent.id)
        )
        return list(rows)


async def test_the_incident_of_a_merged_story_becomes_the_other_storys(
    sessions: Sessions, clock: ManualClock, alerter: tuple[AlertService, Hooks]
) -> None:
    alerts, _ = alerter
    await alerts.handle_signals([signal(clock, "x#1", story="x", tier=2)])
    (incident,) = (await by_story(sessions)).values()
    clock.advance(30)
    merge = merged(clock, "x#2", "x", "s", 2)
    await alerts.handle_signals([merge, merge])  # (a redelivery changes nothing)
    await alerts.handle_signals([signal(clock, "s#1", story="s", tier=3)])
    rows = await by_story(sessions)
    assert list(rows) == ["s"] and rows["s"].id == incident.id  # no second incident
    kept = await get(sessions, incident.id)
    assert (kept.tier, kept.status) == (3, "open")  # upgraded by the story it is part of
    events = await kinds(sessions, incident.id)
    assert events.count("story_merged") == 1
    assert events.index("story_merged") < events.index("upgraded")


async def test_both_stories_with_incidents_merge_lower_into_higher(
    sessions: Sessions, clock: ManualClock, alerter: tuple[AlertService, Hooks]
) -> None:
    alerts, _ = alerter
    await alerts.handle_signals(
        [signal(clock, "x#1", story="x", tier=3), signal(clock, "s#1", story="s", tier=2)]
    )
    before = await by_story(sessions)
    clock.advance(30)
    await alerts.handle_signals([merged(clock, "x#2", "x", "s", 3)])
    rows = await by_story(sessions)
    # s (tier 2) went into x (tier 3): s's later Signals reach x through merged_into_id
    assert rows["s"].merged_into_id == before["x"].id and rows["s"].status == "closed"
    assert rows["x"].merged_into_id is None and rows["x"].status == "open"
    await alerts.handle_signals([signal(clock, "s#2", story="s", tier=3, mentions=300)])
    survivor = await get(sessions, before["x"].id)
    assert survivor.tier == 3
    events = await kinds(sessions, survivor.id)
    assert events.count("story_merged") == 1 and "merged_from" in events
    assert events[-1] == "signal"  # s's Signal, on x's timeline


async def test_a_tie_keeps_the_other_storys_incident_and_a_drill_never_merges(
    sessions: Sessions, clock: ManualClock, alerter: tuple[AlertService, Hooks]
) -> None:
    alerts, _ = alerter
    await alerts.handle_signals(
        [signal(clock, "x#1", story="x", tier=2), signal(clock, "s#1", story="s", tier=2)]
    )
    await alerts.handle_signals([merged(clock, "x#2", "x", "s", 2)])
    rows = await by_story(sessions)
    assert rows["x"].merged_into_id == rows["s"].id
    # a drill story merged into a real one: both stay, the timeline says why
    await alerts.handle_signals(
        [
            signal(clock, "d#1", story="d", tier=2, drill=True),
            signal(clock, "r#1", story="r", tier=2),
        ]
    )
    await alerts.handle_signals([merged(clock, "d#2", "d", "r", 2)])
    rows = await by_story(sessions)
    assert rows["d"].merged_into_id is None and rows["r"].merged_into_id is None
    async with sessions() as session:
        note = await session.scalar(select(IncidentEvent).where(IncidentEvent.signal_id == "d#2"))
    assert note is not None and "drill" in note.detail["not_merged"]


async def test_a_merged_story_without_an_incident_changes_nothing(
    sessions: Sessions, clock: ManualClock, alerter: tuple[AlertService, Hooks]
) -> None:
    alerts, _ = alerter
    await alerts.handle_signals([merged(clock, "x#2", "x", "s", 0)])
    assert await by_story(sessions) == {}


async def test_a_resolved_incident_is_not_re_keyed(
    sessions: Sessions, clock: ManualClock, alerter: tuple[AlertService, Hooks]
) -> None:
    """Resolved by a person: the merged story's incident stays as it is; the other
    story's Signals open an incident of their own (and alert), not a silent annotation."""
    from alerts import incidents
    from core.db import unit_of_work

    alerts, _ = alerter
    await alerts.handle_signals([signal(clock, "x#1", story="x", tier=2)])
    (incident,) = (await by_story(sessions)).values()
    async with unit_of_work(sessions) as session:
        await incidents.resolve(session, incident.id, "alice", clock)
    await alerts.handle_signals([merged(clock, "x#2", "x", "s", 2)])
    await alerts.handle_signals([signal(clock, "s#1", story="s", tier=2)])
    rows = await by_story(sessions)
    assert set(rows) == {"x", "s"} and rows["x"].status == "resolved"
    assert rows["s"].status == "open" and rows["s"].id != incident.id


async def test_a_late_signal_of_the_merged_story_finds_the_other_storys_incident(
    sessions: Sessions, clock: ManualClock, alerter: tuple[AlertService, Hooks]
) -> None:
    """The merged story's last Signal can come before its earlier ones (another
    partition): those find the incident of the story it is part of (noted there) and
    never open an incident of their own; with no incident anywhere yet, the late Signal
    opens one under the surviving story's id."""
    alerts, _ = alerter
    await alerts.handle_signals([signal(clock, "s#1", story="s", tier=2)])
    await alerts.handle_signals([merged(clock, "y#2", "y", "x", 1)])  # a chain: y into x,
    await alerts.handle_signals([merged(clock, "x#3", "x", "s", 2)])  # then x into s
    await alerts.handle_signals([signal(clock, "x#2", story="x", tier=3)])  # a late one
    rows = await by_story(sessions)
    # no second incident; noted on s's, which holds the merged story's heat already (the
    # late Signal's own tier and spread are x's before the merge: stale)
    assert list(rows) == ["s"] and rows["s"].tier == 2
    assert (await kinds(sessions, rows["s"].id))[-1] == "signal"
    await alerts.handle_signals([signal(clock, "y#1", story="y", tier=1)])  # y -> x -> s
    assert list(await by_story(sessions)) == ["s"]
    # no incident anywhere yet: the late Signal opens one under the surviving story's id
    await alerts.handle_signals([merged(clock, "p#2", "p", "q", 1)])
    await alerts.handle_signals([signal(clock, "p#1", story="p", tier=2)])
    rows = await by_story(sessions)
    assert set(rows) == {"s", "q"}
    await alerts.handle_signals([signal(clock, "q#1", story="q", tier=2)])
    assert set(await by_story(sessions)) == {"s", "q"}  # q's own Signal finds it


async def test_an_alias_of_a_story_that_came_back_is_dropped(
    sessions: Sessions, clock: ManualClock, alerter: tuple[AlertService, Hooks]
) -> None:
    """x merged into s; later s's id is merged into a new story x: x is live again, its
    old alias goes (no cycle), and x's Signals land on x's incident."""
    from sqlalchemy import select as sql_select

    from alerts.models import StoryAlias

    alerts, _ = alerter
    await alerts.handle_signals([merged(clock, "x#2", "x", "s", 1)])
    clock.advance(3600)
    await alerts.handle_signals([merged(clock, "s#5", "s", "x", 1)])
    async with sessions() as session:
        aliases = (await session.scalars(sql_select(StoryAlias))).all()
    assert [(a.story_id, a.into_story_id) for a in aliases] == [("s", "x")]
    await alerts.handle_signals([signal(clock, "x#3", story="x", tier=2)])
    await alerts.handle_signals([signal(clock, "s#4", story="s", tier=2)])  # a late one of s
    assert list(await by_story(sessions)) == ["x"]


async def test_merges_applied_out_of_order_or_twice_keep_their_aliases(
    sessions: Sessions, clock: ManualClock, alerter: tuple[AlertService, Hooks]
) -> None:
    """x into s (first), then s into t: applied s->t first (another partition), then
    x->s, then x->s again (a redelivery): s->t stays, and late Signals of s and x find t's
    incident; a Signal of x sent after its merge (its id came back) is x's own."""
    alerts, _ = alerter
    await alerts.handle_signals([signal(clock, "s#1", story="s", tier=2)])
    x_into_s = merged(clock, "x#2", "x", "s", 1)
    clock.advance(60)
    s_into_t = merged(clock, "s#3", "s", "t", 2)
    await alerts.handle_signals([s_into_t, x_into_s, x_into_s])
    await alerts.handle_signals([signal(clock, "s#2", story="s", tier=2)])  # late
    await alerts.handle_signals([signal(clock, "x#1", story="x", tier=2)])  # late
    rows = await by_story(sessions)
    assert list(rows) == ["t"]  # s's incident, re-keyed to t; nothing else opened
    events = await kinds(sessions, rows["t"].id)
    assert events.count("signal") == 2  # the late ones: noted, nothing else changed
    clock.advance(86_400)
    await alerts.handle_signals([signal(clock, "x#7", story="x", tier=2)])  # x came back
    assert set(await by_story(sessions)) == {"t", "x"}


async def test_aliases_older_than_the_retention_go_when_a_merge_is_recorded(
    sessions: Sessions, clock: ManualClock, alerter: tuple[AlertService, Hooks]
) -> None:
    """Each merge drops its watch's aliases a week older (event time); other watches'
    stay; a Signal of a story merged longer ago than that is the story's own."""
    from alerts.models import StoryAlias
    from alerts.storymerge import ALIAS_RETENTION

    alerts, _ = alerter
    await alerts.handle_signals([merged(clock, "a#2", "a", "s", 1)])
    other = merged(clock, "b#2", "b", "s", 1)
    other = other.model_copy(update={"watch": other.watch.model_copy(update={"id": "beta"})})
    await alerts.handle_signals([other])
    clock.advance(ALIAS_RETENTION.total_seconds() - 60)
    await alerts.handle_signals([merged(clock, "c#2", "c", "s", 1)])  # a's is 1 min short

    async def aliases() -> list[tuple[str, str]]:
        async with sessions() as session:
            rows = (await session.scalars(select(StoryAlias))).all()
        return sorted((a.watch_id, a.story_id) for a in rows)

    assert await aliases() == [("acme", "a"), ("acme", "c"), ("beta", "b")]
    clock.advance(120)
    await alerts.handle_signals([merged(clock, "d#2", "d", "s", 1)])
    assert await aliases() == [("acme", "c"), ("acme", "d"), ("beta", "b")]
    await alerts.handle_signals([signal(clock, "a#1", story="a", tier=2)])  # very late
    assert set(await by_story(sessions)) == {"a"}
    # a merge dated far ahead of the clock (a post from the future) drops nothing more
    ahead = merged(clock, "e#2", "e", "s", 1)
    ahead = ahead.model_copy(update={"at": ahead.at + 2 * ALIAS_RETENTION})
    await alerts.handle_signals([ahead])
    assert await aliases() == [("acme", "c"), ("acme", "d"), ("acme", "e"), ("beta", "b")]


async def two_incidents_one_closed(
    sessions: Sessions, clock: ManualClock, alerts: AlertService, *, closed: str
) -> dict[str, Incident]:
    """Incidents of stories s (tier 2) and x (tier 1); the one of ``closed`` resolved and
    closed by a person."""
    from alerts import incidents
    from alerts.workflow import service as workflow
    from core.db import unit_of_work

    await alerts.handle_signals(
        [signal(clock, "s#1", story="s", tier=2), signal(clock, "x#1", story="x", tier=1)]
    )
    before = await by_story(sessions)
    async with unit_of_work(sessions) as session:
        await incidents.resolve(session, before[closed].id, "alice", clock)
        await workflow.close(session, before[closed].id, "alice", clock, note="handled")
    return before


async def test_a_live_incident_takes_over_the_story_of_a_closed_one(
    sessions: Sessions, clock: ManualClock, alerter: tuple[AlertService, Hooks]
) -> None:
    """S's incident was closed by a person, X's is live: S's Signals (the combined story)
    go to X's incident from the merge on, not to the closed one."""
    alerts, _ = alerter
    before = await two_incidents_one_closed(sessions, clock, alerts, closed="s")
    clock.advance(30)
    merge = merged(clock, "x#2", "x", "s", 1)
    await alerts.handle_signals([merge, merge])  # (a redelivery changes nothing)
    await alerts.handle_signals([signal(clock, "s#2", story="s", tier=3, mentions=300)])
    rows = await by_story(sessions)
    closed_key = f"s#closed-{before['s'].id}"
    assert set(rows) == {"s", closed_key}
    assert rows["s"].id == before["x"].id and (rows["s"].tier, rows["s"].status) == (3, "open")
    assert rows[closed_key].status == "closed" and rows[closed_key].tier == 2
    assert (await kinds(sessions, before["x"].id)).count("story_merged") == 1
    assert "story_merged" in await kinds(sessions, before["s"].id)


async def test_a_closed_incident_of_the_merged_story_stays_out_of_the_live_one(
    sessions: Sessions, clock: ManualClock, alerter: tuple[AlertService, Hooks]
) -> None:
    """X's incident closed, S's live: nothing moves; S's Signals stay on S's incident."""
    alerts, _ = alerter
    before = await two_incidents_one_closed(sessions, clock, alerts, closed="x")
    await alerts.handle_signals([merged(clock, "x#2", "x", "s", 1)])
    rows = await by_story(sessions)
    assert set(rows) == {"s", "x"} and rows["x"].status == "closed"
    assert rows["s"].id == before["s"].id and rows["s"].status == "open"


async def _aliases_of(sessions: Sessions, watch: str = "acme") -> list[str]:
    from alerts.models import StoryAlias

    async with sessions() as session:
        rows = await session.scalars(
            select(StoryAlias.story_id).where(StoryAlias.watch_id == watch)
        )
        return sorted(rows)


async def _stale_aliases(sessions: Sessions, clock: ManualClock, stories: list[str]) -> None:
    """Aliases of ``acme`` recorded 8 days (event time) before the clock, oldest first."""
    from datetime import timedelta

    from alerts.models import StoryAlias
    from core.db import unit_of_work

    async with unit_of_work(sessions) as session:
        for i, story in enumerate(stories):
            session.add(
                StoryAlias(
                    watch_id="acme", story_id=story, into_story_id="old-into",
                    signal_id=f"{story}#9", at=clock.now() - timedelta(days=8, minutes=-i),
                )
            )  # fmt: skip


async def _merge(sessions: Sessions, clock: ManualClock, story: str) -> None:
    from alerts.storymerge import apply_story_merge
    from core.db import unit_of_work

    async with unit_of_work(sessions) as session:
        await apply_story_merge(session, merged(clock, f"{story}#2", story, "s", 1), clock)


async def test_a_merge_prunes_a_backlog_of_stale_aliases_in_bounded_batches(
    sessions: Sessions, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table that grew before retention existed is pruned a batch per merge, oldest
    first, not in one statement (bounded work, bounded IN list)."""
    from alerts import storymerge

    monkeypatch.setattr(storymerge, "ALIAS_PRUNE_BATCH", 2)
    await _stale_aliases(sessions, clock, ["o1", "o2", "o3"])
    await _merge(sessions, clock, "c")
    assert await _aliases_of(sessions) == ["c", "o3"]
    await _merge(sessions, clock, "d")
    assert await _aliases_of(sessions) == ["c", "d"]


async def test_pruning_skips_aliases_another_transaction_holds_instead_of_waiting(
    pg_sessions: Sessions, clock: ManualClock
) -> None:
    """Two alerters recording merges of one watch at once: one holds a stale alias row
    (its own prune, or its merge touching it); the other's prune skips that row rather
    than wait on it (waiting in different orders deadlocks), and a later merge takes it."""
    import asyncio

    from alerts.models import StoryAlias

    await _stale_aliases(pg_sessions, clock, ["o1", "o2"])
    async with pg_sessions() as holder, holder.begin():
        await holder.execute(
            select(StoryAlias).where(StoryAlias.story_id == "o1").with_for_update()
        )
        await asyncio.wait_for(_merge(pg_sessions, clock, "c"), timeout=10)
        assert await _aliases_of(pg_sessions) == ["c", "o1"]
    await _merge(pg_sessions, clock, "d")
    assert await _aliases_of(pg_sessions) == ["c", "d"]
