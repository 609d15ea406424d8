"""The post-incident report: what happened, when, who did what, deadlines met or missed.

The report is complete (it is the record legal reviews): it lists every timeline event
and every action of every person, however long the incident ran. So that a days-long
incident (tens of thousands of events) costs neither memory nor a long wait, ``head``
reads what is bounded (the incident, its status events, tier history, roles, tasks,
evidence counts and top mentions), and the two lists are read ``CHUNK`` events at a time
while ``stream_json`` / ``stream_markdown`` write them out. ``build`` gathers the same
report as one JSON-ready dict, and ``markdown`` renders that dict: the same text as
``stream_markdown``, from the same line functions. The Markdown ends with a line that
counts the timeline's events (the JSON with ``timeline_events``): a report cut short has
no such line. Mention text and every other string people or strangers wrote is escaped
for Markdown (no links, markup or headings can be injected into the report).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts import incidents
from alerts.models import FINISHED, FOLLOW_UP_REASONS, Incident, IncidentEvent
from alerts.notifiers import escape
from alerts.timeline import SYSTEM
from alerts.workflow import evidence as evidence_service
from alerts.workflow import service
from alerts.workflow.models import TierChange
from alerts.workflow.tasks import judged_at, outcome

MACHINES = frozenset({SYSTEM, incidents.DETECTOR})
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~&@:])")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 1)


def summarize(kind: str, detail: dict[str, Any]) -> str:
    """One line for a timeline event."""
    d = detail
    lines: dict[str, str] = {
        "opened": f"opened at tier {d.get('tier')}: {d.get('explanation', '')}",
        "upgraded": f"raised from tier {d.get('from_tier')} to tier {d.get('tier')}"
        + (f" (reopened: it was {d['was']})" if d.get("was", "open") != "open" else ""),
        "signal": f"signal at tier {d.get('tier')}",
        "alert_queued": _queued(d),
        "alert_delivered": f"alert delivered on {d.get('channel')}",
        "alert_failed": f"alert failed on {d.get('channel')}: {d.get('error')}",
        "acknowledged": "acknowledged",
        "escalated": f"escalated to level {d.get('level')}",
        "resolved": "resolved",
        "note": f"note: {d.get('text', '')}",
        "responded": f"{d.get('kind')} recorded",
        "sla_warning": f"SLA warning ({d.get('what')}, due {d.get('deadline')})",
        "sla_breached": f"SLA missed ({d.get('what')}, due {d.get('deadline')})",
        "mitigating": "mitigation started",
        "closed": "closed",
        "role_assigned": f"{d.get('role')} -> {d.get('person')}",
        "role_unassigned": f"{d.get('role')} ({d.get('person')}) unassigned",
        "task_created": f"task {d.get('title')!r} due {d.get('due_at')}",
        "task_updated": f"task {d.get('key')} {d.get('status')}"
        if "status" in d
        else f"task {d.get('key')} due {d.get('due_at')} (reminders planned)",
        "task_reminder": f"reminder for task {d.get('key')} to {d.get('team')}",
        "merged_into": f"merged into incident {d.get('into')}",
        "merged_from": f"incident {d.get('incident')} merged in",
        "story_merged": f"story {d.get('story_id')} is part of story {d.get('into_story_id')}"
        + (f" (not merged: {d['not_merged']})" if d.get("not_merged") else ""),
        "held": f"alerts held by quiet hours until {d.get('until')}",
        "template_used": f"template {d.get('name')!r} v{d.get('version')}"
        + (f" (approved by {d['approved_by']})" if d.get("approved_by") else "")
        + " used",
    }
    return lines.get(kind, kind.replace("_", " "))


def _queued(d: dict[str, Any]) -> str:
    """An alert queued on one channel, or a follow-up (ack, resolve) on several, whose
    event lists them all: named one by one, not as a Python list."""
    channels = d.get("channels")
    if not isinstance(channels, list):
        return f"alert queued for {d.get('channel')}"
    what = f"{d['reason']} follow-up" if d.get("reason") in FOLLOW_UP_REASONS else "alert"
    return f"{what} queued for {', '.join(str(c) for c in channels)}"


WAITED_FOR = {"acknowledged": "an ack", "responded": "a response", "resolved": "a resolve"}


def _sla_not_needed(incident: Incident, events: list[IncidentEvent]) -> dict[str, Any] | None:
    """The SLA line of an incident that ended (resolved, merged) before its deadline and
    before what the deadline waits for (``sla.not_needed``, kept in the detail of the
    event that ended it): not needed, neither met nor missed. Only the current episode's
    end counts: a reopen started a clock of its own. ``events``: the timeline in order."""
    if incident.status not in FINISHED:
        return None
    for event in reversed(events):
        if not incidents.own_event(event):
            continue  # (a merged incident's, moved here)
        if incidents.is_reopen(event):
            return None
        stop = event.detail.get("sla") if event.kind in ("resolved", "merged_into") else None
        if isinstance(stop, dict):
            return _not_needed_line(stop, event)
    return None


def _not_needed_line(stop: dict[str, Any], event: IncidentEvent) -> dict[str, Any]:
    waited = WAITED_FOR.get(str(stop.get("what")), str(stop.get("what")))
    ended = (
        f"merged into incident {event.detail.get('into')}"
        if event.kind == "merged_into"
        else "resolved"
    )
    after = stop.get("after_s")
    when = (
        f"{_minutes(after)} after the alert"
        if isinstance(after, int | float) and after >= 0
        else "before its alert went out"
    )
    return {
        "what": f"tier {stop.get('tier')} SLA ({stop.get('what')})",
        "kind": "sla",
        "tier": stop.get("tier"),
        "due_at": stop.get("deadline"),
        "done_at": None,
        "outcome": "not needed",
        "note": f"{ended} {when}, before the {_minutes(stop.get('target_s'))} deadline, "
        f"without {waited}",
    }


def _minutes(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "?"
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.0f} min"


def episodes(incident: Incident, events: list[IncidentEvent]) -> list[dict[str, Any]]:
    """The incident's episodes, in order: from its open, then from each reopen (an upgrade
    of an incident no longer open: ``incidents.is_reopen``), each with its own ack and
    resolve and its time to acknowledge counted from its own start. The current episode's
    ack and resolve are the incident's; an earlier one's are its first ``acknowledged``
    and last ``resolved`` event (the reopen cleared them on the incident). ``events``: the
    timeline in time order."""
    rows: list[dict[str, Any]] = [{"started_at": incident.opened_at, "reopened_from": None}]
    for event in events:
        if not incidents.own_event(event):
            continue  # a merged incident's, moved here
        if incidents.is_reopen(event):
            rows.append({"started_at": event.at, "reopened_from": event.detail.get("was")})
        elif event.kind == "acknowledged":
            rows[-1].setdefault("acked", (event.at, event.actor))
        elif event.kind == "resolved":
            rows[-1]["resolved"] = (event.at, event.actor)
    rows[-1]["acked"] = (incident.acked_at, incident.acked_by)
    rows[-1]["resolved"] = (incident.resolved_at, incident.resolved_by)
    out = []
    for row in rows:
        acked_at, acked_by = row.get("acked", (None, None))
        resolved_at, resolved_by = row.get("resolved", (None, None))
        out.append(
            {
                "started_at": _iso(row["started_at"]),
                "reopened_from": row["reopened_from"],
                "acknowledged_at": _iso(acked_at),
                "acknowledged_by": acked_by,
                "time_to_ack_s": _seconds(row["started_at"], acked_at),
                "resolved_at": _iso(resolved_at),
                "resolved_by": resolved_by,
            }
        )
    return out


# the kinds of event the report's "when", episodes and SLA line read (``episodes``,
# ``_sla_not_needed``): a few per incident, however long its timeline
STATUS_KINDS = ("upgraded", "acknowledged", "resolved", "merged_into")
CHUNK = 500  # timeline rows read per query while the report's lists are written out
# a session to read one chunk with (``async_sessionmaker``: a new one each time, so no
# connection is held while the client reads a long report)
Opener = Callable[[], AbstractAsyncContextManager[AsyncSession]]


@dataclass(frozen=True)
class Head:
    """What the report holds apart from its two lists that grow with the incident (who
    did what, the timeline): bounded, read at once. ``top``: the report's first keys
    (incident, when, episodes, tier history, roles, deadlines and their summary);
    ``actors``: the people who acted, in report order; ``evidence``: its section."""

    incident_id: int
    top: dict[str, Any]
    actors: list[str]
    evidence: dict[str, Any]


async def head(session: AsyncSession, incident_id: int, now: datetime) -> Head:
    """The report's bounded part (``IncidentNotFound`` when missing); deadlines of an
    incident not yet resolved are judged at ``now``.

    ``when`` is the incident as it stands: ``acknowledged_at`` and ``resolved_at`` are
    those of its current episode (a reopen clears them), and so is ``time_to_ack_s``,
    counted from the episode's start: ``reopened_at`` (its last reopen; null when it was
    never reopened, then from ``opened_at``); before, it counted from the first open even
    after a reopen. ``time_to_resolve_s`` is the incident's whole life, from its first
    open to its last resolve. ``episodes`` lists every episode (the open, each reopen)
    with its own ack, time to ack and resolve; ``reopens`` counts the reopens. Reads the
    status events only, not the whole timeline."""
    incident = await service.incident_row(session, incident_id)  # (not its deliveries)
    now_ref = judged_at(incident, now)
    events: list[IncidentEvent] = list(
        await session.scalars(
            select(IncidentEvent)
            .where(IncidentEvent.incident_id == incident_id, IncidentEvent.kind.in_(STATUS_KINDS))
            .order_by(IncidentEvent.at, IncidentEvent.id)
        )
    )
    episode_list = episodes(incident, events)
    current = episode_list[-1]
    tiers = (
        await session.scalars(
            select(TierChange)
            .where(TierChange.incident_id == incident_id)
            .order_by(TierChange.at, TierChange.id)
        )
    ).all()
    roles = await service.roles_of(session, incident_id)
    tasks = await service.tasks_of(session, incident_id)
    found = await evidence_service.collect(session, incident_id, limit=5)
    deadlines: list[dict[str, Any]] = [
        {
            "what": task.title,
            "kind": "task",
            "tier": task.tier,
            "team": task.team,
            "owner_role": task.owner_role,
            "due_at": _iso(task.due_at),
            "done_at": _iso(task.finished_at) if task.status == "done" else None,
            "done_by": task.finished_by,
            "outcome": outcome(task, now_ref),
        }
        for task in tasks
    ]
    if incident.sla_met_by is not None and (incident.sla_due_at or incident.sla_breached_at):
        met_at = incident.sla_met_at
        due = incident.sla_due_at
        if incident.sla_breached_at is not None or (met_at and due and met_at > due):
            result = "missed"
        elif met_at is not None:
            result = "met"
        else:
            result = "overdue" if due is not None and now_ref > due else "pending"
        deadlines.append(
            {
                "what": f"tier {incident.tier} SLA ({incident.sla_met_by})",
                "kind": "sla",
                "tier": incident.tier,
                "due_at": _iso(due),
                "done_at": _iso(met_at),
                "outcome": result,
            }
        )
    elif (ended := _sla_not_needed(incident, events)) is not None:
        deadlines.append(ended)
    actors = await session.scalars(
        select(IncidentEvent.actor)
        .where(
            IncidentEvent.incident_id == incident_id, IncidentEvent.actor.not_in(sorted(MACHINES))
        )
        .distinct()
    )
    counts = {
        o: sum(1 for d in deadlines if d["outcome"] == o) for o in ("met", "missed", "overdue")
    }
    top = {
        "incident": {
            "id": incident.id,
            "title": incident.title,
            "watch_id": incident.watch_id,
            "story_id": incident.story_id,
            "brand": incident.brand,
            "tier": incident.tier,
            "status": incident.status,
            "drill": incident.drill,
            "explanation": incident.explanation,
            "merged_into_id": incident.merged_into_id,
        },
        "when": {
            "opened_at": _iso(incident.opened_at),
            "acknowledged_at": _iso(incident.acked_at),
            "acknowledged_by": incident.acked_by,
            "responded_at": _iso(incident.responded_at),
            "resolved_at": _iso(incident.resolved_at),
            "resolved_by": incident.resolved_by,
            "closed_at": _iso(incident.closed_at),
            "closed_by": incident.closed_by,
            "reopened_at": current["started_at"] if len(episode_list) > 1 else None,
            "reopens": len(episode_list) - 1,
            "time_to_ack_s": current["time_to_ack_s"],
            "time_to_resolve_s": _seconds(incident.opened_at, incident.resolved_at),
        },
        "episodes": episode_list,
        "tier_history": [
            {"at": _iso(t.at), "from_tier": t.from_tier, "tier": t.tier, "signal_id": t.signal_id}
            for t in tiers
        ],
        "roles": [
            {
                "role": r.role,
                "person": r.person,
                "assigned_by": r.assigned_by,
                "assigned_at": _iso(r.assigned_at),
            }
            for r in roles
        ],
        "deadlines": deadlines,
        "deadlines_summary": counts,
    }
    evidence = {
        "total_mentions": found.total_mentions,
        "sentiment_mix": found.sentiment_mix,
        "peak_heat": found.peak(),
        "heat_curve": [
            {"at": _iso(p.at), "tier": p.tier, "story_id": p.story_id, **p.heat}
            for p in found.heat_curve
        ],
        "top_mentions": [
            {
                "author": m.author,
                "followers": m.followers,
                "label": m.label,
                "url": m.url,
                "text": m.text,
                "created_at": _iso(m.created_at),
            }
            for m in found.mentions
        ],
    }
    return Head(incident_id, top, sorted(actors), evidence)


async def _chunks(
    open_session: Opener, incident_id: int, *where: ColumnElement[bool]
) -> AsyncIterator[list[Row[Any]]]:
    """The incident's timeline events (those matching ``where``) in time order, ``CHUNK``
    at a time: each chunk one query, after the last event of the one before (keyset: an
    event added while this runs is read when it sorts after those already read)."""
    e = IncidentEvent
    after: tuple[datetime, int] | None = None
    while True:
        query = select(e.id, e.at, e.kind, e.actor, e.detail).where(e.incident_id == incident_id)
        if after is not None:
            query = query.where(or_(e.at > after[0], and_(e.at == after[0], e.id > after[1])))
        async with open_session() as session:
            rows = list(
                (await session.execute(query.where(*where).order_by(e.at, e.id).limit(CHUNK))).all()
            )
        if rows:
            yield rows
        if len(rows) < CHUNK:
            return
        after = (rows[-1].at, rows[-1].id)


async def actions(
    open_session: Opener, incident_id: int, actor: str
) -> AsyncIterator[list[dict[str, Any]]]:
    """What ``actor`` did, in time order, in chunks (the report's ``who_did_what``)."""
    async for rows in _chunks(open_session, incident_id, IncidentEvent.actor == actor):
        yield [
            {"at": _iso(r.at), "kind": r.kind, "what": summarize(r.kind, r.detail)} for r in rows
        ]


async def timeline(open_session: Opener, incident_id: int) -> AsyncIterator[list[dict[str, Any]]]:
    """Every event of the timeline, in time order, in chunks (the report's ``timeline``)."""
    async for rows in _chunks(open_session, incident_id):
        yield [
            {
                "at": _iso(r.at),
                "kind": r.kind,
                "actor": r.actor,
                "what": summarize(r.kind, r.detail),
            }
            for r in rows
        ]


def same_session(session: AsyncSession) -> Opener:
    """An ``Opener`` that reads every chunk in ``session`` (left open)."""

    @asynccontextmanager
    async def opened() -> AsyncIterator[AsyncSession]:
        yield session

    return opened


async def build(session: AsyncSession, incident_id: int, now: datetime) -> dict[str, Any]:
    """The whole report as one JSON-ready dict (``head``, then every action of every
    person and every timeline event), the same as ``stream_json`` writes. It holds every
    event in memory: the API streams the report instead."""
    found = await head(session, incident_id, now)
    opener = same_session(session)
    people = [
        {
            "actor": actor,
            "actions": [a async for rows in actions(opener, incident_id, actor) for a in rows],
        }
        for actor in found.actors
    ]
    events = [e async for rows in timeline(opener, incident_id) for e in rows]
    return {
        **found.top,
        "who_did_what": people,
        "evidence": found.evidence,
        "timeline": events,
        "timeline_events": len(events),
    }


def _json(value: object) -> str:
    # as the API writes any JSON answer (starlette's JSONResponse)
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


async def stream_json(found: Head, open_session: Opener) -> AsyncIterator[str]:
    """The report as JSON text, in pieces: ``build``'s dict, written as it is read (the
    lists a chunk at a time, so memory does not grow with the incident)."""
    yield "{" + ",".join(f"{_json(k)}:{_json(v)}" for k, v in found.top.items())
    yield ',"who_did_what":['
    for n, actor in enumerate(found.actors):
        yield ("," if n else "") + '{"actor":' + _json(actor) + ',"actions":['
        sep = ""
        async for acts in actions(open_session, found.incident_id, actor):
            yield sep + ",".join(_json(a) for a in acts)
            sep = ","
        yield "]}"
    yield '],"evidence":' + _json(found.evidence) + ',"timeline":['
    count = 0
    async for events in timeline(open_session, found.incident_id):
        yield ("," if count else "") + ",".join(_json(e) for e in events)
        count += len(events)
    yield '],"timeline_events":' + str(count) + "}"


async def stream_markdown(found: Head, open_session: Opener) -> AsyncIterator[str]:
    """The report as Markdown, in pieces: the text ``markdown`` makes of ``build``'s dict."""
    yield _lines(_md_top(found.top))
    for actor in found.actors:
        yield _md_person(actor)
        sep = ""
        async for acts in actions(open_session, found.incident_id, actor):
            yield sep + _ACTIONS_SEP.join(_md_action(a) for a in acts)
            sep = _ACTIONS_SEP
        yield "\n"
    if not found.actors:
        yield _lines([NOBODY])
    yield _lines(_md_evidence(found.evidence))
    count = 0
    async for events in timeline(open_session, found.incident_id):
        yield _lines([_md_event(e) for e in events])
        count += len(events)
    yield _lines(_md_end(count))


def md(value: object, limit: int = 500) -> str:
    """Text as inert Markdown: one line, control and format characters (ESC sequences,
    bidi overrides, zero-width characters) dropped, every markup character escaped."""
    raw = str(value if value is not None else "-")
    text = " ".join(escape.clean(raw, len(raw)).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return _MD_SPECIAL.sub(r"\\\1", text)


def _took(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:g} s"


def _lines(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


NOBODY = "- nobody acted"
_ACTIONS_SEP = "; "


def _md_person(actor: str) -> str:
    return f"- **{md(actor)}**: "


def _md_action(action: dict[str, Any]) -> str:
    return f"{md(action['at'])} {md(action['what'], 200)}"


def _md_event(event: dict[str, Any]) -> str:
    return f"| {md(event['at'])} | {md(event['what'], 300)} | {md(event['actor'])} |"


def _md_end(count: int) -> list[str]:
    # the last line: a report cut short (a stream broken off) lacks it
    return ["", f"End of the report: {count} timeline event(s), the whole timeline."]


def markdown(report: dict[str, Any]) -> str:
    """``build``'s dict as Markdown (the text ``stream_markdown`` writes)."""
    out = _md_top(report)
    for person in report["who_did_what"]:
        actions_md = _ACTIONS_SEP.join(_md_action(a) for a in person["actions"])
        out.append(_md_person(person["actor"]) + actions_md)
    if not report["who_did_what"]:
        out.append(NOBODY)
    out += _md_evidence(report["evidence"])
    out += [_md_event(e) for e in report["timeline"]]
    out += _md_end(report.get("timeline_events", len(report["timeline"])))
    return _lines(out)


def _md_top(report: dict[str, Any]) -> list[str]:
    """The Markdown up to the "Who did what" heading (and its blank line)."""
    inc, when = report["incident"], report["when"]
    out = [
        f"# Post-incident report: incident {inc['id']}" + (" (DRILL)" if inc["drill"] else ""),
        "",
        f"**{md(inc['title'])}**: watch {md(inc['watch_id'])}, brand {md(inc['brand'])}, "
        f"final tier {inc['tier']}, status {inc['status']}.",
        "",
        "## What happened",
        "",
        md(inc["explanation"], 2000),
        "",
    ]
    if inc["merged_into_id"]:
        out += [f"Merged into incident {inc['merged_into_id']}.", ""]
    out += ["## When", "", "| milestone | at | by |", "|---|---|---|"]
    reopened = [("reopened", when["reopened_at"], None)] if when.get("reopened_at") else []
    for label, at, by in (
        ("opened", when["opened_at"], None),
        *reopened,
        ("acknowledged", when["acknowledged_at"], when["acknowledged_by"]),
        ("first response", when["responded_at"], None),
        ("resolved", when["resolved_at"], when["resolved_by"]),
        ("closed", when["closed_at"], when["closed_by"]),
    ):
        out.append(f"| {label} | {md(at)} | {md(by)} |")
    since = "the last reopen" if when.get("reopened_at") else "the open"
    out += ["", f"Time to acknowledge: {_took(when['time_to_ack_s'])} (since {since})."]
    if len(report.get("episodes", ())) > 1:
        out += [
            "",
            f"Reopened {when['reopens']} time(s); each episode's time to acknowledge counts "
            "from its own start.",
            "",
            "| episode | started | reopened from | acknowledged | time to ack | resolved |",
            "|---|---|---|---|---|---|",
        ]
        out += [
            f"| {n} | {md(e['started_at'])} | {md(e['reopened_from'])} "
            f"| {md(e['acknowledged_at'])} | {_took(e['time_to_ack_s'])} | {md(e['resolved_at'])} |"
            for n, e in enumerate(report["episodes"], start=1)
        ]
    out += ["", "## Tier history", "", "| at | from | to |", "|---|---|---|"]
    out += [f"| {md(t['at'])} | {t['from_tier']} | {t['tier']} |" for t in report["tier_history"]]
    out += ["", "## Roles", ""]
    out += [f"- {md(r['role'])}: {md(r['person'])}" for r in report["roles"]] or ["- none assigned"]
    summary = report["deadlines_summary"]
    needless = sum(1 for d in report["deadlines"] if d["outcome"] == "not needed")
    out += [
        "",
        "## Deadlines",
        "",
        f"{summary['met']} met, {summary['missed']} missed, {summary['overdue']} overdue"
        + (f", {needless} not needed." if needless else "."),
        "",
        "| deadline | due | done | outcome |",
        "|---|---|---|---|",
    ]
    out += [
        f"| {md(d['what'])} | {md(d['due_at'])} | {md(d['done_at'])} | **{d['outcome']}**"
        + (f": {md(d['note'])} |" if d.get("note") else " |")
        for d in report["deadlines"]
    ]
    out += ["", "## Who did what", ""]
    return out


def _md_evidence(ev: dict[str, Any]) -> list[str]:
    """The Evidence section, and the Timeline's heading and table head."""
    mix = ", ".join(f"{k} {v}" for k, v in ev["sentiment_mix"].items())
    out = ["", "## Evidence", "", f"{ev['total_mentions']} mentions kept ({mix})."]
    if ev["peak_heat"]:
        peak = ev["peak_heat"]
        out.append(
            f"Peak heat at {md(peak['at'])}: {peak.get('mentions_window')} mentions in "
            f"{peak.get('window_minutes')} min, {peak.get('unique_authors')} authors, "
            f"reach {peak.get('reach')}."
        )
    out += ["", "Heat curve:", "", "| at | tier | mentions in window | reach | negative |"]
    out.append("|---|---|---|---|---|")
    out += [
        f"| {md(p['at'])} | {p['tier']} | {p.get('mentions_window')} | {p.get('reach')} "
        f"| {p.get('negative_share')} |"
        for p in ev["heat_curve"]
    ]
    out += ["", "Representative mentions:", ""]
    out += [
        f"- {md(m['author'])} ({m['followers'] or 0} followers, {m['label']}): {md(m['text'], 280)}"
        for m in ev["top_mentions"]
    ] or ["- none"]
    out += ["", "## Timeline", "", "| at | what | who |", "|---|---|---|"]
    return out
