"""Goal: every mutating endpoint x every role gives the expected 2xx or 403.

Table-driven: a new endpoint is one ``Case`` (how to make a fresh target, the request, the
roles allowed). ``test_every_mutating_route_is_in_the_matrix`` fails when a mutating route
with API-key access is added without a case. Every allowed call must leave an audit row
naming the key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts import incidents, silences
from alerts.config import Matchers
from alerts.workflow import service as workflow
from api.app import create_app
from api.auth import LEVELS, ROLES
from api.runtime import Runtime
from api.settings import Settings
from core.bus.memory import MemoryBus
from core.clock import ManualClock
from core.db import unit_of_work
from listener.config import WatchConfig
from tests.access_support import key_headers, make_template, open_incident, role_api

Setup = Callable[[Runtime, ManualClock], Awaitable[str]]  # returns the request path

WORKERS = LEVELS["responder"]
AUTHORS = frozenset({"customer_service", "pr", "legal", "admin"})


@dataclass(frozen=True)
class Case:
    method: str
    route: str  # the route's path as FastAPI declares it
    setup: Setup
    allowed: frozenset[str]
    body: dict[str, Any] | None = None
    audited: bool = True  # False: not a mutation (a POST that only computes)


async def _incident(runtime: Runtime, clock: ManualClock, suffix: str) -> str:
    return f"/incidents/{await open_incident(runtime, clock)}/{suffix}"


def _version(until: str, suffix: str) -> Setup:
    async def setup(runtime: Runtime, clock: ManualClock) -> str:
        template_id = await make_template(runtime, clock, until=until)
        return f"/templates/{template_id}/versions/1{suffix}"

    return setup


async def _respond(runtime: Runtime, clock: ManualClock) -> str:
    template_id = await make_template(runtime, clock, until="approved")
    incident_id = await open_incident(runtime, clock)
    _BODIES["respond"] = {"template_id": template_id, "variables": {"product": "X2"}}
    return f"/incidents/{incident_id}/responses"


async def _templates(runtime: Runtime, clock: ManualClock) -> str:
    return "/templates"


async def _preview(runtime: Runtime, clock: ManualClock) -> str:
    return f"/templates/{await make_template(runtime, clock)}/preview"


async def _silences(runtime: Runtime, clock: ManualClock) -> str:
    return "/silences"


async def _silence(runtime: Runtime, clock: ManualClock) -> str:
    assert runtime.sessions is not None
    async with unit_of_work(runtime.sessions) as session:
        silence = silences.create(
            session,
            matchers=Matchers(watch=["acme"]),
            ends_at=clock.now() + timedelta(hours=2),
            author="setup",
            reason="planned maintenance",
            now=clock.now(),
        )
        await session.flush()
        return f"/silences/{silence.id}"


async def _resolved(runtime: Runtime, clock: ManualClock) -> str:
    incident_id = await open_incident(runtime, clock)
    assert runtime.sessions is not None
    async with unit_of_work(runtime.sessions) as session:
        await incidents.resolve(session, incident_id, "setup", clock)
    return f"/incidents/{incident_id}/close"


async def _with_lead(runtime: Runtime, clock: ManualClock) -> str:
    incident_id = await open_incident(runtime, clock)
    assert runtime.sessions is not None
    async with unit_of_work(runtime.sessions) as session:
        await workflow.assign_role(
            session, incident_id, "incident_lead", "alice", "setup", clock.now()
        )
    return f"/incidents/{incident_id}/roles/incident_lead"


async def _task(runtime: Runtime, clock: ManualClock) -> str:
    incident_id = await open_incident(runtime, clock)
    assert runtime.sessions is not None
    async with runtime.sessions() as session:
        task = (await workflow.tasks_of(session, incident_id))[0]
    return f"/incidents/{incident_id}/tasks/{task.id}"


async def _merge(runtime: Runtime, clock: ManualClock) -> str:
    survivor = await open_incident(runtime, clock)
    merged = await open_incident(runtime, clock)
    _BODIES["merge"] = {"into": survivor}
    return f"/incidents/{merged}/merge"


async def _drills(runtime: Runtime, clock: ManualClock) -> str:
    """An API-only runtime has no bus: give it one (nobody reads it) and a watch."""
    if runtime.bus is None:
        runtime.bus = MemoryBus(capacity=100_000, metrics=runtime.metrics)
    watches = runtime.settings.listener.watches
    if not any(w.id == "acme" for w in watches):
        watches.append(WatchConfig(id="acme", brand="Acme", terms=["acme"]))
    return "/drills"


_BODIES: dict[str, dict[str, Any]] = {}
CLOSERS = frozenset({"pr", "legal", "executive", "admin"})

CASES = {
    "incident.acknowledge": Case(
        "POST", "/incidents/{incident_id}/ack", lambda r, c: _incident(r, c, "ack"), WORKERS
    ),
    "incident.resolve": Case(
        "POST",
        "/incidents/{incident_id}/resolve",
        lambda r, c: _incident(r, c, "resolve"),
        WORKERS,
    ),
    "incident.response": Case(
        "POST",
        "/incidents/{incident_id}/response",
        lambda r, c: _incident(r, c, "response"),
        WORKERS,
        body={"kind": "statement", "note": "posted on the official account"},
    ),
    "incident.mitigate": Case(
        "POST",
        "/incidents/{incident_id}/mitigate",
        lambda r, c: _incident(r, c, "mitigate"),
        WORKERS,
    ),
    "incident.close": Case("POST", "/incidents/{incident_id}/close", _resolved, CLOSERS),
    "incident.merge": Case("POST", "/incidents/{incident_id}/merge", _merge, WORKERS),
    "incident.role.assign": Case(
        "PUT",
        "/incidents/{incident_id}/roles/{role}",
        lambda r, c: _incident(r, c, "roles/pr_owner"),
        WORKERS,
        body={"person": "bob"},
    ),
    "incident.role.unassign": Case(
        "DELETE", "/incidents/{incident_id}/roles/{role}", _with_lead, WORKERS
    ),
    "incident.task.update": Case(
        "PATCH",
        "/incidents/{incident_id}/tasks/{task_id}",
        _task,
        WORKERS,
        body={"status": "done", "note": "statement posted"},
    ),
    "incident.note": Case(
        "POST",
        "/incidents/{incident_id}/notes",
        lambda r, c: _incident(r, c, "notes"),
        WORKERS,
        body={"text": "called the author"},
    ),
    "drill.start": Case(
        "POST",
        "/drills",
        _drills,
        frozenset({"pr", "executive", "admin"}),
        body={"scenario": "rumour", "watch": "acme"},
    ),
    "silence.create": Case(
        "POST",
        "/silences",
        _silences,
        WORKERS,
        body={
            "matchers": {"watch": ["acme"], "tier": [1]},
            "ends_at": "2099-01-01T00:00:00Z",
            "reason": "known issue, statement already out",
        },
    ),
    "silence.expire": Case("DELETE", "/silences/{silence_id}", _silence, WORKERS),
    "template.create": Case(
        "POST",
        "/templates",
        _templates,
        AUTHORS,
        body={
            "kind": "apology",
            "lang": "en",
            "min_tier": 2,
            "max_tier": 3,
            "body": "{{ brand }} apologises.",
        },
    ),
    "template.edit": Case(
        "PATCH",
        "/templates/{template_id}/versions/{number}",
        _version("draft", ""),
        AUTHORS,
        body={"body": "{{ brand }} says sorry."},
    ),
    "template.submit": Case(
        "POST",
        "/templates/{template_id}/versions/{number}/submit",
        _version("draft", "/submit"),
        AUTHORS,
    ),
    "template.approve": Case(
        "POST",
        "/templates/{template_id}/versions/{number}/approve",
        _version("in_review", "/approve"),
        frozenset({"legal"}),
    ),
    "template.reject": Case(
        "POST",
        "/templates/{template_id}/versions/{number}/reject",
        _version("in_review", "/reject"),
        frozenset({"legal"}),
        body={"note": "cite the recall notice"},
    ),
    "template.retire": Case(
        "POST",
        "/templates/{template_id}/versions/{number}/retire",
        _version("approved", "/retire"),
        frozenset({"legal", "admin"}),
    ),
    "template.use": Case("POST", "/incidents/{incident_id}/responses", _respond, WORKERS),
    "template.preview": Case(
        "POST",
        "/templates/{template_id}/preview",
        _preview,
        frozenset(ROLES),
        body={"variables": {"product": "X2"}},
        audited=False,
    ),
}

# Mutating routes authenticated otherwise than by API key (tested in their own suites):
# HMAC-signed ingestion, single-use ack-link tokens, Slack's request signature.
NOT_KEYED = {
    ("POST", "/ingest/mentions"),
    ("POST", "/ack/{token}"),
    ("POST", "/slack/interactions"),
}


def _body(name: str, case: Case, role: str) -> dict[str, Any] | None:
    if name == "template.create":
        return {**(case.body or {}), "name": f"created-by-{role}"}
    if name == "template.use":
        return _BODIES["respond"]
    if name == "incident.merge":
        return _BODIES["merge"]
    if name == "drill.start":  # one scenario at a time per watch (a repeat would join it)
        scenario = {"pr": "rumour", "executive": "product_complaint"}.get(role, "executive_remark")
        return {**(case.body or {}), "scenario": scenario}
    return case.body


@pytest.mark.parametrize("name", sorted(CASES))
async def test_role_matrix(name: str, tmp_path: Path, clock: ManualClock) -> None:
    case = CASES[name]
    wrong: list[str] = []
    async with role_api(tmp_path, clock) as (client, runtime):
        for role in ROLES:
            path = await case.setup(runtime, clock)
            r = await client.request(
                case.method, path, headers=key_headers(role), json=_body(name, case, role)
            )
            expected = "2xx" if role in case.allowed else "403"
            got = "2xx" if 200 <= r.status_code < 300 else str(r.status_code)
            if got != expected:
                wrong.append(f"{role}: expected {expected}, got {r.status_code} {r.text[:200]}")
                continue
            if case.audited and expected == "2xx":
                audit = await client.get(
                    "/audit", params={"actor": role, "limit": 1}, headers=key_headers("admin")
                )
                entries = audit.json()["items"]
                if not entries or entries[0]["action"] != name:
                    got_actions = [e["action"] for e in entries]
                    wrong.append(f"{role}: no {name!r} audit row, got {got_actions}")
    assert not wrong, f"{case.method} {case.route}:\n" + "\n".join(wrong)


def test_every_mutating_route_is_in_the_matrix(tmp_path: Path) -> None:
    app = create_app(Runtime(Settings()))
    mutating = {  # from the OpenAPI schema: included routers are not flat in app.routes
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
        if method in ("post", "put", "patch", "delete")
    }
    covered = {(case.method, case.route) for case in CASES.values()}
    missing = mutating - covered - NOT_KEYED
    assert not missing, f"add these routes to CASES in {__file__}: {sorted(missing)}"
    assert covered <= mutating, f"cases for routes that do not exist: {covered - mutating}"
