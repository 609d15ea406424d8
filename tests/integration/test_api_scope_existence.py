"""A key scoped to some watches cannot tell another watch's incident from one that does
not exist: both get the same 403 (a 404 for the missing one told it which ids
other watches had, and when they opened a new incident). Unscoped keys still get 404."""

from __future__ import annotations

from typing import Any

import httpx

from core.clock import ManualClock
from tests.access_support import make_template, open_incident
from tests.integration.test_api_scope import ACME, ADMIN, scoped_api

MISSING = 999_999


def _calls(incident: int, mine: int, template: int) -> list[tuple[str, str, Any]]:
    on = f"/incidents/{incident}"
    return [
        ("GET", on, None),
        ("GET", f"{on}/timeline", None),
        ("GET", f"{on}/tasks", None),
        ("GET", f"{on}/report", None),
        ("GET", f"{on}/responses", None),
        ("GET", f"{on}/template-suggestions", None),
        ("POST", f"{on}/ack", None),
        ("POST", f"{on}/notes", {"text": "seen"}),
        ("POST", f"/incidents/{mine}/merge", {"into": incident}),
        ("POST", f"/templates/{template}/preview", {"incident_id": incident}),
    ]


def _answer(r: httpx.Response, number: int) -> tuple[int, str]:
    """The answer with the probed number written as N (the rest must be the same)."""
    return r.status_code, r.text.replace(str(number), "N")


async def test_another_watchs_incident_answers_as_a_missing_one(
    db_url: str, clock: ManualClock
) -> None:
    async with scoped_api(db_url, clock) as (client, runtime):
        mine = await open_incident(runtime, clock, watch="acme")
        other = await open_incident(runtime, clock, watch="globex")
        template = await make_template(runtime, clock, until="approved")
        for (method, path, body), (_, missing_path, missing_body) in zip(
            _calls(other, mine, template), _calls(MISSING, mine, template), strict=True
        ):
            seen = await client.request(method, path, headers=ACME, json=body)
            absent = await client.request(method, missing_path, headers=ACME, json=missing_body)
            assert seen.status_code == 403, (method, path, seen.text)
            assert _answer(seen, other) == _answer(absent, MISSING), (method, path)
            assert "globex" not in absent.text
            # an unscoped key sees every watch: a missing incident is a plain 404
            r = await client.request(method, missing_path, headers=ADMIN, json=missing_body)
            assert r.status_code == 404, (method, missing_path, r.text)


async def test_a_scoped_keys_probe_of_a_missing_incident_is_audited_as_refused(
    db_url: str, clock: ManualClock
) -> None:
    async with scoped_api(db_url, clock) as (client, _):
        r = await client.post(f"/incidents/{MISSING}/ack", headers=ACME)
        assert r.status_code == 403, r.text
        page = (await client.get("/audit?outcome=forbidden", headers=ADMIN)).json()
        assert [(e["actor"], e["action"], e["target_id"]) for e in page["items"]] == [
            ("acme-admin", "incident.acknowledge", str(MISSING))
        ]
