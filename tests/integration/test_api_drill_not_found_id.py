"""``DrillNotFound`` carries the id looked up, and the API's answer names that id (as the
403 for another watch's drill does), not the text of the request path: ``/drills/0042``
is drill 42 for both, so a key scoped to some watches still cannot tell them apart."""

from __future__ import annotations

from alerts.workflow.drills import DrillNotFound
from core.clock import ManualClock
from tests.integration.test_api_scope import ACME, ADMIN, add_drill, scoped_api

MISSING = 999_999


def test_drill_not_found_carries_its_id() -> None:
    exc = DrillNotFound(42)
    assert exc.drill_id == 42  # was: AttributeError
    assert str(exc) == "drill 42 does not exist"


async def test_a_zero_padded_missing_drill_answers_as_another_watchs(
    sqlite_url: str, clock: ManualClock
) -> None:
    async with scoped_api(sqlite_url, clock) as (client, runtime):
        theirs = await add_drill(runtime, clock, "globex")
        seen = await client.get(f"/drills/00{theirs}/report", headers=ACME)
        absent = await client.get(f"/drills/00{MISSING}/report", headers=ACME)
        assert seen.status_code == absent.status_code == 403, absent.text
        assert f"drill {theirs} (or drill {theirs} does not exist)" in seen.json()["detail"]
        # was: "drill 00999999 (or drill 00999999 does not exist)"
        expected = seen.json()["detail"].replace(str(theirs), str(MISSING))
        assert absent.json()["detail"] == expected
        r = await client.get(f"/drills/00{MISSING}/report", headers=ADMIN)
        assert r.status_code == 404 and r.json()["detail"] == f"drill {MISSING} does not exist"
