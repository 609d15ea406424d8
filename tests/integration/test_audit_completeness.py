"""The audit log is complete and trustworthy: every state-changing route is audited (or
exempt, with a reason), attempts refused to an authenticated caller (403, 409) are recorded
with who tried what, entries cannot be edited or deleted, and the time filter's bounds are
what the documentation says."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from alerts.acklinks import AckLinkConfig
from api import audit
from api.app import ROUTERS, create_app
from api.runtime import ALL_ROLES, Runtime
from api.settings import Settings, SlackAppConfig
from core.clock import ManualClock
from core.db import make_engine, unit_of_work, upgrade_database
from tests.access_support import key_headers, make_template, open_incident, role_api
from tests.integration.test_acklinks import (
    ACK_SECRET,
    SLACK_SECRET,
    Api,
    click,
    mint,
    new_incident,
    serve,
    slack_request,
)

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

EXEMPT: dict[tuple[str, str], str] = {
    ("POST", "/ingest/mentions"): "signed ingestion: machines deliver mentions (data, not a "
    "person's decision); counted in metrics and the bus journal, its signature is no person",
    ("POST", "/templates/{template_id}/preview"): "renders text and changes nothing "
    "(any key may; 'nothing is recorded')",
}
"""State-changing methods that are not audited, and why. Anything else must be audited."""


def _mutating_routes(routes: list[Any]) -> dict[tuple[str, str], APIRoute]:
    found: dict[tuple[str, str], APIRoute] = {}
    for route in routes:
        if isinstance(route, APIRoute):
            for method in route.methods & MUTATING:
                found[(method, route.path)] = route
    return found


def test_every_state_changing_route_is_audited_or_exempt(tmp_path: Path) -> None:
    runtime = Runtime(Settings(), roles=ALL_ROLES, clock=ManualClock())
    served = _mutating_routes(list(create_app(runtime).routes))
    declared = _mutating_routes([r for router in ROUTERS for r in router.routes])
    assert served.keys() <= declared.keys(), "a route the app serves is not in api.app.ROUTERS"
    assert set(EXEMPT) <= declared.keys(), "an exemption names a route that does not exist"
    missing = []
    for key, route in sorted(declared.items()):
        if key in EXEMPT:
            assert audit.attempt_of(route.endpoint) is None, f"{key} is exempt and audited"
            continue
        attempt = audit.attempt_of(route.endpoint)
        # declared, and served by the route class that records refused attempts
        if attempt is None or not isinstance(route, audit.AuditedRoute):
            missing.append(key)
            continue
        assert re.fullmatch(r"[a-z_]+(\.[a-z_]+)+", attempt.action), attempt
        params = set(re.findall(r"{(\w+)}", attempt.target))
        assert params <= set(route.param_convertors), (key, attempt.target)
    assert missing == [], f"state-changing routes neither audited nor exempt: {missing}"


# a viewer may change nothing: each of these is refused by the role check (403)
PATH_VALUES = {"incident_id": "7", "template_id": "3", "number": "2", "silence_id": "5"}
PATH_VALUES |= {"task_id": "4", "role": "incident_lead"}


async def test_a_refused_role_is_audited_on_every_keyed_route(
    tmp_path: Path, clock: ManualClock
) -> None:
    keyed = {
        key: route
        for key, route in _mutating_routes([r for router in ROUTERS for r in router.routes]).items()
        if key not in EXEMPT and not key[1].startswith(("/ack", "/slack"))
    }
    assert len(keyed) >= 20
    async with role_api(tmp_path, clock) as (client, _):
        for (method, path), route in sorted(keyed.items()):
            url = path.format(**PATH_VALUES)
            r = await client.request(method, url, headers=key_headers("viewer"), json={})
            assert r.status_code == 403, (method, url, r.text)
            attempt = audit.attempt_of(route.endpoint)
            assert attempt is not None
            page = (await client.get("/audit?limit=1", headers=key_headers("admin"))).json()
            entry = page["items"][0]
            expected_target = attempt.target.format(**PATH_VALUES)
            assert (entry["actor"], entry["role"], entry["outcome"]) == (
                "viewer",
                "viewer",
                "forbidden",
            ), (method, url)
            assert (entry["action"], entry["target_type"], entry["target_id"]) == (
                attempt.action,
                attempt.target_type,
                expected_target,
            ), (method, url)
            assert "'viewer' role" in entry["detail"]
            assert entry["before"] is None and entry["after"] is None
        total = (await client.get("/audit", headers=key_headers("admin"))).json()["total"]
        assert total == len(keyed)
        # nobody authenticated: nothing to attribute, nothing recorded
        assert (await client.post("/incidents/7/ack")).status_code == 401
        r = await client.post("/incidents/7/ack", headers={"X-API-Key": "not-a-key"})
        assert r.status_code == 401
        assert (await client.get("/audit", headers=key_headers("admin"))).json()["total"] == total


async def test_a_conflict_is_audited_with_who_tried_what(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with role_api(tmp_path, clock) as (client, runtime):
        incident = await open_incident(runtime, clock)
        responder = key_headers("responder")
        assert (await client.post(f"/incidents/{incident}/resolve", headers=responder)).is_success
        r = await client.post(f"/incidents/{incident}/ack", headers=responder)
        assert r.status_code == 409
        page = (await client.get("/audit?outcome=conflict", headers=key_headers("admin"))).json()
        assert page["total"] == 1
        entry = page["items"][0]
        assert (entry["actor"], entry["action"], entry["target_id"]) == (
            "responder",
            "incident.acknowledge",
            str(incident),
        )
        assert entry["detail"] == r.json()["detail"]
        # the domain's 403 (four eyes: legal may not approve what it wrote) is audited too
        new = {"name": "legal-wrote-it", "kind": "holding_statement", "lang": "en"}
        new |= {"min_tier": 1, "max_tier": 3, "body": "We are looking into it."}
        r = await client.post("/templates", headers=key_headers("legal"), json=new)
        assert r.status_code == 201, r.text
        template = r.json()["id"]
        base = f"/templates/{template}/versions/1"
        assert (await client.post(f"{base}/submit", headers=key_headers("legal"))).is_success
        r = await client.post(f"{base}/approve", headers=key_headers("legal"))
        assert r.status_code == 403, r.text
        page = (await client.get("/audit?outcome=forbidden", headers=key_headers("admin"))).json()
        assert [(e["actor"], e["action"], e["target_id"]) for e in page["items"]] == [
            ("legal", "template.approve", f"{template}/1")
        ]


async def test_a_refused_edit_is_not_an_edit_for_four_eyes(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Four eyes reads the audit log's edits: an edit refused (409, recorded as refused)
    must not bar its would-be editor from approving."""
    async with role_api(tmp_path, clock) as (client, runtime):
        template = await make_template(runtime, clock, until="in_review")
        base = f"/templates/{template}/versions/1"
        r = await client.patch(base, headers=key_headers("legal"), json={"body": "Other words"})
        assert r.status_code == 409, r.text
        r = await client.post(f"{base}/approve", headers=key_headers("legal"))
        assert r.status_code == 200, r.text


@pytest.fixture
async def links(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Api]:
    sections = {
        "ack_links": AckLinkConfig(secret=ACK_SECRET, ttl=timedelta(hours=1)),  # type: ignore[arg-type]
        "slack_app": SlackAppConfig(signing_secret=SLACK_SECRET),  # type: ignore[arg-type]
    }
    async for served in serve(tmp_path, clock, **sections):
        yield served


async def test_refused_link_and_button_acknowledges_are_audited(
    links: Api, clock: ManualClock
) -> None:
    client, runtime = links
    assert runtime.sessions is not None
    incident = await new_incident(runtime, clock)
    path = await mint(runtime, clock, incident)
    now = int(clock.now().timestamp())
    body, headers = slack_request(click("crisiswatch_resolve", incident), now)
    assert (await client.post("/slack/interactions", content=body, headers=headers)).is_success
    assert (await client.post(path)).status_code == 409  # resolved: nothing to acknowledge
    body, headers = slack_request(click("crisiswatch_ack", incident), now)
    answer = await client.post("/slack/interactions", content=body, headers=headers)
    assert answer.status_code == 409
    async with unit_of_work(runtime.sessions) as session:
        entries, _ = await audit.list_entries(session, outcome="conflict")
    got = [(e.actor, e.role, e.action, e.target_id) for e in reversed(entries)]
    assert got == [
        ("Li Lei (via dingtalk link)", "ack_link", "incident.acknowledge", str(incident)),
        ("slack:alice", "slack", "incident.acknowledge", str(incident)),
    ]
    assert all(e.detail and "resolved" in e.detail for e in entries)
    assert all(path.rsplit("/", 1)[1] not in (e.detail or "") for e in entries)  # no token


async def test_audit_entries_cannot_be_edited_or_deleted(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        await upgrade_database(engine)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO audit_log (at, actor, role, action, target_type, target_id) "
                    "VALUES (CURRENT_TIMESTAMP, 'anna', 'legal', 'template.approve', "
                    "'template_version', '1/1')"
                )
            )
        for statement in (
            "UPDATE audit_log SET actor = 'someone else'",
            "DELETE FROM audit_log",
        ):
            with pytest.raises(DBAPIError, match="append-only"):
                async with engine.begin() as conn:
                    await conn.execute(text(statement))
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT actor, outcome FROM audit_log"))).all()
        assert [tuple(r) for r in rows] == [("anna", "ok")]
    finally:
        await engine.dispose()


async def test_the_time_filter_is_inclusive_exclusive_and_zone_aware(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with role_api(tmp_path, clock) as (client, runtime):
        admin = key_headers("admin")
        times = []
        for _ in range(3):
            incident = await open_incident(runtime, clock)
            times.append(clock.now())
            r = await client.post(f"/incidents/{incident}/ack", headers=key_headers("responder"))
            assert r.is_success
            clock.advance(60)
        first, second, _third = times

        async def ids(**params: str) -> list[str]:
            r = await client.get("/audit", params=params, headers=admin)
            assert r.status_code == 200, r.text
            return [e["at"] for e in r.json()["items"]]

        everything = await ids()
        assert len(everything) == 3
        # since is inclusive, until exclusive: [first, second) is the first entry alone
        assert len(await ids(since=first.isoformat(), until=second.isoformat())) == 1
        assert len(await ids(since=second.isoformat())) == 2
        assert len(await ids(until=second.isoformat())) == 1
        # the same instant written in another zone selects the same entries
        plus_two = second.astimezone(timezone(timedelta(hours=2)))
        assert await ids(since=plus_two.isoformat()) == await ids(since=second.isoformat())
        r = await client.get(
            "/audit", params={"since": second.replace(tzinfo=None).isoformat()}, headers=admin
        )
        assert r.status_code == 422 and "timezone" in r.text


async def test_no_route_edits_or_deletes_the_audit_log(tmp_path: Path) -> None:
    runtime = Runtime(Settings(), roles=ALL_ROLES, clock=ManualClock())
    for route in create_app(runtime).routes:
        if isinstance(route, APIRoute) and route.path.startswith("/audit"):
            assert route.methods <= {"GET", "HEAD"}, route.path
