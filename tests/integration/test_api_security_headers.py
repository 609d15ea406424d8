"""Every answer of the API carries the security headers a browser or a cache needs: no
caching of what a key read (incidents, reports, the audit log), no MIME sniffing, no
framing, no referrer. Pages that set their own (the console's CSP) keep theirs."""

from __future__ import annotations

from pathlib import Path

from api.docs import ASSETS
from core.clock import ManualClock
from tests.access_support import key_headers, open_incident, role_api

EXPECTED = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
JSON_CSP = "default-src 'none'; frame-ancestors 'none'"


CALLS = [
    ("/incidents", "viewer"),
    ("/incidents/{id}", "viewer"),
    ("/incidents/{id}/report?format=md", "viewer"),
    ("/audit", "admin"),
    ("/templates", "viewer"),
    ("/incidents", None),  # 401
    ("/audit", "viewer"),  # 403
    ("/incidents/{id}?stauts=open", "viewer"),  # 422
    ("/no-such-route", None),  # 404
    ("/metrics", None),
    ("/openapi.json", None),
    ("/docs", None),
]


async def test_every_answer_has_the_security_headers(tmp_path: Path, clock: ManualClock) -> None:
    async with role_api(tmp_path, clock) as (client, runtime):
        incident = await open_incident(runtime, clock)
        for path, role in CALLS:
            headers = key_headers(role) if role else {}
            r = await client.get(path.replace("{id}", str(incident)), headers=headers)
            got = {name: r.headers.get(name) for name in EXPECTED}
            assert got == EXPECTED, (path, r.status_code)
            if r.headers["content-type"].startswith("application/json"):
                assert r.headers["content-security-policy"] == JSON_CSP, path


async def test_pages_keep_their_own_headers(tmp_path: Path, clock: ManualClock) -> None:
    async with role_api(tmp_path, clock) as (client, _):
        page = await client.get("/console/")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
        # the documentation's static assets may be cached (they hold nothing of a key's)
        asset = await client.get(f"{ASSETS}/swagger-ui.css")
        assert asset.status_code == 200
        assert "cache-control" not in asset.headers
        assert asset.headers["x-content-type-options"] == "nosniff"


async def test_a_refused_large_body_has_the_headers_too(tmp_path: Path, clock: ManualClock) -> None:
    async with role_api(tmp_path, clock) as (client, _):
        r = await client.post(
            "/templates", headers=key_headers("pr"), content=b"x" * (2 * 1024 * 1024)
        )
        assert r.status_code == 413
        assert r.headers["cache-control"] == "no-store"
