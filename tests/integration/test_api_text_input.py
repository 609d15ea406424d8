"""Text the API cannot store is a clear 422, never a 500: a NUL anywhere (PostgreSQL text
cannot hold it; SQLite stored it), a lone surrogate in a JSON body (FastAPI's own 422 could
not encode it back)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from core.clock import ManualClock
from tests.access_support import key_headers, open_incident, role_app


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    clock = ManualClock()
    runtime, app = role_app(tmp_path, clock)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://cw") as client,
    ):
        yield client, await open_incident(runtime, clock)


async def test_a_nul_in_a_query_parameter_or_a_body_string_is_a_422_naming_it(
    api: tuple[httpx.AsyncClient, int],
) -> None:
    client, incident = api
    admin = key_headers("admin")
    cases = [
        ("GET", "/incidents?watch=a%00b", None, "query parameter 'watch'"),
        ("GET", "/audit?actor=a%00b", None, "query parameter 'actor'"),
        ("POST", f"/incidents/{incident}/notes", {"text": "hi\x00there"}, "body.text"),
        ("PUT", f"/incidents/{incident}/roles/pr_owner", {"person": "pat\x00"}, "body.person"),
        ("POST", f"/incidents/{incident}/ack", {"note": "n\x00"}, "body.note"),
    ]
    for method, url, body, where in cases:
        answer = await client.request(method, url, json=body, headers=admin)
        assert answer.status_code == 422, (url, answer.text)
        assert where in answer.json()["detail"] and "NUL" in answer.json()["detail"]
    notes = await client.post(
        f"/incidents/{incident}/notes", json={"text": "a \\u0000 written out"}, headers=admin
    )
    assert notes.status_code < 300, notes.text  # the six characters, not a NUL


async def test_a_lone_surrogate_in_a_body_is_a_422_not_a_500(
    api: tuple[httpx.AsyncClient, int],
) -> None:
    client, incident = api
    answer = await client.post(
        f"/incidents/{incident}/notes",
        content=b'{"text": "x\\ud800y"}',
        headers={**key_headers("admin"), "content-type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == ["body", "text"]


async def test_nan_or_infinity_in_a_body_is_a_422_not_a_500(
    api: tuple[httpx.AsyncClient, int],
) -> None:
    """Python's JSON reader takes ``NaN``, ``Infinity`` and ``1e400`` (infinity): the 422
    echoing the value back could not be written as JSON (a 500 on every JSON route)."""
    client, incident = api
    headers = {**key_headers("admin"), "content-type": "application/json"}
    cases = [
        (f"/incidents/{incident}/notes", b'{"text": NaN}', ["body", "text"]),
        (f"/incidents/{incident}/ack", b'{"note": -Infinity}', ["body", "note"]),
        (f"/incidents/{incident}/merge", b'{"into": 1e400}', ["body", "into"]),
        ("/templates/1/preview", b'{"incident_id": NaN}', ["body", "incident_id"]),
    ]
    for url, body, loc in cases:
        answer = await client.post(url, content=body, headers=headers)
        assert answer.status_code == 422, (url, answer.text)
        error = answer.json()["detail"][0]
        assert error["loc"] == loc, (url, error)
        assert error["input"] in ("nan", "-inf", "inf"), (url, error)


# A JSON body in UTF-16 or UTF-32 (which FastAPI's decoder, ``json.loads`` on bytes, reads)
# carries a NUL as "\\x00 \\x00 u\\x00 ...", not the UTF-8 bytes "\\u0000" the quick check
# looked for: it reached the endpoint, and the database.


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
async def test_a_nul_in_a_utf16_or_utf32_json_body_is_a_422(
    api: tuple[httpx.AsyncClient, int], encoding: str
) -> None:
    client, incident = api
    headers = {**key_headers("admin"), "content-type": "application/json"}
    answer = await client.post(
        f"/incidents/{incident}/notes",
        content='{"text": "hi\\u0000there"}'.encode(encoding),
        headers=headers,
    )
    assert answer.status_code == 422, answer.text
    assert "body.text" in answer.json()["detail"] and "NUL" in answer.json()["detail"]
