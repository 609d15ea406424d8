"""Review of ``api.textinput.refuse_nul``: a JSON body in UTF-16 or UTF-32 (which FastAPI's
decoder, ``json.loads`` on bytes, reads) carries a NUL as ``\\x00 \\x00 u\\x00 ...``, not the
UTF-8 bytes ``\\u0000`` the quick check looked for: it reached the endpoint, and the
database (PostgreSQL text cannot hold NUL)."""

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
