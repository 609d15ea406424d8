"""A key scoped to some watches cannot tell another watch's drill, silence, incident or task
from one that does not exist: every route addressed by such an id answers both alike (a 404
for the missing one told the key which ids other watches had, and when they made one).
Unscoped keys still get 404."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi.routing import APIRoute

from api.app import ROUTERS
from core.clock import ManualClock
from tests.access_support import make_template, open_incident
from tests.integration.test_api_scope import ACME, ADMIN, add_drill, entries, scoped_api, silence

MISSING = 999_999
ID_PARAMS = frozenset({"incident_id", "drill_id", "silence_id", "task_id"})


def _answer(r: httpx.Response, number: int) -> tuple[int, str]:
    """The answer with the probed number written as N (the rest must be the same)."""
    return r.status_code, r.text.replace(str(number), "N")


def _incident_calls(incident: int, mine: int, task: int) -> list[tuple[str, str, Any]]:
    """A call of every route under ``/incidents/{incident_id}`` on ``incident``."""
    on = f"/incidents/{incident}"
    return [
        ("GET", on, None),
        ("GET", f"{on}/evidence/items", None),
        ("GET", f"{on}/deliveries", None),
        ("POST", f"{on}/ack", None),
        ("POST", f"{on}/resolve", None),
        ("POST", f"{on}/response", {"kind": "reply"}),
        ("POST", f"{on}/mitigate", None),
        ("POST", f"{on}/close", None),
        ("POST", f"{on}/merge", {"into": mine}),
        ("GET", f"{on}/roles", None),
        ("PUT", f"{on}/roles/incident_lead", {"person": "ann"}),
        ("DELETE", f"{on}/roles/incident_lead", None),
        ("GET", f"{on}/tasks", None),
        ("PATCH", f"{on}/tasks/{task}", {"status": "done"}),
        ("POST", f"{on}/notes", {"text": "seen"}),
        ("GET", f"{on}/timeline", None),
        ("GET", f"{on}/tier-history", None),
        ("GET", f"{on}/evidence", None),
        ("GET", f"{on}/report", None),
        ("GET", f"{on}/template-suggestions", None),
        ("GET", f"{on}/responses", None),
        ("POST", f"{on}/responses", {"template_id": 1}),
    ]


def _template(path: str, ids: dict[int, str]) -> str:
    """``path`` with each number in ``ids`` written as its route's parameter."""
    parts = path.split("/")
    return "/".join(f"{{{ids[int(p)]}}}" if p.isdigit() and int(p) in ids else p for p in parts)


def test_every_route_addressed_by_a_watchs_id_is_probed() -> None:
    """The probes below cover each route with an incident, drill, silence or task id in its
    path: a route added later is to be added to them."""
    routes = {
        (method, route.path)
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute) and ID_PARAMS & route.param_convertors.keys()
        for method in route.methods
    }
    probed = {
        (method, _template(path, {11: "incident_id", 22: "task_id"}))
        for method, path, _ in _incident_calls(11, 33, 22)
    }
    probed |= {("GET", "/drills/{drill_id}/report"), ("DELETE", "/silences/{silence_id}")}
    probed = {(m, p.replace("incident_lead", "{role}")) for m, p in probed}
    assert routes == probed


async def test_another_watchs_drill_answers_as_a_missing_one(
    sqlite_url: str, clock: ManualClock
) -> None:
    async with scoped_api(sqlite_url, clock) as (client, runtime):
        theirs = await add_drill(runtime, clock, "globex")
        for fmt in ("json", "md"):
            seen = await client.get(f"/drills/{theirs}/report?format={fmt}", headers=ACME)
            absent = await client.get(f"/drills/{MISSING}/report?format={fmt}", headers=ACME)
            assert seen.status_code == 403, seen.text
            assert _answer(seen, theirs) == _answer(absent, MISSING)
            assert f"(or drill {MISSING} does not exist)" in absent.json()["detail"]
            assert "globex" not in absent.text
            # an unscoped key sees every watch: a missing drill is a plain 404
            r = await client.get(f"/drills/{MISSING}/report?format={fmt}", headers=ADMIN)
            assert r.status_code == 404 and r.json()["detail"] == f"drill {MISSING} does not exist"


async def test_another_watchs_silence_answers_as_a_missing_one(
    sqlite_url: str, clock: ManualClock
) -> None:
    """Another watch's silence, one that also mutes another watch, one that mutes every
    watch (no watch matcher) and one that does not exist: one answer, which says nothing of
    their matchers."""
    async with scoped_api(sqlite_url, clock) as (client, _):
        stored = []
        for matchers in ({"watch": ["globex"]}, {"watch": ["acme", "globex"]}, {"tier": [3]}):
            r = await client.post("/silences", headers=ADMIN, json=silence(**matchers))
            assert r.status_code == 201, r.text
            stored.append(r.json()["id"])
        absent = await client.delete(f"/silences/{MISSING}", headers=ACME)
        assert absent.status_code == 403, absent.text
        assert absent.json()["detail"] == (
            f"key 'acme-admin' is not scoped to every watch of silence {MISSING} (or silence "
            f"{MISSING} does not exist): it may expire only silences limited to its watches "
            "(acme)"
        )
        for silence_id in stored:
            seen = await client.delete(f"/silences/{silence_id}", headers=ACME)
            assert _answer(seen, silence_id) == _answer(absent, MISSING), seen.text
        r = await client.delete(f"/silences/{MISSING}", headers=ADMIN)
        assert r.status_code == 404 and f"silence {MISSING}" in r.json()["detail"]
        # each probe is refused as the scoped key was answered (and changed nothing)
        refused = await entries(client, ADMIN, "?action=silence.expire&outcome=forbidden")
        assert sorted(e["target_id"] for e in refused["items"]) == sorted(
            str(i) for i in [MISSING, *stored]
        )
        active = (await client.get("/silences", headers=ADMIN)).json()
        assert sorted(s["id"] for s in active) == sorted(stored)


async def test_every_incident_route_answers_another_watchs_id_as_a_missing_one(
    sqlite_url: str, clock: ManualClock
) -> None:
    async with scoped_api(sqlite_url, clock) as (client, runtime):
        mine = await open_incident(runtime, clock, watch="acme")
        other = await open_incident(runtime, clock, watch="globex")
        await make_template(runtime, clock, until="approved")
        tasks = (await client.get(f"/incidents/{other}/tasks", headers=ADMIN)).json()
        task = tasks[0]["id"]
        for (method, path, body), (_, missing_path, missing_body) in zip(
            _incident_calls(other, mine, task),
            _incident_calls(MISSING, mine, MISSING + 1),
            strict=True,
        ):
            seen = await client.request(method, path, headers=ACME, json=body)
            absent = await client.request(method, missing_path, headers=ACME, json=missing_body)
            assert seen.status_code == 403, (method, path, seen.text)
            expected = _answer(absent, MISSING)
            assert _answer(seen, other) == expected, (method, path)
        # another watch's task through the key's own incident: as a task that does not exist
        mine_task = f"/incidents/{mine}/tasks"
        seen = await client.patch(f"{mine_task}/{task}", headers=ACME, json={"status": "done"})
        absent = await client.patch(f"{mine_task}/{MISSING}", headers=ACME, json={"status": "done"})
        assert seen.status_code == 404, seen.text
        assert _answer(seen, task) == _answer(absent, MISSING)
