"""Incident workflow review (3): concurrent merges, merging a live incident into a resolved
one, template uses on merged incidents; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event

from core.clock import ManualClock
from tests.access_support import (
    api_on,
    key_headers,
    make_template,
    open_incident,
    role_api,
)

RESPONDER = key_headers("responder")
PR = key_headers("pr")
VIEWER = key_headers("viewer")
ADMIN = key_headers("admin")


async def ok(response: httpx.Response, code: int = 200) -> Any:
    assert response.status_code == code, response.text
    return response.json()


async def test_two_people_merging_a_pair_each_way_at_once_get_a_merge_and_a_409(
    db_url: str, clock: ManualClock
) -> None:
    """Two responders see the same duplicate pair and merge it, one each way, at the same
    moment. The route locked the incident merged, then the survivor (request order), so
    on PostgreSQL the two transactions deadlocked and one answered 500; now both routes
    lock in id order: one merge, one 409 (that incident is closed by then)."""
    async with api_on(db_url, clock) as (client, runtime):
        pairs = [
            (
                await open_incident(runtime, clock, tier=2),
                await open_incident(runtime, clock, tier=2),
            )
            for _ in range(3)
        ]
        calls = []
        for a, b in pairs:
            calls.append(client.post(f"/incidents/{a}/merge", headers=RESPONDER, json={"into": b}))
            calls.append(client.post(f"/incidents/{b}/merge", headers=RESPONDER, json={"into": a}))
        answers = await asyncio.gather(*calls, return_exceptions=True)
        codes = [a.status_code if isinstance(a, httpx.Response) else repr(a) for a in answers]
        pair_codes = [sorted(map(str, codes[i : i + 2])) for i in (0, 2, 4)]
        assert pair_codes == [["200", "409"]] * 3, codes
        for a, b in pairs:
            merged = [
                (await client.get(f"/incidents/{i}", headers=VIEWER)).json()["merged_into_id"]
                for i in (a, b)
            ]
            assert merged in ([b, None], [None, a])


async def test_a_live_incident_cannot_be_merged_into_a_resolved_one(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Merging a live incident into a resolved one closed the live one (tasks and alerts
    cancelled, its channels told "resolved") and left the story with nothing live: its
    later signals reached the resolved survivor, where a same-tier signal alerts nobody.
    Now 409 with the way out; a resolved incident still merges into a resolved one."""
    async with role_api(tmp_path, clock) as (client, runtime):
        live = await open_incident(runtime, clock, tier=2)
        done = await open_incident(runtime, clock, tier=3)
        await ok(await client.post(f"/incidents/{done}/resolve", headers=RESPONDER))
        await ok(await client.post(f"/incidents/{live}/ack", headers=RESPONDER))
        r = await client.post(f"/incidents/{live}/merge", headers=RESPONDER, json={"into": done})
        assert r.status_code == 409, r.text
        assert r.json()["detail"].startswith(
            f"incident {done} is resolved and incident {live} is acknowledged"
        )
        state = await ok(await client.get(f"/incidents/{live}", headers=VIEWER))
        assert (state["status"], state["merged_into_id"]) == ("acknowledged", None)
        tasks = await ok(await client.get(f"/incidents/{live}/tasks", headers=VIEWER))
        assert {t["status"] for t in tasks} == {"open"}
        audit = await ok(
            await client.get("/audit?action=incident.merge&outcome=conflict", headers=ADMIN)
        )
        assert [e["target_id"] for e in audit["items"]] == [str(live)]
        # once it is resolved too, it merges
        await ok(await client.post(f"/incidents/{live}/resolve", headers=RESPONDER))
        r = await client.post(f"/incidents/{live}/merge", headers=RESPONDER, json={"into": done})
        assert r.json()["merged"]["merged_into_id"] == done, r.text


async def test_a_template_is_not_used_on_an_incident_merged_into_another(
    tmp_path: Path, clock: ManualClock
) -> None:
    """A use on a merged incident was recorded there (201): a closed incident nobody works,
    while its timeline, report and drill measures live on the survivor. Now 409 naming
    the survivor, and nothing is recorded."""
    async with role_api(tmp_path, clock) as (client, runtime):
        merged = await open_incident(runtime, clock, tier=2)
        survivor = await open_incident(runtime, clock, tier=2)
        template = await make_template(runtime, clock, until="approved")
        await ok(
            await client.post(
                f"/incidents/{merged}/merge", headers=RESPONDER, json={"into": survivor}
            )
        )
        use = {"template_id": template, "variables": {"product": "X2"}}
        r = await client.post(f"/incidents/{merged}/responses", headers=PR, json=use)
        assert r.status_code == 409, r.text
        assert f"merged into incident {survivor}" in r.json()["detail"]
        assert (await ok(await client.get(f"/incidents/{merged}/responses", headers=PR)))[
            "total"
        ] == 0
        await ok(await client.post(f"/incidents/{survivor}/responses", headers=PR, json=use), 201)
        timeline = await ok(
            await client.get(f"/incidents/{survivor}/timeline?kind=template_used", headers=PR)
        )
        assert timeline["total"] == 1


async def test_reading_part_of_an_incident_does_not_load_all_of_it(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Each read of a part (a timeline page, its tasks, roles, tier history, evidence,
    responses, template suggestions, a preview with its data) loaded the incident's whole
    timeline, evidence and deliveries first, for a scope check: on an incident with 20,000
    timeline events a 2-byte answer took over a second, a timeline page three. Now only
    the part asked for is read."""
    async with role_api(tmp_path, clock) as (client, runtime):
        incident = await open_incident(runtime, clock, tier=2)
        template = await make_template(runtime, clock, until="approved")
        assert runtime.engine is not None
        statements: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement)

        event.listen(runtime.engine.sync_engine, "before_cursor_execute", seen)
        base = f"/incidents/{incident}"
        reads = {  # the part, and whether it reads the timeline
            "timeline?limit=10": True,
            "report": True,
            "report?format=md": True,
            "tasks": False,
            "roles": False,
            "tier-history": False,
            "evidence?limit=5": False,
            "responses": False,
            "template-suggestions": False,
        }
        for path, timeline in reads.items():
            statements.clear()
            r = await client.get(f"{base}/{path}", headers=VIEWER)
            assert r.status_code == 200, r.text
            unasked = ("alert_deliveries",) if timeline else ("alert_deliveries", "incident_events")
            loaded = [s for s in statements if any(f"FROM {t}" in s for t in unasked)]
            assert not loaded, (path, loaded)
        statements.clear()
        preview = {"incident_id": incident, "variables": {"product": "X2"}}
        await ok(await client.post(f"/templates/{template}/preview", headers=VIEWER, json=preview))
        assert not [s for s in statements if "alert_deliveries" in s or "incident_events" in s]


async def test_the_responses_of_a_survivor_include_those_of_the_incidents_merged_into_it(
    tmp_path: Path, clock: ManualClock
) -> None:
    """A statement used on an incident later merged: its ``template_used`` event moved to
    the survivor's timeline, but the survivor's responses did not list it (total 0), so
    the story's record of what was published was split. Now listed, with its incident."""
    async with role_api(tmp_path, clock) as (client, runtime):
        first = await open_incident(runtime, clock, tier=1)
        second = await open_incident(runtime, clock, tier=2)
        survivor = await open_incident(runtime, clock, tier=3)
        template = await make_template(runtime, clock, until="approved")
        use = {"template_id": template, "variables": {"product": "X2"}}
        used = await ok(
            await client.post(f"/incidents/{first}/responses", headers=PR, json=use), 201
        )
        for merged, into in ((first, second), (second, survivor)):
            r = await client.post(
                f"/incidents/{merged}/merge", headers=RESPONDER, json={"into": into}
            )
            assert r.status_code == 200, r.text
        clock.advance(60)
        mine = await ok(
            await client.post(f"/incidents/{survivor}/responses", headers=PR, json=use), 201
        )
        listed = await ok(await client.get(f"/incidents/{survivor}/responses", headers=VIEWER))
        assert listed["total"] == 2
        assert [(u["id"], u["incident_id"]) for u in listed["items"]] == [
            (mine["id"], survivor),
            (used["id"], first),
        ]
        timeline = await ok(
            await client.get(f"/incidents/{survivor}/timeline?kind=template_used", headers=VIEWER)
        )
        assert sorted(e["detail"]["usage"] for e in timeline["items"]) == [used["id"], mine["id"]]
        # the merged incident still lists its own
        own = await ok(await client.get(f"/incidents/{first}/responses", headers=VIEWER))
        assert [u["id"] for u in own["items"]] == [used["id"]]


async def test_an_audited_change_reads_the_incidents_own_row_only(
    tmp_path: Path, clock: ManualClock
) -> None:
    """The audit log's before and after of a change (ack, mitigate, resolve, roles, ...)
    read the whole incident, its timeline, evidence and deliveries, twice a change: on a
    long incident a note or an ack took seconds. What is kept is the incident's own row."""
    async with role_api(tmp_path, clock) as (client, runtime):
        incident = await open_incident(runtime, clock, tier=2)
        assert runtime.engine is not None
        statements: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement)

        event.listen(runtime.engine.sync_engine, "before_cursor_execute", seen)
        await ok(await client.post(f"/incidents/{incident}/ack", headers=RESPONDER))
        assert statements  # the listener saw the change
        read = [s for s in statements if "FROM incident_evidence" in s]
        assert not read, read
        audit = await ok(
            await client.get("/audit?action=incident.acknowledge", headers=key_headers("admin"))
        )
        entry = audit["items"][0]
        assert (entry["before"]["status"], entry["after"]["status"]) == ("open", "acknowledged")
