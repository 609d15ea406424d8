"""The OpenAPI schema says how to send a key (``Authorization: Bearer`` or ``X-API-Key``) and
which operations need one: /docs then offers "Authorize", and "Try it out" works (without
the schemes every call from /docs was a 401)."""

from __future__ import annotations

from pathlib import Path

from core.clock import ManualClock
from tests.access_support import role_api

OPEN = {
    "/healthz",
    "/readyz",
    "/metrics",  # its own token (api.metrics_token), not an API key
    "/ack/{token}",
    "/slack/interactions",
    "/ingest/mentions",
}


async def test_the_schema_declares_the_key_schemes(tmp_path: Path, clock: ManualClock) -> None:
    async with role_api(tmp_path, clock) as (client, _):
        schema = (await client.get("/openapi.json")).json()
    schemes = schema["components"]["securitySchemes"]
    assert {(s["type"], s.get("scheme"), s.get("name")) for s in schemes.values()} == {
        ("http", "bearer", None),
        ("apiKey", None, "X-API-Key"),
    }
    either = sorted([{name: []} for name in schemes], key=str)
    keyed = set()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if path in OPEN:
                assert "security" not in operation, (method, path)
            else:
                assert sorted(operation.get("security", []), key=str) == either, (method, path)
                keyed.add(path)
    assert "/audit" in keyed and "/incidents/{incident_id}/ack" in keyed
