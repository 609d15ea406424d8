"""Review of the API's request and answer hygiene: the security headers of an unexpected
error's answer, and JSON bodies that give a key twice (``api.jsonkeys``)."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import func, select

from alerts.models import Incident
from api.app import JSON_CSP, SECURITY_HEADERS
from api.audit import AuditEntry
from api.settings import ApiKeyConfig
from core.clock import ManualClock
from core.db import unit_of_work
from tests.access_support import key_headers, make_template, open_incident, role_app

SCOPED_KEY = "acme-pr-key-0123456789abcdef"
JSON = {"Content-Type": "application/json"}


async def test_an_unexpected_error_answers_with_the_security_headers(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Starlette answers an unhandled exception from its outermost middleware, outside
    ``SecurityHeaders``: the 500 had none of the headers every answer is documented to
    carry (no ``nosniff``, no ``no-store``, no CSP)."""
    _, app = role_app(tmp_path, clock)

    async def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/broken", broken)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://cw") as client:
            answer = await client.get("/broken")
    assert answer.status_code == 500
    assert answer.json() == {"detail": "internal error; it has been logged"}
    for name, value in SECURITY_HEADERS:
        assert answer.headers.get(name) == value, name
    assert answer.headers.get("Cache-Control") == "no-store"
    assert answer.headers.get("Content-Security-Policy") == JSON_CSP


async def test_a_json_key_given_twice_is_refused_before_anything_changes(
    tmp_path: Path, clock: ManualClock
) -> None:
    """``{"into": 99999, "into": 2}``: Python's JSON reader kept the last key, so the merge
    went into incident 2 (irreversibly) while the body also named another incident. A
    key given twice, at any depth, is now a 422 and nothing is done."""
    extra = [ApiKeyConfig(name="acme-pr", key=SCOPED_KEY, role="pr", watches=["acme"])]
    runtime, app = role_app(tmp_path, clock, extra_keys=extra)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cw") as client:
            merged = await open_incident(runtime, clock)
            survivor = await open_incident(runtime, clock)
            elsewhere = await open_incident(runtime, clock, watch="other")
            scoped = {"Authorization": f"Bearer {SCOPED_KEY}", **JSON}
            body = f'{{"into": {elsewhere}, "into": {survivor}}}'
            answer = await client.post(f"/incidents/{merged}/merge", content=body, headers=scoped)
            assert answer.status_code == 422, answer.text
            assert '"into" twice' in answer.json()["detail"]

            # nested: the variables of a template's use
            template = await make_template(runtime, clock, until="approved")
            nested = (
                f'{{"template_id": {template}, "variables": '
                '{"brand": "Acme", "product": "X", "product": "Y"}}'
            )
            worker = {**key_headers("responder"), **JSON}
            answer = await client.post(
                f"/incidents/{survivor}/responses", content=nested, headers=worker
            )
            assert answer.status_code == 422, answer.text
            assert '"product" twice' in answer.json()["detail"]

            # a +json media type is read as JSON too
            edit = '{"body": "first words", "body": "other words"}'
            author = {**key_headers("pr"), "Content-Type": "application/merge-patch+json"}
            answer = await client.patch(
                f"/templates/{template}/versions/1", content=edit, headers=author
            )
            assert answer.status_code == 422, answer.text

            assert runtime.sessions is not None
            async with unit_of_work(runtime.sessions) as session:
                merged_row = await session.get(Incident, merged)
                assert merged_row is not None and merged_row.merged_into_id is None
                assert merged_row.status == "open"
                changes = await session.scalar(
                    select(func.count())
                    .select_from(AuditEntry)
                    .where(AuditEntry.outcome == "ok", AuditEntry.target_type != "template")
                )
                assert changes == 0

            # the same requests with each key once still work
            body = f'{{"into": {survivor}}}'
            answer = await client.post(f"/incidents/{merged}/merge", content=body, headers=scoped)
            assert answer.status_code == 200, answer.text
            assert answer.json()["merged"]["merged_into_id"] == survivor


async def test_a_body_not_read_as_json_is_left_to_its_route(
    tmp_path: Path, clock: ManualClock
) -> None:
    """A form (an ack link's button, a Slack click) is never read as JSON: the check
    leaves it alone, as it leaves a body that is not JSON to the route's validation."""
    runtime, app = role_app(tmp_path, clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cw") as client:
            incident = await open_incident(runtime, clock)
            worker = key_headers("responder")
            answer = await client.post(
                f"/incidents/{incident}/ack",
                content='{"note": "a", "note": "b"}',
                headers={**worker, "Content-Type": "text/plain"},
            )
            assert "twice" not in answer.text
            answer = await client.post(
                f"/incidents/{incident}/ack", content="{not json", headers={**worker, **JSON}
            )
            assert answer.status_code == 422 and "twice" not in answer.text
