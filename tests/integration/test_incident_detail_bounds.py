"""A days-long incident (thousands of timeline events, evidence mentions and deliveries)
costs the same to read as a new one: ``GET /incidents/{id}`` carries the newest items of
each list, their counts and where to page the rest; the post-incident report lists every
event but reads them a chunk at a time. On SQLite and PostgreSQL.

Before, the detail loaded and sent every row (20,000 events, 20,000 mentions and 5,000
deliveries: 9 MB in 1.6 s, 115 MB of Python memory), and the report held the whole
timeline in memory."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from alerts.models import Delivery, IncidentEvent, IncidentEvidence
from alerts.workflow import report
from api.runtime import Runtime
from core.clock import ManualClock
from core.db import unit_of_work
from tests.access_support import api_on, key_headers, open_incident, role_api

VIEWER = key_headers("viewer")
RESPONDER = key_headers("responder")
EVENTS, MENTIONS, DELIVERIES = 260, 230, 220
CHUNK = 500  # the report's timeline events read per statement (report.CHUNK)


async def ok(response: httpx.Response, code: int = 200) -> Any:
    assert response.status_code == code, response.text
    return response.json()


async def long_incident(
    runtime: Runtime, clock: ManualClock, *, events: int = EVENTS, people: int = 0
) -> int:
    """A tier-3 incident with ``events`` more timeline events (every ``people``-th of them
    by a person, "bob"), ``MENTIONS`` evidence mentions and ``DELIVERIES`` deliveries,
    inserted in bulk, each later than the one before."""
    incident = await open_incident(runtime, clock, tier=3)
    start = clock.now()
    assert runtime.sessions is not None
    async with unit_of_work(runtime.sessions) as session:
        await session.execute(
            insert(IncidentEvent),
            [
                {
                    "incident_id": incident,
                    "at": start + timedelta(seconds=i + 1),
                    "kind": "note" if people and i % people == 0 else "alert_delivered",
                    "actor": "bob" if people and i % people == 0 else "system",
                    "detail": {"text": f"note {i}"}
                    if people and i % people == 0
                    else {"channel": f"chat-{i}"},
                }
                for i in range(events)
            ],
        )
        await session.execute(
            insert(IncidentEvidence),
            [
                {
                    "incident_id": incident,
                    "mention_id": f"bsky:{i}",
                    "url": f"https://bsky.app/p/{i}",
                    "text": f"post {i}",
                    "author": f"@user{i}",
                    "followers": i,
                    "created_at": start,
                    "label": ("negative", "neutral")[i % 2],
                }
                for i in range(MENTIONS)
            ],
        )
        await session.execute(
            insert(Delivery),
            [
                {
                    "incident_id": incident,
                    "tier": 3,
                    "channel": f"chat-{i}",
                    "channel_type": "slack",
                    "reason": "escalation",
                    "payload": {"text": "not an alert: no ack or resolve follows it up"},
                    "status": "sent",
                    "attempts": 1,
                    "created_at": start,
                    "sent_at": start,
                    "dedupe_key": f"long-{incident}-{i}",
                }
                for i in range(DELIVERIES)
            ],
        )
    clock.advance(events + 1)
    return incident


async def every_page(client: httpx.AsyncClient, path: str) -> tuple[list[Any], int]:
    """Every item of a paged list (``Page``), and its total."""
    items: list[Any] = []
    while True:
        page = await ok(await client.get(f"{path}?limit=100&offset={len(items)}", headers=VIEWER))
        items += page["items"]
        if not page["items"] or len(items) >= page["total"]:
            return items, page["total"]


@contextmanager
def rows_read(engine: AsyncEngine | None) -> Iterator[list[tuple[str, int]]]:
    """Each statement run meanwhile, with the number of rows it returned (both async
    drivers fetch a statement's rows into the cursor's ``_rows`` as it runs)."""
    assert engine is not None
    seen: list[tuple[str, int]] = []

    def after(_conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        rows = getattr(cursor, "_rows", None)
        assert rows is not None, f"{type(cursor)} keeps no _rows: count them another way"
        seen.append((statement, len(rows)))

    event.listen(engine.sync_engine, "after_cursor_execute", after)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "after_cursor_execute", after)


async def test_the_detail_has_the_newest_items_the_totals_and_where_the_rest_are(
    db_url: str, clock: ManualClock
) -> None:
    async with api_on(db_url, clock) as (client, runtime):
        incident = await long_incident(runtime, clock)
        detail = await ok(await client.get(f"/incidents/{incident}", headers=VIEWER))
        base = f"/incidents/{incident}"
        assert detail["pages"] == {
            "timeline": f"{base}/timeline",
            "evidence": f"{base}/evidence/items",
            "deliveries": f"{base}/deliveries",
        }
        for name, count in (
            ("timeline", EVENTS),
            ("evidence", MENTIONS),
            ("deliveries", DELIVERIES),
        ):
            everything, total = await every_page(client, detail["pages"][name])
            assert total == detail[f"{name}_total"] == len(everything), name
            assert total >= count
            # the newest 100, in the order of the pages: the pages' last 100 items
            newest = detail[name]
            assert len(newest) == 100, name
            assert everything[-100:] == newest, name  # the same items, the same fields
            # the rest: the page before them
            rest = await ok(
                await client.get(
                    f"{detail['pages'][name]}?offset=0&limit={total - 100}", headers=VIEWER
                )
            )
            assert rest["items"] + everything[-100:] == everything, name
        assert detail["timeline"][-1]["detail"] == {"channel": f"chat-{EVENTS - 1}"}
        assert detail["evidence"][-1]["mention_id"] == f"bsky:{MENTIONS - 1}"
        assert detail["deliveries"][-1]["channel"] == f"chat-{DELIVERIES - 1}"
        assert detail["deliveries"][0]["channel"] == f"chat-{DELIVERIES - 100}"
        # the fields every client read are all there, as before
        assert {"id", "status", "tier", "acked_at"} <= detail.keys()

        few = await ok(await client.get(f"/incidents/{incident}?limit=3", headers=VIEWER))
        assert [len(few[n]) for n in ("timeline", "evidence", "deliveries")] == [3, 3, 3]
        assert few["timeline"] == detail["timeline"][-3:]
        assert few["timeline_total"] == detail["timeline_total"]
        none = await ok(await client.get(f"/incidents/{incident}?limit=0", headers=VIEWER))
        assert (none["timeline"], none["evidence"], none["deliveries"]) == ([], [], [])
        assert none["evidence_total"] == MENTIONS
        for bad in ("limit=1001", "limit=-1", "limit=x"):
            r = await client.get(f"/incidents/{incident}?{bad}", headers=VIEWER)
            assert r.status_code == 422, (bad, r.text)
        for path in ("evidence/items", "deliveries"):
            r = await client.get(f"/incidents/99999/{path}", headers=VIEWER)
            assert r.status_code == 404, r.text
            r = await client.get(f"{base}/{path}?limit=501", headers=VIEWER)
            assert r.status_code == 422, r.text
            assert (await client.get(f"{base}/{path}")).status_code == 401


async def test_an_embedded_event_is_the_paged_one(db_url: str, clock: ManualClock) -> None:
    """The events ``GET /incidents/{id}`` embeds lacked the ``id`` and ``category`` of the
    same events read from ``pages.timeline``: a client that paged back and merged the two
    lists had two shapes, and nothing to tell an event already seen by. Now each embedded
    event is the paged one, field for field."""
    async with api_on(db_url, clock) as (client, runtime):
        incident = await open_incident(runtime, clock, tier=2)
        clock.advance(60)
        await ok(await client.post(f"/incidents/{incident}/ack", headers=RESPONDER))
        note = await ok(
            await client.post(
                f"/incidents/{incident}/notes", json={"text": "called them"}, headers=RESPONDER
            ),
            201,
        )
        detail = await ok(await client.get(f"/incidents/{incident}?limit=3", headers=VIEWER))
        embedded = detail["timeline"]
        assert [e["kind"] for e in embedded[-2:]] == ["acknowledged", "note"]
        assert embedded[-1] == note  # as the note's own answer gave it
        paged, total = await every_page(client, detail["pages"]["timeline"])
        assert total == detail["timeline_total"] > 3
        by_id = {e["id"]: e for e in paged}
        for event in embedded:
            assert event == by_id[event["id"]]
        assert embedded == paged[-3:]
        assert {e["category"] for e in embedded[-2:]} == {"status", "note"}
        # the category is the one the timeline filters on
        statuses = await ok(
            await client.get(f"{detail['pages']['timeline']}?category=status", headers=VIEWER)
        )
        assert embedded[-2] in statuses["items"]


async def test_the_detail_reads_no_more_rows_than_it_returns(
    db_url: str, clock: ManualClock
) -> None:
    """Each list is read with a LIMIT (newest first) and counted in SQL: no statement
    returns more rows than the items asked for, and a delivery's payload (the rendered
    alert, never shown) is not read."""
    async with api_on(db_url, clock) as (client, runtime):
        incident = await long_incident(runtime, clock)
        for limit, query in ((100, ""), (7, "?limit=7")):
            with rows_read(runtime.engine) as seen:
                detail = await ok(await client.get(f"/incidents/{incident}{query}", headers=VIEWER))
            assert len(detail["timeline"]) == limit
            assert seen, "the listener saw the reads"
            most = max(seen, key=lambda s: s[1])
            assert most[1] <= limit, most
            assert sum(n for _, n in seen) <= 3 * limit + 10, seen
            assert not [s for s, _ in seen if "alert_deliveries.payload" in s]


async def test_the_report_lists_every_event_and_its_two_forms_agree(
    db_url: str, clock: ManualClock
) -> None:
    """A report of 1,300 events (three chunks): every event is in it, in time order, and
    every action of the person among them; the JSON is ``report.build``'s dict, the
    Markdown ``report.markdown`` of it, ending with the count of events. No statement
    read more than a chunk."""
    async with api_on(db_url, clock) as (client, runtime):
        incident = await long_incident(runtime, clock, events=1300, people=7)
        note = {"text": "called the author"}
        await ok(
            await client.post(f"/incidents/{incident}/notes", headers=RESPONDER, json=note), 201
        )
        timeline = f"/incidents/{incident}/timeline?limit=1"
        total = (await ok(await client.get(timeline, headers=VIEWER)))["total"]
        with rows_read(runtime.engine) as seen:
            r = await client.get(f"/incidents/{incident}/report", headers=VIEWER)
            assert r.status_code == 200 and r.headers["content-type"] == "application/json"
            md = await client.get(f"/incidents/{incident}/report?format=md", headers=VIEWER)
            assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
        most = max(seen, key=lambda s: s[1])
        assert most[1] <= CHUNK, most
        assert report.CHUNK == CHUNK
        data = r.json()
        assert len(data["timeline"]) == data["timeline_events"] == total > 2 * CHUNK
        assert [e["at"] for e in data["timeline"]] == sorted(e["at"] for e in data["timeline"])
        assert data["timeline"][-2]["what"] == f"alert delivered on chat-{1299}"
        people = {p["actor"]: p["actions"] for p in data["who_did_what"]}
        assert sorted(people) == ["bob", "responder"]
        assert len(people["bob"]) == len(range(0, 1300, 7))
        assert people["bob"][-1]["what"] == "note: note 1295"

        assert runtime.sessions is not None
        async with runtime.sessions() as session:
            built = await report.build(session, incident, clock.now())
        assert list(data) == list(built)
        assert data == json.loads(json.dumps(built))
        assert md.text == report.markdown(built)
        assert md.text.endswith(
            f"End of the report: {total} timeline event(s), the whole timeline.\n"
        )
        assert md.text.count("| alert delivered on chat") == 1300 - len(people["bob"])


async def test_a_report_cut_short_by_an_error_is_logged_and_not_ended(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """Once the report has begun, an error (the database gone) can only cut it short: the
    answer breaks off without the closing line, and the log says which report."""

    async def broken(*_: Any) -> AsyncIterator[list[dict[str, Any]]]:
        yield [{"at": "2026-01-05T09:00:00+00:00", "kind": "note", "actor": "x", "what": "y"}]
        raise OSError("the database went away")

    async with role_api(tmp_path, clock) as (client, runtime):
        incident = await open_incident(runtime, clock, tier=2)
        monkeypatch.setattr(report, "timeline", broken)
        with pytest.raises(OSError, match="went away"):
            await client.get(f"/incidents/{incident}/report?format=md", headers=VIEWER)
    assert f"the report of incident {incident} was cut short" in caplog.text
