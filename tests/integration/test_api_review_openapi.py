"""The OpenAPI schema documents the answers the API gives to bad input: each refusal's
status code is listed for its operation, its body validates against the schema listed
there, and its content type is one listed.

Before: a 422 the API writes itself (an unknown query parameter, a NUL, a silence ending in
the past, ``min_tier`` above ``max_tier``, a merge into itself, an unknown scenario) has a
string ``detail`` where the schema promised FastAPI's list of validation errors (a client
generated from the schema failed to read the refusal); the incidents, alerting and drills
operations listed neither 401, 403, 404 nor 409; ``/metrics`` was documented as JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import jsonschema

from core.clock import ManualClock
from tests.access_support import key_headers, make_template, open_incident, role_api

ADMIN = key_headers("admin")
VIEWER = key_headers("viewer")
RESPONDER = key_headers("responder")


def _operation(schema: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    found = schema["paths"][path][method.lower()]
    assert isinstance(found, dict)
    return found


def _problems(schema: dict[str, Any], method: str, path: str, answer: httpx.Response) -> list[str]:
    """What of ``answer`` the schema of ``method path`` does not document."""
    responses = _operation(schema, method, path)["responses"]
    code = str(answer.status_code)
    where = f"{method} {path} -> {code} {answer.text[:120]}"
    if code not in responses:
        return [f"{where}: status not documented ({sorted(responses)})"]
    content = responses[code].get("content", {})
    media = answer.headers.get("content-type", "").split(";")[0].strip()
    if media not in content:
        return [f"{where}: content type {media!r} not documented ({sorted(content)})"]
    body_schema = content[media].get("schema")
    if media != "application/json" or not body_schema:
        return []
    validator = jsonschema.Draft202012Validator({**body_schema, "components": schema["components"]})
    return [f"{where}: {error.message[:200]}" for error in validator.iter_errors(answer.json())]


async def test_refusals_are_documented_as_answered(tmp_path: Path, clock: ManualClock) -> None:
    async with role_api(tmp_path, clock) as (client, runtime):
        incident = await open_incident(runtime, clock)
        other = await open_incident(runtime, clock)
        resolved = await open_incident(runtime, clock)
        template = await make_template(runtime, clock, until="in_review")
        assert (await client.post(f"/incidents/{resolved}/resolve", headers=RESPONDER)).is_success
        schema = (await client.get("/openapi.json")).json()
        past = {"matchers": {"tier": [1]}, "ends_at": "2000-01-01T00:00:00Z", "reason": "x"}
        bad_tiers = {"name": "t", "kind": "apology", "lang": "en", "min_tier": 3, "max_tier": 1}
        cases: list[tuple[str, str, str, dict[str, str], Any, int]] = [
            # (method, documented path, url, headers, JSON body, expected status)
            ("GET", "/incidents", "/incidents?stauts=open", ADMIN, None, 422),
            ("GET", "/incidents", "/incidents?limit=1&limit=2", ADMIN, None, 422),
            ("GET", "/incidents", "/incidents?limit=-1", ADMIN, None, 422),
            ("GET", "/incidents", "/incidents", {}, None, 401),
            ("GET", "/incidents/{incident_id}", "/incidents/99999", ADMIN, None, 404),
            ("GET", "/incidents/{incident_id}", "/incidents/1?watch=%00", ADMIN, None, 422),
            ("POST", "/incidents/{incident_id}/ack", f"/incidents/{incident}/ack", VIEWER, {}, 403),
            (
                "POST",
                "/incidents/{incident_id}/ack",
                f"/incidents/{resolved}/ack",
                RESPONDER,
                {},
                409,
            ),
            (
                "POST",
                "/incidents/{incident_id}/resolve",
                "/incidents/99999/resolve",
                ADMIN,
                {},
                404,
            ),
            (
                "GET",
                "/incidents/{incident_id}/deliveries",
                "/incidents/99999/deliveries",
                ADMIN,
                None,
                404,
            ),
            (
                "GET",
                "/incidents/{incident_id}/evidence/items",
                "/incidents/1/evidence/items?x=1",
                ADMIN,
                None,
                422,
            ),
            ("POST", "/silences", "/silences", RESPONDER, past, 422),
            ("POST", "/silences", "/silences", RESPONDER, {"matchers": {}}, 422),
            ("POST", "/silences", "/silences", VIEWER, past, 403),
            ("DELETE", "/silences/{silence_id}", "/silences/99999", RESPONDER, None, 404),
            ("GET", "/silences", "/silences?include_expired=1&x=2", ADMIN, None, 422),
            ("GET", "/oncall", "/oncall?team=a", ADMIN, None, 422),
            (
                "POST",
                "/incidents/{incident_id}/response",
                "/incidents/99999/response",
                RESPONDER,
                {"kind": "reply"},
                404,
            ),
            ("POST", "/templates", "/templates", ADMIN, {**bad_tiers, "body": "x"}, 422),
            ("GET", "/templates", "/templates?sort=name", ADMIN, None, 422),
            (
                "POST",
                "/templates/{template_id}/versions/{number}/approve",
                f"/templates/{template}/versions/1/approve",
                RESPONDER,
                {},
                403,
            ),
            ("GET", "/audit", "/audit?who=admin", ADMIN, None, 422),
            (
                "POST",
                "/incidents/{incident_id}/merge",
                f"/incidents/{incident}/merge",
                RESPONDER,
                {"into": incident},
                422,
            ),
            (
                "GET",
                "/incidents/{incident_id}/timeline",
                f"/incidents/{other}/timeline?kind=x",
                ADMIN,
                None,
                422,
            ),
            ("POST", "/drills", "/drills", ADMIN, {"scenario": "nope", "watch": "acme"}, 422),
            ("GET", "/drills", "/drills?page=2", ADMIN, None, 422),
            ("GET", "/drills/{drill_id}/report", "/drills/99999/report", ADMIN, None, 404),
            ("GET", "/metrics", "/metrics", {}, None, 200),
        ]
        problems: list[str] = []
        for method, path, url, headers, body, expected in cases:
            answer = await client.request(method, url, headers=headers, json=body)
            assert answer.status_code == expected, (method, url, answer.text)
            problems += _problems(schema, method, path, answer)
    assert not problems, "\n".join(problems)
