"""Malformed requests to the templates, responses and audit APIs get 4xx, never a 5xx.

A small stand-in for a schema fuzzer: every operation under those paths, with odd path
parameters and odd bodies, as admin (who passes every role check but approval) and legal.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from core.clock import ManualClock
from tests.access_support import key_headers, make_template, open_incident, role_api

PREFIXES = ("/templates", "/incidents/{incident_id}/responses", "/incidents/{incident_id}/template")
ODD_IDS = ("1", "2", "0", "-1", "99999999999999999999", "abc", "1.5", "%00")
ODD_BODIES: tuple[object, ...] = (
    None,
    {},
    [],
    "x",
    {"body": None},
    {"body": "{{ x"},
    {"body": "{{ ''.__class__ }}"},
    {"template_id": 1, "version": 99999, "variables": {"a": 1}},
    {"template_id": 1, "variables": {"": "x", "incident": "y"}},
    {"template_id": 2**40},
    {"incident_id": 2**31, "variables": {}},
    {"note": "n" * 5000},
    {"name": "n", "kind": "apology", "lang": "en", "min_tier": 3, "max_tier": 0, "body": "b"},
    {"name": "n" * 300, "kind": "apology", "lang": "e", "min_tier": 1, "max_tier": 1, "body": "b"},
)


async def test_no_5xx_on_odd_requests(tmp_path: Path, clock: ManualClock) -> None:
    async with role_api(tmp_path, clock) as (client, runtime):
        await make_template(runtime, clock, until="approved")
        await make_template(runtime, clock, until="in_review")
        await open_incident(runtime, clock)
        schema = (await client.get("/openapi.json")).json()
        operations = [
            (method.upper(), path)
            for path, ops in schema["paths"].items()
            if path.startswith(PREFIXES) or path == "/audit"
            for method in ops
        ]
        assert len(operations) >= 12
        failures = []
        seen: dict[int, int] = {}
        for (method, path), role in itertools.product(operations, ("admin", "legal")):
            for odd in ODD_IDS:
                url = path.replace("{template_id}", odd).replace("{incident_id}", odd)
                url = url.replace("{number}", odd)
                for body in ODD_BODIES if method != "GET" else (None,):
                    r = await client.request(method, url, headers=key_headers(role), json=body)
                    seen[r.status_code] = seen.get(r.status_code, 0) + 1
                    if r.status_code >= 500:
                        failures.append(f"{method} {url} {body!r}: {r.status_code} {r.text}")
        assert not failures, "\n".join(failures[:20])
        assert {200, 403, 404, 409, 422} <= set(seen), seen  # the handlers were reached
