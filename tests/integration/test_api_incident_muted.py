"""``GET /incidents`` and ``GET /incidents/{id}`` say what holds an incident's alerts back
(``muted``): the inhibiting incident (its tier and status), or the silence (its reason,
author and end), since when, and whether that has ended (the next tick sends the alerts).
On SQLite and PostgreSQL.

Before, nothing in an incident's representation said so: the demo's Weibo incident (#2,
inhibited while the tier-3 #1 is open) showed "no deadline" on the console and nothing
else, and a PR person took it for a broken system or an incident that needs no action."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import httpx
from sqlalchemy import update

from alerts.config import AlertsConfig, QuietHours
from alerts.models import Delivery
from api.runtime import Runtime
from core.clock import ManualClock
from core.db import unit_of_work
from tests.access_support import add_incident, api_on, key_headers, make_signal, open_incident
from tests.integration.test_incident_detail_bounds import rows_read

VIEWER = key_headers("viewer")
RESPONDER = key_headers("responder")


async def ok(response: httpx.Response, code: int = 200) -> Any:
    assert response.status_code == code, response.text
    return response.json()


async def listed(client: httpx.AsyncClient, query: str = "") -> dict[int, dict[str, Any]]:
    page = await ok(await client.get(f"/incidents?limit=200{query}", headers=VIEWER))
    return {item["id"]: item for item in page["items"]}


async def both(client: httpx.AsyncClient, incident: int) -> list[Any]:
    """The incident's ``muted`` as the list and as the detail give it (the same)."""
    detail = await ok(await client.get(f"/incidents/{incident}", headers=VIEWER))
    item = (await listed(client))[incident]
    assert item["muted"] == detail["muted"]
    return [item["muted"], detail["muted"]]


async def silence(
    client: httpx.AsyncClient, clock: ManualClock, watch: str, reason: str
) -> dict[str, Any]:
    body = {
        "matchers": {"watch": [watch]},
        "ends_at": (clock.now() + timedelta(hours=2)).isoformat(),
        "reason": reason,
    }
    created: dict[str, Any] = await ok(
        await client.post("/silences", json=body, headers=RESPONDER), 201
    )
    return created


async def test_an_inhibited_a_silenced_and_a_normal_incident_say_so(
    db_url: str, clock: ManualClock
) -> None:
    async with api_on(db_url, clock) as (client, runtime):
        top = await open_incident(runtime, clock, tier=3, watch="acme")
        clock.advance(60)
        inhibited_at = clock.now()
        low = await open_incident(runtime, clock, tier=2, watch="acme")
        quiet = await silence(client, clock, "beta", "known <b>issue</b>, \u202eRTL")
        silenced_at = clock.now()
        hushed = await open_incident(runtime, clock, tier=2, watch="beta")
        normal = await open_incident(runtime, clock, tier=2, watch="gamma")

        assert await both(client, low) == 2 * [
            {
                "by": "inhibition",
                "since": inhibited_at.isoformat().replace("+00:00", "Z"),
                "incident_id": top,
                "incident_tier": 3,
                "incident_status": "open",
                "ended": False,
            }
        ]
        assert await both(client, hushed) == 2 * [
            {
                "by": "silence",
                "since": silenced_at.isoformat().replace("+00:00", "Z"),
                "silence_id": quiet["id"],
                "reason": "known <b>issue</b>, \u202eRTL",
                "author": "responder",
                "until": quiet["ends_at"],
                "ended": False,
            }
        ]
        assert await both(client, normal) == [None, None]
        assert await both(client, top) == [None, None]  # it inhibits; nothing mutes it
        # the incidents muted when raised have no deadline: this is why
        items = await listed(client)
        assert items[low]["sla_due_at"] is None and items[hushed]["sla_due_at"] is None
        assert items[normal]["sla_due_at"] is not None
        # the existing fields are all still there, as they were
        assert {"id", "status", "tier", "sla_due_at", "merged_into_id"} <= set(items[low])


async def test_what_muted_it_ended_until_the_release_or_an_ack(
    db_url: str, clock: ManualClock
) -> None:
    async with api_on(db_url, clock) as (client, runtime):
        top = await open_incident(runtime, clock, tier=3, watch="acme")
        low = await open_incident(runtime, clock, tier=1, watch="acme")
        quiet = await silence(client, clock, "beta", "maintenance")
        hushed = await open_incident(runtime, clock, tier=2, watch="beta")

        await ok(await client.post(f"/incidents/{top}/resolve", headers=RESPONDER))
        clock.advance(60)
        await ok(await client.delete(f"/silences/{quiet['id']}", headers=RESPONDER))
        # the alerter's next tick alerts them (no alerter in this process): still held
        inhibited = (await both(client, low))[0]
        assert inhibited["ended"] is True and inhibited["incident_status"] == "resolved"
        silenced = (await both(client, hushed))[0]
        assert silenced["ended"] is True
        assert silenced["until"] == clock.now().isoformat().replace("+00:00", "Z")
        assert (await listed(client, "&status=resolved"))[top]["muted"] is None

        # acknowledged: the release will not alert it, nothing is held for it any more
        await ok(await client.post(f"/incidents/{low}/ack", headers=RESPONDER))
        await ok(await client.post(f"/incidents/{hushed}/ack", headers=RESPONDER))
        assert await both(client, low) == [None, None]
        assert await both(client, hushed) == [None, None]


async def test_acknowledged_while_the_inhibitor_is_open_it_stays_muted(
    db_url: str, clock: ManualClock
) -> None:
    async with api_on(db_url, clock) as (client, runtime):
        top = await open_incident(runtime, clock, tier=3, watch="acme")
        low = await open_incident(runtime, clock, tier=2, watch="acme")
        await ok(await client.post(f"/incidents/{low}/ack", headers=RESPONDER))
        muted = (await both(client, low))[0]
        assert muted["incident_id"] == top and muted["ended"] is False
        # resolved, it is no longer held back by anything
        await ok(await client.post(f"/incidents/{low}/resolve", headers=RESPONDER))
        assert await both(client, low) == [None, None]


async def test_a_drill_is_muted_by_a_drill_never_a_real_incident_by_one(
    db_url: str, clock: ManualClock
) -> None:
    async with api_on(db_url, clock) as (client, runtime):
        drill_top = await open_incident(runtime, clock, tier=3, watch="acme", drill=True)
        real = await open_incident(runtime, clock, tier=2, watch="acme")
        drill_low = await open_incident(runtime, clock, tier=1, watch="acme", drill=True)
        assert await both(client, real) == [None, None]
        muted = (await both(client, drill_low))[0]
        assert muted["by"] == "inhibition" and muted["incident_id"] == drill_top


async def _muted_pair(runtime: Runtime, clock: ManualClock, watch: str) -> None:
    await open_incident(runtime, clock, tier=3, watch=watch)
    await open_incident(runtime, clock, tier=2, watch=watch)


async def test_the_list_reads_what_mutes_them_in_a_fixed_number_of_statements(
    db_url: str, clock: ManualClock
) -> None:
    async with api_on(db_url, clock) as (client, runtime):
        silences = [(await silence(client, clock, "s0", "known"))["id"]]
        await open_incident(runtime, clock, tier=2, watch="s0")
        await _muted_pair(runtime, clock, "w0")
        with rows_read(runtime.engine) as few:
            assert sum(i["muted"] is not None for i in (await listed(client)).values()) == 2
        for n in range(1, 6):
            silences.append((await silence(client, clock, f"s{n}", "known"))["id"])
            await open_incident(runtime, clock, tier=2, watch=f"s{n}")
            await _muted_pair(runtime, clock, f"w{n}")
        with rows_read(runtime.engine) as many:
            items = await listed(client)
        assert len(many) == len(few), "a statement per incident (N+1)"
        muted = [i["muted"] for i in items.values() if i["muted"] is not None]
        assert sorted(m["silence_id"] for m in muted if m["by"] == "silence") == silences
        inhibitors = {m["incident_id"] for m in muted if m["by"] == "inhibition"}
        assert len(inhibitors) == 6
        assert all(items[i]["tier"] == 3 and items[i]["muted"] is None for i in inhibitors)


async def test_a_mute_moved_by_a_merge_is_not_the_survivors(
    db_url: str, clock: ManualClock
) -> None:
    # the merged incident's timeline moves to the survivor, its "inhibited by <survivor>"
    # event with it: the survivor is not muted by itself
    async with api_on(db_url, clock) as (client, runtime):
        top = await open_incident(runtime, clock, tier=3, watch="acme")
        low = await open_incident(runtime, clock, tier=2, watch="acme")
        assert (await both(client, low))[0]["incident_id"] == top
        merge = await client.post(f"/incidents/{low}/merge", json={"into": top}, headers=RESPONDER)
        await ok(merge)
        assert await both(client, top) == [None, None]
        detail = await ok(await client.get(f"/incidents/{low}", headers=VIEWER))
        assert detail["status"] == "closed" and detail["muted"] is None


# 08:00-12:00 UTC: the clock's 09:00 falls inside; tiers 1 and 2 wait (tier 3 never does)
QUIET = QuietHours(start=time(8, 0), end=time(12, 0), timezone="UTC", tiers=[1, 2])
MORNING = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def quiet_config(runtime: Runtime) -> AlertsConfig:
    return runtime.settings.alerts.model_copy(update={"quiet_hours": QUIET})


async def held_incident(runtime: Runtime, clock: ManualClock, *, tier: int = 2, watch: str) -> int:
    """An incident raised inside the quiet hours: its alert waits for their end."""
    assert runtime.sessions is not None
    signal = make_signal(clock, tier=tier, watch=watch)
    return await add_incident(runtime.sessions, signal, quiet_config(runtime), clock)


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def test_an_alert_held_by_quiet_hours_says_until_when_and_for_whom(
    db_url: str, clock: ManualClock
) -> None:
    """An alert held by quiet hours was in no incident field: the console showed an open
    incident with a deadline hours away and nothing to say nobody had been told yet. Now
    ``muted`` says so (the teams and channels that wait, until when); unlike an inhibition
    or a silence its deadline stands, counted from the end of the quiet hours."""
    async with api_on(db_url, clock) as (client, runtime):
        held_at = clock.now()
        held = await held_incident(runtime, clock, watch="acme")
        normal = await open_incident(runtime, clock, tier=2, watch="beta")
        expected = {
            "by": "quiet_hours",
            "since": iso(held_at),
            "until": iso(MORNING),
            "teams": ["marketing", "pr"],  # tier 2's route
            "channels": ["marketing-console", "pr-console"],
            "ended": False,
        }
        assert await both(client, held) == 2 * [expected]
        assert await both(client, normal) == [None, None]
        item = (await listed(client))[held]
        # the deadline stands, counted from the end of the quiet hours
        assert item["sla_due_at"] == iso(MORNING + runtime.settings.alerts.sla[2].target)
        assert item["next_escalation_at"] > iso(MORNING)

        # an ack stops the escalation, not the held alerts (the team learns what happened)
        await ok(await client.post(f"/incidents/{held}/ack", headers=RESPONDER))
        assert await both(client, held) == 2 * [expected]
        clock.set(MORNING)
        assert await both(client, held) == 2 * [expected | {"ended": True}]
        # the alerter sent them: nothing is held any more
        assert runtime.sessions is not None
        async with unit_of_work(runtime.sessions) as session:
            await session.execute(
                update(Delivery)
                .where(Delivery.incident_id == held)
                .values(status="sent", attempts=1, sent_at=clock.now())
            )
        assert await both(client, held) == [None, None]


async def test_quiet_hours_give_way_to_what_mutes_the_alert_after_them(
    db_url: str, clock: ManualClock
) -> None:
    async with api_on(db_url, clock) as (client, runtime):
        low = await held_incident(runtime, clock, watch="acme")
        assert (await both(client, low))[0]["by"] == "quiet_hours"
        # a tier-3 incident of the same watch (never held) inhibits it: that holds it now
        top = await held_incident(runtime, clock, tier=3, watch="acme")
        assert await both(client, top) == [None, None]
        muted = (await both(client, low))[0]
        assert (muted["by"], muted["incident_id"]) == ("inhibition", top)
        # resolved: nothing holds anything back
        other = await held_incident(runtime, clock, tier=1, watch="gamma")
        assert (await both(client, other))[0]["channels"] == ["customer_service-console"]
        await ok(await client.post(f"/incidents/{other}/resolve", headers=RESPONDER))
        assert await both(client, other) == [None, None]


async def test_quiet_hours_holds_are_read_in_a_fixed_number_of_statements(
    db_url: str, clock: ManualClock
) -> None:
    async with api_on(db_url, clock) as (client, runtime):
        await held_incident(runtime, clock, watch="w0")
        with rows_read(runtime.engine) as few:
            assert [i["muted"]["by"] for i in (await listed(client)).values()] == ["quiet_hours"]
        for n in range(1, 6):
            await held_incident(runtime, clock, tier=1 + n % 2, watch=f"w{n}")
        with rows_read(runtime.engine) as many:
            items = await listed(client)
        assert len(many) == len(few), "a statement per incident (N+1)"
        assert [i["muted"]["by"] for i in items.values()] == ["quiet_hours"] * 6
