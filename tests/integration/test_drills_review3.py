"""Crisis drills, review 3 (each test failed before its fix)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from alerts.channels import WebhookChannelConfig
from alerts.config import DEFAULT_TEAMS, AlertsConfig
from api.runtime import Runtime
from api.settings import ApiConfig, ApiKeyConfig, DrillScheduleConfig, Settings
from core.clock import ManualClock
from core.settings import DatabaseConfig
from listener.config import ListenerConfig, WatchConfig
from tests.access_support import every_stage
from tests.integration.test_drills import PR, VIEWER, settle

TWO_KEYS = ApiConfig(
    keys=[
        ApiKeyConfig(name="pat", key=PR["Authorization"][7:], role="pr"),
        ApiKeyConfig(name="vic", key=VIEWER["Authorization"][7:], role="viewer"),
    ]
)

World = tuple[httpx.AsyncClient, Runtime]


@pytest.fixture
async def overlapping(tmp_path: Path, clock: ManualClock) -> AsyncIterator[World]:
    """Two watches whose terms both match the drill's posts about Acme (the brand and
    its legal team's watch of the same name)."""
    settings = Settings(
        database=DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'cw.db'}"),
        api=TWO_KEYS,
        listener=ListenerConfig(
            watches=[
                WatchConfig(id="acme", brand="Acme", terms=["acme"]),
                WatchConfig(id="acme-legal", brand="Acme", terms=["acme"]),
            ]
        ),
    )
    async with every_stage(settings, clock) as both:
        yield both


async def test_a_drill_goes_to_its_own_watch_only(overlapping: World) -> None:
    """A drill on one watch opened drill incidents (and paged the teams) of every other
    watch whose query matched the scenario's posts; a drill of the same scenario on the
    other watch then joined that story and was never detected."""
    client, runtime = overlapping
    r = await client.post("/drills", headers=PR, json={"scenario": "rumour", "watch": "acme"})
    assert r.status_code == 201, r.text
    await settle(runtime)
    incidents = (await client.get("/incidents", headers=VIEWER)).json()["items"]
    assert [i["watch_id"] for i in incidents] == ["acme"], incidents
    r = await client.post("/drills", headers=PR, json={"scenario": "rumour", "watch": "acme-legal"})
    assert r.status_code == 201, r.text
    await settle(runtime)
    report = (await client.get(f"/drills/{r.json()['id']}/report", headers=VIEWER)).json()
    assert report["incident_id"] is not None, report


def test_scheduled_drills_on_a_watch_not_configured_are_refused_at_start_up() -> None:
    """``drills.watch`` with a typo passed check-config and start-up; each quarter's drill
    then failed with a log line only, and nobody learned there were no drills."""
    listener = ListenerConfig(watches=[WatchConfig(id="acme", brand="Acme", terms=["acme"])])
    with pytest.raises(ValidationError, match=r"drills.watch 'acmee' is not a configured watch"):
        Settings(listener=listener, drills=DrillScheduleConfig(enabled=True, watch="acmee"))
    Settings(listener=listener, drills=DrillScheduleConfig(enabled=True, watch="acme"))
    Settings(listener=listener, drills=DrillScheduleConfig(enabled=False, watch="acmee"))


@pytest.fixture
async def phones_only(tmp_path: Path, clock: ManualClock) -> AsyncIterator[World]:
    """A watch whose query matches the phone scenario's posts, not the rumour's."""
    settings = Settings(
        database=DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'cw.db'}"),
        api=TWO_KEYS,
        listener=ListenerConfig(
            watches=[WatchConfig(id="acme", brand="Acme", query="Acme AND phone")]
        ),
    )
    async with every_stage(settings, clock) as both:
        yield both


async def test_a_drill_after_one_refused_is_not_taken_for_its_repeat(phones_only: World) -> None:
    """A drill refused because the watch matched none of its posts left its drill id free
    (the record rolled back) and its posts' ids in dedup: the next drill took the same id,
    so its posts were "already seen" and it was refused too (409), whatever the scenario."""
    client, runtime = phones_only
    r = await client.post("/drills", headers=PR, json={"scenario": "rumour", "watch": "acme"})
    assert r.status_code == 409 and "matched none" in r.json()["detail"], r.text
    r = await client.post(
        "/drills", headers=PR, json={"scenario": "product_complaint", "watch": "acme"}
    )
    assert r.status_code == 201, r.text
    await settle(runtime)
    report = (await client.get(f"/drills/{r.json()['id']}/report", headers=VIEWER)).json()
    assert report["incident_id"] is not None, report


@pytest.fixture
async def channels_down(tmp_path: Path, clock: ManualClock) -> AsyncIterator[World]:
    """Every team's channel is a webhook nobody listens on: no alert gets out."""
    with socket.socket() as sock:  # a port with nothing behind it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = WebhookChannelConfig(url=f"http://127.0.0.1:{port}/hook", secret="s" * 32)
    settings = Settings(
        database=DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'cw.db'}"),
        api=TWO_KEYS,
        listener=ListenerConfig(watches=[WatchConfig(id="acme", brand="Acme", terms=["acme"])]),
        alerts=AlertsConfig(channels={f"{team}-console": down for team in DEFAULT_TEAMS}),
    )
    async with every_stage(settings, clock) as both:
        yield both


async def measures(client: httpx.AsyncClient, drill_id: int) -> dict[str, dict[str, Any]]:
    report = (await client.get(f"/drills/{drill_id}/report", headers=VIEWER)).json()
    return {m["what"].split(" ")[0]: m for m in report["measurements"]} | {
        "gaps": {"list": report["gaps"]}
    }


async def test_a_drill_whose_alerts_never_went_out_reports_the_gap(
    channels_down: World, clock: ManualClock
) -> None:
    """The report measured detection in event time (the drill's posts are dated in the
    past: always "met") and said nothing of the alert: a drill whose channels delivered
    nothing, acked from the console, had no gap at all."""
    client, runtime = channels_down
    r = await client.post("/drills", headers=PR, json={"scenario": "rumour", "watch": "acme"})
    assert r.status_code == 201, r.text
    await settle(runtime)
    incident = (await client.get("/incidents", headers=VIEWER)).json()["items"][0]
    clock.advance(60)
    assert (await client.post(f"/incidents/{incident['id']}/ack", headers=PR)).status_code == 200
    got = await measures(client, r.json()["id"])
    assert got["detection"]["verdict"] == "met" and got["acknowledgement"]["verdict"] == "met"
    assert got["alert"]["verdict"] == "not done", got
    assert (
        "alert delivered (drill start to the first alert sent): not done" in (got["gaps"]["list"])
    )


async def test_the_alert_of_a_drill_is_measured_from_its_start_in_wall_time(
    overlapping: World, clock: ManualClock
) -> None:
    client, runtime = overlapping
    r = await client.post("/drills", headers=PR, json={"scenario": "rumour", "watch": "acme"})
    assert r.status_code == 201, r.text
    clock.advance(12 * 60)  # the pipeline is backed up: the alert goes out 12 min late
    await settle(runtime)
    got = await measures(client, r.json()["id"])
    assert got["alert"]["verdict"] == "missed" and got["alert"]["seconds"] == 12 * 60, got
    assert got["detection"]["verdict"] == "met"  # (event time: blind to the delay)
