"""Two people acting on one thing at the same moment, on the embedded database (SQLite):
the changes run one after the other, each sees what the other did."""

from __future__ import annotations

import asyncio
from pathlib import Path

from core.clock import ManualClock
from tests.access_support import key_headers, make_template, open_incident, role_api


async def test_two_acknowledges_at_once_record_one_acknowledgement(tmp_path: Path) -> None:
    clock = ManualClock()
    async with role_api(tmp_path, clock) as (client, runtime):
        incident = await open_incident(runtime, clock, tier=2, watch="acme")
        answers = await asyncio.gather(
            *(
                client.post(f"/incidents/{incident}/ack", headers=key_headers(role))
                for role in ("responder", "pr")
            )
        )
        assert [a.status_code for a in answers] == [200, 200]
        got = (await client.get(f"/incidents/{incident}", headers=key_headers("admin"))).json()
        acks = [e["actor"] for e in got["timeline"] if e["kind"] == "acknowledged"]
        assert len(acks) == 1 and got["acked_by"] == acks[0]
        audit = await client.get("/audit?action=incident.acknowledge", headers=key_headers("admin"))
        befores = sorted(e["before"]["status"] for e in audit.json()["items"])
        # the second saw the first's change, so it changed nothing: no entry of its own
        assert befores == ["open"]


async def test_an_edit_racing_a_submit_and_an_approval_never_changes_the_approved_text(
    tmp_path: Path,
) -> None:
    """The edit lands before the submit (legal then approves the edited text) or is
    refused; it never lands on the version in review or approved (it did in 30 of 30
    tries, the approved text differing from what legal approved in 18)."""
    clock = ManualClock()
    async with role_api(tmp_path, clock) as (client, runtime):
        for attempt in range(12):
            template = await make_template(runtime, clock, until="draft")
            version = f"/templates/{template}/versions/1"

            async def edit(delay: int = attempt % 4, version: str = version) -> int:
                for _ in range(delay):
                    await asyncio.sleep(0)
                answer = await client.patch(
                    version, json={"body": "EVIL {{ brand }}"}, headers=key_headers("pr")
                )
                return answer.status_code

            async def submit_approve(version: str = version) -> None:
                await client.post(f"{version}/submit", headers=key_headers("customer_service"))
                await client.post(f"{version}/approve", headers=key_headers("legal"))

            edited, _ = await asyncio.gather(edit(), submit_approve())
            assert edited in (200, 409)
            final = (await client.get(version, headers=key_headers("viewer"))).json()
            audit = await client.get(f"/audit?target_id={template}/1", headers=key_headers("admin"))
            by_action = {e["action"]: e for e in audit.json()["items"]}
            assert final["body"] == by_action["template.submit"]["after"]["body"]
            if final["status"] == "approved":
                assert final["body"] == by_action["template.approve"]["after"]["body"]
