"""An empty filter (``?watch=``, ``?actor=``) is refused, not answered with an empty list.

Before: ``GET /incidents?watch=`` answered 200 with no incident while one was open (no watch
has an empty id), as did the audit log's and the drills' filters: a client that sent an
empty form field read "nothing here" instead of learning its request was wrong.
"""

from __future__ import annotations

from pathlib import Path

from core.clock import ManualClock
from tests.access_support import key_headers, open_incident, role_api

EMPTY = [
    "/incidents?watch=",
    "/drills?watch=",
    "/oncall?watch=",
    "/audit?watch=",
    "/audit?actor=",
    "/audit?action=",
    "/audit?target_type=",
    "/audit?target_id=",
]


async def test_an_empty_filter_is_refused(tmp_path: Path, clock: ManualClock) -> None:
    async with role_api(tmp_path, clock) as (client, runtime):
        await open_incident(runtime, clock, watch="acme")
        answers = {url: await client.get(url, headers=key_headers("admin")) for url in EMPTY}
        listed = await client.get("/incidents?watch=acme", headers=key_headers("admin"))
    assert listed.json()["total"] == 1
    wrong = {u: (a.status_code, a.text[:100]) for u, a in answers.items() if a.status_code != 422}
    assert not wrong, wrong
    detail = answers["/incidents?watch="].json()["detail"]
    assert detail[0]["loc"] == ["query", "watch"], detail
