"""A story merged into another by the detector: its incident follows.

The detector merges story X into story S when it learns that they are one story (copies
of a complaint that arrived before the complaint itself, a cascade whose late link joins
a bigger one). X's last Signal says so (``merged_into`` = S, tier 0). Here:

- X has no incident: nothing to do (S's Signals open or update S's as usual).
- S has none: X's incident is now S's (its ``story_id`` becomes S), so S's Signals,
  with the combined heat, land on the incident the people already work on, and no second
  incident is opened for the same crisis; unless it is resolved or closed: then it is
  left as it is, and S's Signals open an incident of their own (and alert: a signal on
  a finished incident at the same tier would alert nobody).
- Both have one: the lower tier is merged into the higher (a tie: X's into S's) with the
  incident workflow's merge (timeline, evidence, roles and heat curve move; pending
  alerts and open tasks of the merged one are cancelled; it is closed). S's Signals reach
  the survivor through ``merged_into_id``. A closed incident is left as it is (a person
  closed it): the survivor's timeline says so. But when S's incident is the closed one
  and X's (its own, not merged elsewhere) is still live, X's incident takes S's story
  over: S's Signals reach the people working on X (else they would reopen or annotate the
  closed incident while X's, its story gone, waited for a person). The closed incident
  keeps its history under the story key ``<S>#closed-<id>``.

Order: X's last Signal is published under S's key (the detector's service), so it comes
before S's next Signals (one partition); X's earlier Signals travel on X's partition and
may come after it. So the merge is recorded first of all (``StoryAlias``: X -> S), and
``incidents.apply_signal`` sends a Signal of X that finds no incident of X to S's (or
opens the incident under S's id): a late Signal never opens a second incident.

Aliases are kept for ``ALIAS_RETENTION`` of event time: recording a merge drops the
aliases of its watch recorded that much earlier than the merge (or than the clock, if the
merge is dated later: a post dated in the future moves the detector's time on), so the
table holds about a week of merges per watch, not every merge ever made (each merge
deletes at most ``ALIAS_PRUNE_BATCH`` and skips rows another alerter holds); a Signal that
comes later than that behind its story's merge is read as the story's own.

Idempotent on the Signal id (a ``story_merged`` timeline event carries it), like
``incidents.apply_signal``; nothing here commits.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.incidents import (
    DETECTOR,
    InvalidTransition,
    check_signal,
    fit_signal,
    signal_seen,
    story_incident,
    survivor_of,
)
from alerts.models import CLOSED, FINISHED, Incident, StoryAlias
from alerts.timeline import add_event
from alerts.workflow import service as workflow
from core.clock import Clock
from core.events import Signal
from core.metrics import Metrics

ALIAS_RETENTION = timedelta(days=7)
"""How long (event time) a merge's alias is kept for the Signals sent before it: the
lag of one partition behind another, with a wide margin (a consumer down for days
catches up from its committed position long before)."""
ALIAS_PRUNE_BATCH = 500
"""Stale aliases one merge deletes at most (the rest go with the next merges)."""


async def _drop_stale_aliases(session: AsyncSession, watch: str, until: datetime) -> None:
    """Delete up to ``ALIAS_PRUNE_BATCH`` of ``watch``'s aliases recorded before ``until``.

    Rows another transaction holds are skipped, not waited for (``FOR UPDATE SKIP
    LOCKED`` on PostgreSQL): two alerters recording merges of one watch at once would
    otherwise lock the same stale rows in different orders and deadlock. What is skipped
    goes with a later merge; so does the rest of a backlog beyond the batch (bounded work
    per merge, and a bounded IN list). SQLite has one writer at a time and no row locks.
    """
    stale = (
        select(StoryAlias.story_id)
        .where(StoryAlias.watch_id == watch, StoryAlias.at < until)
        .order_by(StoryAlias.at)
        .limit(ALIAS_PRUNE_BATCH)
        .with_for_update(skip_locked=True)
    )
    ids = list(await session.scalars(stale))
    if ids:
        await session.execute(
            delete(StoryAlias).where(StoryAlias.watch_id == watch, StoryAlias.story_id.in_(ids))
        )


def retired_story_key(story_id: str, incident_id: int) -> str:
    """The story key a closed incident keeps when a live one takes its story over."""
    suffix = f"#closed-{incident_id}"
    return story_id[: 255 - len(suffix)] + suffix


async def apply_story_merge(
    session: AsyncSession,
    signal: Signal,
    clock: Clock,
    *,
    metrics: Metrics | None = None,
) -> Incident | None:
    """Apply a Signal with ``merged_into``; the incident S's Signals now reach (None when
    the merged story had none, or the signal was applied before)."""
    check_signal(signal)
    signal = fit_signal(signal)
    into = signal.merged_into
    if into is None:
        raise ValueError(f"signal {signal.id!r} merges nothing")
    if await signal_seen(session, signal.id):
        return None
    watch = signal.watch.id
    alias = await session.get(StoryAlias, (watch, signal.story_id))
    if alias is not None and alias.signal_id == signal.id:
        return None  # applied before (a merged story without an incident writes no event)
    if alias is None:  # X's Signals sent before this one, coming later, find S's incident
        alias = StoryAlias(watch_id=watch, story_id=signal.story_id)
        session.add(alias)
    alias.into_story_id, alias.signal_id, alias.at = into, signal.id, signal.at
    # event time, but never ahead of the clock: one post dated in the future moves the
    # detector's time forward, and must not drop the aliases late Signals still need
    await _drop_stale_aliases(session, watch, min(signal.at, clock.now()) - ALIAS_RETENTION)
    # S is live at this merge: an alias of S from an earlier merge (S merged away, then
    # its id came back as a new story) no longer holds, and would make a cycle. One from
    # a later merge (applied first: another partition) stays.
    older = await session.get(StoryAlias, (watch, into))
    if older is not None and older.at < signal.at:
        await session.delete(older)
    row = await story_incident(session, signal, signal.story_id)
    merged = await survivor_of(session, row)
    if row is None or merged is None:
        return None
    detail: dict[str, object] = {
        "story_id": signal.story_id,
        "into_story_id": into,
        "explanation": signal.explanation,
    }

    def note(on: Incident, **extra: object) -> None:
        add_event(
            session,
            on.id,
            "story_merged",
            clock.now(),
            actor=DETECTOR,
            detail=detail | extra,
            signal_id=signal.id,
        )

    target = await survivor_of(session, await story_incident(session, signal, into))
    if target is None:
        if merged.status in FINISHED:  # resolved or closed by a person: left as it is;
            note(merged, incident=merged.id, not_merged=f"incident is {merged.status}")
            return merged  # S's Signals open an incident of their own, and alert
        row.story_id = into  # S's Signals come to this incident from now on
        note(merged, incident=merged.id)
        return merged
    if target.id == merged.id:  # (a person merged them already)
        note(merged, incident=merged.id)
        return merged
    source, survivor = (target, merged) if target.tier < merged.tier else (merged, target)
    if target.status == CLOSED and merged.status not in FINISHED and merged.id == row.id:
        # S's incident was closed by a person while X's is live: X's incident takes S's
        # story, so S's Signals (with the combined heat) reach the people working on X;
        # the closed incident keeps its history under a retired story key
        target.story_id = retired_story_key(into, target.id)
        await session.flush()  # the (watch, story) key is unique: free it first
        row.story_id = into
        note(merged, incident=merged.id, took_over_from=target.id)
        add_event(
            session,
            target.id,
            "story_merged",
            clock.now(),
            actor=DETECTOR,
            detail=detail | {"incident": merged.id, "continued_on": merged.id},
        )
        return merged
    if CLOSED in (source.status, survivor.status):
        note(merged, incident=target.id, not_merged="an incident is closed")
        return target
    try:
        await workflow.merge(
            session,
            source.id,
            survivor.id,
            DETECTOR,
            clock,
            metrics=metrics,
            note=signal.explanation,
        )
    except InvalidTransition as exc:  # a drill and a real incident never merge
        note(merged, incident=target.id, not_merged=str(exc))
        return target
    note(survivor, incident=survivor.id, merged_incident=source.id)
    return survivor
