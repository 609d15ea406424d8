"""The incident workflow through the HTTP API: errors (404/409/422, never 500), the
timeline's completeness, the post-incident report in JSON and Markdown."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from alerts.escalation import run_step
from alerts.incidents import apply_signal
from api.runtime import Runtime
from core.clock import ManualClock
from core.db import unit_of_work
from core.events import Evidence, HeatFeatures, Signal, WatchMatch
from tests.access_support import api_on, key_headers, make_template, open_incident, role_api

PR = key_headers("pr")
RESPONDER = key_headers("responder")
HOSTILE = "[click](http://evil.example) <script>x</script> # heading @everyone"


async def escalate(runtime: Runtime, clock: ManualClock, incident_id: int) -> None:
    assert runtime.sessions is not None
    async with unit_of_work(runtime.sessions) as session:
        from alerts.models import Incident

        incident = await session.get(Incident, incident_id)
        assert incident is not None and incident.next_escalation_at is not None
        clock.set(incident.next_escalation_at)
        token = incident.escalation_token
        assert await run_step(session, incident_id, token, runtime.settings.alerts, clock.now())


async def hostile_incident(runtime: Runtime, clock: ManualClock) -> int:
    signal = Signal(
        id="acme:hostile#1",
        story_id="acme:hostile",
        story_root="bsky:hostile",
        watch=WatchMatch(id="acme", brand="Acme"),
        tier=2,
        previous_tier=0,
        spread=2,
        heat=HeatFeatures(
            mentions=50,
            mentions_window=50,
            window_minutes=10,
            unique_authors=40,
            reach=90_000,
            negative_share=0.9,
        ),
        explanation="50 negative posts about the X2 battery",
        evidence=(
            Evidence(
                id="bsky:1",
                text=HOSTILE,
                author="@angry",
                followers=5000,
                created_at=clock.now(),
                label="negative",
            ),
        ),
        at=clock.now(),
    )
    assert runtime.sessions is not None
    async with unit_of_work(runtime.sessions) as session:
        incident = await apply_signal(session, signal, runtime.settings.alerts, clock)
        assert incident is not None
        return incident.id


async def ok(response: httpx.Response, code: int = 200) -> Any:
    assert response.status_code == code, response.text
    return response.json()


async def test_errors_are_clear_4xx_never_500(tmp_path: Path, clock: ManualClock) -> None:
    async with role_api(tmp_path, clock) as (client, runtime):
        incident_id = await open_incident(runtime, clock)
        other = await open_incident(runtime, clock, watch="globex")
        base = f"/incidents/{incident_id}"
        checks: list[tuple[str, str, dict[str, Any] | None, int, str]] = [
            ("POST", "/incidents/99999/mitigate", None, 404, "incident 99999 does not exist"),
            ("PUT", "/incidents/99999/roles/pr_owner", {"person": "bob"}, 404, "does not exist"),
            ("GET", "/incidents/99999/report", None, 404, "does not exist"),
            ("PATCH", f"{base}/tasks/99999", {"status": "done"}, 404, "has no task 99999"),
            ("DELETE", f"{base}/roles/legal_reviewer", None, 404, "nobody holds"),
            ("POST", f"{base}/close", None, 409, "resolve it first"),
            ("POST", f"{base}/merge", {"into": incident_id}, 422, "into itself"),
            ("POST", f"{base}/merge", {"into": other}, 409, "different watches"),
            ("PUT", f"{base}/roles/janitor", {"person": "bob"}, 422, "incident_lead"),
            ("PUT", f"{base}/roles/pr_owner", {"person": ""}, 422, "at least 1"),
            ("PUT", f"{base}/roles/pr_owner", {"person": "b", "x": 1}, 422, "Extra inputs"),
            ("POST", f"{base}/notes", {"text": ""}, 422, "at least 1"),
            ("PATCH", f"{base}/tasks/1", {"status": "open"}, 422, "done"),
            ("GET", f"{base}/report?format=pdf", None, 422, "md"),
            ("GET", f"{base}/timeline?kind=nonsense", None, 422, "unknown kind"),
        ]
        wrong = []
        for method, path, body, code, text in checks:
            r = await client.request(method, path, json=body, headers=PR)
            if r.status_code != code or text not in r.text:
                wrong.append(f"{method} {path}: {r.status_code} {r.text[:200]}")
        assert not wrong, "\n".join(wrong)
        # a resolved incident cannot be mitigated: 409 with the way out named
        await ok(await client.post(f"{base}/resolve", headers=PR))
        r = await client.post(f"{base}/mitigate", headers=PR)
        assert r.status_code == 409
        assert r.json()["detail"] == (
            f"incident {incident_id} is resolved; it cannot become mitigating "
            "(from resolved: closed)"
        )


async def run_incident(client: httpx.AsyncClient, runtime: Runtime, clock: ManualClock) -> int:
    """An incident worked end to end through the API; returns its id."""
    incident_id = await hostile_incident(runtime, clock)
    base = f"/incidents/{incident_id}"
    template_id = await make_template(runtime, clock, until="approved")
    await escalate(runtime, clock, incident_id)  # 10 min without an ack
    await ok(await client.post(f"{base}/ack", headers=RESPONDER, json={"note": "on it"}))
    await ok(await client.put(f"{base}/roles/pr_owner", headers=RESPONDER, json={"person": "pat"}))
    await ok(
        await client.put(f"{base}/roles/incident_lead", headers=RESPONDER, json={"person": "lee"})
    )
    await ok(await client.post(f"{base}/notes", headers=RESPONDER, json={"text": HOSTILE}), 201)
    clock.advance(20 * 60)
    body = {"template_id": template_id, "variables": {"product": "X2"}}
    await ok(await client.post(f"{base}/responses", headers=PR, json=body), 201)
    await ok(await client.post(f"{base}/response", headers=PR, json={"kind": "statement"}))
    await ok(await client.post(f"{base}/mitigate", headers=RESPONDER))
    clock.advance(2 * 3600)  # the investigation is opened late
    tasks = await ok(await client.get(f"{base}/tasks", headers=PR))
    assert [(t["key"], t["outcome"]) for t in tasks] == [
        ("publish_statement", "met"),
        ("internal_investigation", "overdue"),
        ("private_reply", "overdue"),  # tier 1's, which a tier 2 has too: due in 2 h
    ]
    investigation = tasks[1]["id"]
    done = await ok(
        await client.patch(
            f"{base}/tasks/{investigation}", headers=RESPONDER, json={"status": "done"}
        )
    )
    assert done["outcome"] == "missed"
    await ok(await client.post(f"{base}/resolve", headers=RESPONDER))
    await ok(await client.post(f"{base}/close", headers=PR, json={"note": "report filed"}))
    return incident_id


async def test_the_timeline_records_every_change_with_actor_and_time(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with role_api(tmp_path, clock) as (client, runtime):
        incident_id = await run_incident(client, runtime, clock)
        page = await ok(
            await client.get(f"/incidents/{incident_id}/timeline?limit=500", headers=PR)
        )
        items = page["items"]
        assert page["total"] == len(items)
        by_kind = {item["kind"]: item for item in items}
        expected_actors = {
            "opened": "detector",
            "task_created": "system",
            "alert_queued": "system",
            "escalated": "system",
            "acknowledged": "responder",
            "role_assigned": "responder",
            "note": "responder",
            "template_used": "pr",
            "responded": "pr",
            "task_updated": "responder",
            "mitigating": "responder",
            "resolved": "responder",
            "closed": "pr",
        }
        assert {k: by_kind[k]["actor"] for k in expected_actors if k in by_kind} == (
            expected_actors
        )
        assert by_kind["template_used"]["category"] == "template"
        assert by_kind["template_used"]["detail"]["approved_by"] == "legal-2"
        assert by_kind["template_used"]["detail"]["approved_at"] is not None
        assert by_kind["note"]["detail"]["text"] == HOSTILE
        times = [item["at"] for item in items]
        assert times == sorted(times)
        # the statement completed its task as the template's use was recorded
        statement = [i for i in items if i["kind"] == "task_updated"]
        assert [i["detail"]["key"] for i in statement] == [
            "publish_statement",
            "internal_investigation",
        ]
        # filtered by category
        notes = await ok(
            await client.get(f"/incidents/{incident_id}/timeline?category=note", headers=PR)
        )
        assert [i["kind"] for i in notes["items"]] == ["note"]
        # every change left an audit row
        audit = await ok(
            await client.get(
                "/audit", params={"target_id": str(incident_id), "limit": 50},
                headers=key_headers("admin"),
            )
        )  # fmt: skip
        actions = {e["action"] for e in audit["items"]}
        assert {
            "incident.acknowledge",
            "incident.role.assign",
            "incident.note",
            "incident.mitigate",
            "incident.task.update",
            "incident.close",
        } <= actions


async def test_the_report_in_json_and_markdown(tmp_path: Path, clock: ManualClock) -> None:
    async with role_api(tmp_path, clock) as (client, runtime):
        incident_id = await run_incident(client, runtime, clock)
        report = await ok(await client.get(f"/incidents/{incident_id}/report", headers=PR))
        assert report["incident"]["status"] == "closed"
        assert report["when"]["acknowledged_by"] == "responder"
        assert report["when"]["time_to_ack_s"] == 600
        assert report["when"]["closed_by"] == "pr"
        outcomes = {d["what"]: d["outcome"] for d in report["deadlines"]}
        assert outcomes == {
            "Publish a legally reviewed statement from the official account": "met",
            "Open an internal investigation": "missed",
            # tier 1's task, which a tier 2 has too: left open past its 2 h at the resolve
            "Reply privately to the author with the standard script": "overdue",
            "tier 2 SLA (responded)": "met",
        }
        assert report["deadlines_summary"] == {"met": 2, "missed": 1, "overdue": 1}
        tiers = {d["what"]: d.get("tier") for d in report["deadlines"] if d["kind"] == "task"}
        assert tiers["Reply privately to the author with the standard script"] == 1
        assert [(t["from_tier"], t["tier"]) for t in report["tier_history"]] == [(0, 2)]
        assert {r["role"]: r["person"] for r in report["roles"]} == {
            "pr_owner": "pat",
            "incident_lead": "lee",
        }
        people = {p["actor"]: [a["kind"] for a in p["actions"]] for p in report["who_did_what"]}
        assert set(people) == {"responder", "pr"}
        assert "template_used" in people["pr"] and "closed" in people["pr"]
        assert "acknowledged" in people["responder"]
        assert report["evidence"]["sentiment_mix"]["negative"] == 1
        assert report["evidence"]["peak_heat"]["mentions_window"] == 50

        r = await client.get(f"/incidents/{incident_id}/report?format=md", headers=PR)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/markdown")
        md = r.text
        assert md.startswith(f"# Post-incident report: incident {incident_id}\n")
        for heading in ("## What happened", "## When", "## Deadlines", "## Who did what"):
            assert heading in md
        assert "2 met, 1 missed, 1 overdue." in md
        assert "v1 \\(approved by legal\\-2\\) used" in md  # Markdown-escaped
        assert "| Open an internal investigation |" in md and "**missed** |" in md
        # mention text and notes are inert: no link, tag or heading gets through
        assert "[click](" not in md and "<script>" not in md
        assert "\\[click\\]\\(http\\:" in md
        assert "\n# heading" not in md


async def test_a_drill_report_says_drill(tmp_path: Path, clock: ManualClock) -> None:
    async with role_api(tmp_path, clock) as (client, runtime):
        incident_id = await open_incident(runtime, clock, drill=True)
        r = await client.get(f"/incidents/{incident_id}/report?format=md", headers=PR)
        assert r.status_code == 200
        assert r.text.splitlines()[0].endswith("(DRILL)")
        clock.advance(timedelta(hours=3).total_seconds())
        report = await ok(await client.get(f"/incidents/{incident_id}/report", headers=PR))
        assert {d["outcome"] for d in report["deadlines"] if d["kind"] == "task"} == {"overdue"}


WORKFLOW_PATHS = ("mitigate", "close", "merge", "roles", "tasks", "notes", "timeline")
ODD_IDS = ("1", "2", "0", "-1", "99999999999999999999", "abc", "%00")
ODD_ROLES = ("pr_owner", "incident_lead", "x", "%00")
ODD_BODIES: tuple[object, ...] = (
    None,
    {},
    [],
    "x",
    {"into": 1},
    {"into": 2},
    {"into": 2**40},
    {"into": "1"},
    {"person": None},
    {"person": "p" * 300},
    {"person": "pat"},
    {"text": "t" * 5000},
    {"text": "note"},
    {"status": "done"},
    {"status": "skipped", "note": None},
    {"note": "n" * 5000},
)


async def test_no_5xx_on_odd_workflow_requests(tmp_path: Path, clock: ManualClock) -> None:
    async with role_api(tmp_path, clock) as (client, runtime):
        await open_incident(runtime, clock)
        await open_incident(runtime, clock, tier=3)
        schema = (await client.get("/openapi.json")).json()
        operations = [
            (method.upper(), path)
            for path, ops in schema["paths"].items()
            if path.startswith("/incidents/{incident_id}/")
            and path.split("/")[3] in (*WORKFLOW_PATHS, "tier-history", "evidence", "report")
            for method in ops
        ]
        assert len(operations) >= 12
        failures = []
        seen: dict[int, int] = {}
        for method, path in operations:
            roles = ODD_ROLES if "{role}" in path else ODD_ROLES[:1]
            for odd, role in itertools.product(ODD_IDS, roles):
                url = path.replace("{incident_id}", odd).replace("{task_id}", odd)
                url = url.replace("{role}", role)
                for body in ODD_BODIES if method != "GET" else (None,):
                    r = await client.request(method, url, headers=key_headers("admin"), json=body)
                    seen[r.status_code] = seen.get(r.status_code, 0) + 1
                    if r.status_code >= 500:
                        failures.append(f"{method} {url} {body!r}: {r.status_code} {r.text}")
        assert not failures, "\n".join(failures[:20])
        assert {200, 404, 409, 422} <= set(seen), seen


async def test_tasks_of_a_resolved_closed_or_merged_incident_are_final(
    tmp_path: Path, clock: ManualClock
) -> None:
    """A task could still be marked done or skipped on a resolved, closed or merged
    incident (its reminders had stopped, the report was judged at the resolve): now 409,
    saying so; the tasks can still be read."""
    async with role_api(tmp_path, clock) as (client, runtime):
        # tier 2: its two playbook tasks and tier 1's private reply
        incident_id = await open_incident(runtime, clock)
        base = f"/incidents/{incident_id}"
        listed = await ok(await client.get(f"{base}/tasks", headers=PR))
        first, second, reply = [t["id"] for t in listed]
        clock.advance(60)
        await ok(await client.patch(f"{base}/tasks/{first}", headers=RESPONDER,
                                    json={"status": "done"}))  # fmt: skip
        await ok(await client.post(f"{base}/resolve", headers=RESPONDER))
        final = (
            f"incident {incident_id} is resolved; its tasks are final: they change only while "
            "the incident is open, acknowledged or mitigating (it must be reopened first: "
            "a higher-tier signal reopens it)"
        )
        for task, status_ in ((second, "done"), (second, "skipped"), (first, "skipped")):
            r = await client.patch(f"{base}/tasks/{task}", headers=RESPONDER,
                                   json={"status": status_, "note": "after the fact"})  # fmt: skip
            assert (r.status_code, r.json()) == (409, {"detail": final})
        r = await client.patch(f"{base}/tasks/99999", headers=RESPONDER, json={"status": "done"})
        assert r.status_code == 404 and "has no task 99999" in r.text
        await ok(await client.post(f"{base}/close", headers=PR))
        r = await client.patch(f"{base}/tasks/{second}", headers=RESPONDER, json={"status": "done"})
        assert r.status_code == 409
        assert r.json()["detail"].startswith(f"incident {incident_id} is closed; its tasks are")
        # reads still work, and nothing changed
        tasks = await ok(await client.get(f"{base}/tasks", headers=key_headers("viewer")))
        assert [(t["id"], t["status"]) for t in tasks] == [
            (first, "done"),
            (second, "open"),
            (reply, "open"),
        ]
        report = await ok(await client.get(f"{base}/report", headers=PR))
        assert [d["outcome"] for d in report["deadlines"] if d["kind"] == "task"] == [
            "met",
            "pending",
            "pending",
        ]
        timeline = await ok(await client.get(f"{base}/timeline?kind=task_updated", headers=PR))
        assert [i["detail"]["task"] for i in timeline["items"]] == [first]
        audit = await ok(
            await client.get(
                "/audit", params={"target_id": str(incident_id), "limit": 50},
                headers=key_headers("admin"),
            )
        )  # fmt: skip
        updates = [e["outcome"] for e in audit["items"] if e["action"] == "incident.task.update"]
        assert updates.count("ok") == 1  # the refused updates are audited as refused (409)
        assert updates.count("conflict") == len(updates) - 1

        # merged: its tasks were cancelled; the answer names the survivor
        merged = await open_incident(runtime, clock)
        survivor = await open_incident(runtime, clock)
        (task, *_) = await ok(await client.get(f"/incidents/{merged}/tasks", headers=PR))
        await ok(await client.post(f"/incidents/{merged}/merge", headers=RESPONDER,
                                   json={"into": survivor}))  # fmt: skip
        r = await client.patch(f"/incidents/{merged}/tasks/{task['id']}", headers=RESPONDER,
                               json={"status": "done"})  # fmt: skip
        assert r.status_code == 409
        assert r.json()["detail"].startswith(
            f"incident {merged} was merged into incident {survivor}; its tasks are final"
        )
        assert f"work on incident {survivor}" in r.json()["detail"]
        # a live incident's tasks still change
        (live, *_) = await ok(await client.get(f"/incidents/{survivor}/tasks", headers=PR))
        await ok(await client.patch(f"/incidents/{survivor}/tasks/{live['id']}",
                                    headers=RESPONDER, json={"status": "skipped"}))  # fmt: skip


async def test_tasks_and_the_report_judge_an_open_task_alike(
    db_url: str, clock: ManualClock
) -> None:
    """``GET /tasks`` judged an open task at the time it was read, the report at the
    resolve: a day after a resolve that came before the task's deadline, the same task read
    "overdue" in one and "pending" in the other. Both now judge at the resolve once the
    incident is resolved (or closed), and at now while it is live."""
    async with api_on(db_url, clock) as (client, runtime):
        # tier 2: two tasks due in 1 h, tier 1's private reply in 2 h
        resolved = await open_incident(runtime, clock)
        live = await open_incident(runtime, clock)
        tasks = await ok(await client.get(f"/incidents/{resolved}/tasks", headers=PR))
        due = max(datetime.fromisoformat(t["due_at"]) for t in tasks)
        clock.advance(10 * 60)  # the resolve, 50 min before the deadline
        await ok(await client.post(f"/incidents/{resolved}/resolve", headers=RESPONDER))

        async def outcomes(incident: int) -> tuple[list[str], list[str]]:
            tasks = await ok(await client.get(f"/incidents/{incident}/tasks", headers=PR))
            report = await ok(await client.get(f"/incidents/{incident}/report", headers=PR))
            deadlines = [d for d in report["deadlines"] if d["kind"] == "task"]
            assert [d["what"] for d in deadlines] == [t["title"] for t in tasks]
            return [t["outcome"] for t in tasks], [d["outcome"] for d in deadlines]

        assert await outcomes(resolved) == (["pending"] * 3, ["pending"] * 3)
        clock.set(due + timedelta(days=1))  # long past the deadline
        assert await outcomes(resolved) == (["pending"] * 3, ["pending"] * 3)
        await ok(await client.post(f"/incidents/{resolved}/close", headers=PR))
        clock.advance(3600)
        assert await outcomes(resolved) == (["pending"] * 3, ["pending"] * 3)
        # a live incident's open tasks are judged now, in both
        assert await outcomes(live) == (["overdue"] * 3, ["overdue"] * 3)
