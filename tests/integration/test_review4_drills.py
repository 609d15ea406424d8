"""Crisis drills after review 4 (each test failed before its fix): a second drill of one
scenario on one watch joined the first one's story and was never detected; two
schedulers (API replicas) both started the quarter's drill, and a restart ran the first
scenario again; a process with a bus but no listener answered 500 when the bus refused
the mentions; a drill incident merged into an older drill's incident took that one's
ack and heat as its own (an ack "met" before the drill began, a negative detection)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.drills import SCENARIOS, DrillSchedule
from api.runtime import Runtime
from api.settings import ApiConfig, ApiKeyConfig, Settings
from core.clock import ManualClock
from core.settings import DatabaseConfig
from listener.config import ListenerConfig, WatchConfig
from tests.fakes import FakeClassifier
from tests.integration.test_drills import PR, VIEWER, settle, world  # noqa: F401

World = tuple[httpx.AsyncClient, Runtime]


async def drills_total(client: httpx.AsyncClient) -> int:
    total: int = (await client.get("/drills", headers=VIEWER)).json()["total"]
    return total


async def test_a_second_drill_of_one_scenario_on_one_watch_is_refused_while_the_first_lives(
    world: World,  # noqa: F811
    clock: ManualClock,
) -> None:
    client, runtime = world
    body = {"scenario": "rumour", "watch": "acme"}
    r = await client.post("/drills", headers=PR, json=body)
    assert r.status_code == 201, r.text
    r = await client.post("/drills", headers=PR, json=body)
    assert r.status_code == 409 and "would join it" in r.json()["detail"], r.text
    assert await drills_total(client) == 1
    # another scenario (its own story) and another watch run alongside
    r = await client.post("/drills", headers=PR, json={"scenario": "rumour", "watch": "globex"})
    assert r.status_code == 201, r.text
    r = await client.post(
        "/drills", headers=PR, json={"scenario": "product_complaint", "watch": "acme"}
    )
    assert r.status_code == 201, r.text
    await settle(runtime)
    for drill in (await client.get("/drills", headers=VIEWER)).json()["items"]:
        report = (await client.get(f"/drills/{drill['id']}/report", headers=VIEWER)).json()
        assert report["incident_id"] is not None, report
    clock.advance(runtime.settings.detector.story_expiry_hours * 3600 - 60)
    assert (await client.post("/drills", headers=PR, json=body)).status_code == 409
    clock.advance(7 * 60 + 1)  # the story expiry, from the new drill's first post
    r = await client.post("/drills", headers=PR, json=body)
    assert r.status_code == 201, r.text


async def test_a_scenario_repeated_months_later_is_detected(
    world: World,  # noqa: F811
    clock: ManualClock,
) -> None:
    client, runtime = world
    body = {"scenario": "rumour", "watch": "acme"}
    assert (await client.post("/drills", headers=PR, json=body)).status_code == 201
    await settle(runtime)
    clock.advance(3 * 91 * 24 * 3600)  # the schedule's turn comes back to it
    r = await client.post("/drills", headers=PR, json=body)
    assert r.status_code == 201, r.text
    await settle(runtime)
    report = (await client.get(f"/drills/{r.json()['id']}/report", headers=VIEWER)).json()
    assert report["incident_id"] is not None, report


async def test_two_schedulers_start_one_drill_and_the_turn_survives_a_restart(
    world: World,  # noqa: F811
    clock: ManualClock,
) -> None:
    client, runtime = world
    replica_a, replica_b = DrillSchedule(runtime), DrillSchedule(runtime)
    first = await replica_a.run_next()
    assert first is not None
    assert await replica_b.run_next() is None  # the same firing, on another replica
    assert await drills_total(client) == 1
    clock.advance(91 * 24 * 3600)
    restarted = DrillSchedule(runtime)  # a deploy between quarters
    second = await restarted.run_next()
    assert second is not None
    assert [first.scenario, second.scenario] == sorted(SCENARIOS)[:2]
    assert await drills_total(client) == 2


async def test_a_bus_that_refuses_the_mentions_gives_503_and_records_nothing(
    world: World,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, runtime = world
    assert runtime.bus is not None

    async def refuse(topic: str, events: Any) -> None:
        raise RuntimeError("the bus is halted")

    monkeypatch.setattr(runtime, "listener", None)  # a process with a bus, no listener
    monkeypatch.setattr(runtime.bus, "publish_many", refuse)
    r = await client.post("/drills", headers=PR, json={"scenario": "rumour", "watch": "acme"})
    assert r.status_code == 503 and "no drill was started" in r.json()["detail"], r.text
    assert await drills_total(client) == 0


async def test_a_drill_merged_into_an_older_drill_is_measured_on_its_own_times(
    world: World,  # noqa: F811
    clock: ManualClock,
) -> None:
    client, runtime = world
    r = await client.post("/drills", headers=PR, json={"scenario": "rumour", "watch": "acme"})
    older = r.json()
    await settle(runtime)
    old_incident = (await client.get("/incidents", headers=VIEWER)).json()["items"][0]
    clock.advance(60)
    assert (await client.post(f"/incidents/{old_incident['id']}/ack", headers=PR)).is_success

    clock.advance(2 * 3600)
    r = await client.post(
        "/drills", headers=PR, json={"scenario": "product_complaint", "watch": "acme"}
    )
    assert r.status_code == 201, r.text
    drill = r.json()
    await settle(runtime)
    items = (await client.get("/incidents", headers=VIEWER)).json()["items"]
    new_incident = next(i for i in items if i["id"] != old_incident["id"])
    clock.advance(60)
    r = await client.post(
        f"/incidents/{new_incident['id']}/merge", headers=PR, json={"into": old_incident["id"]}
    )
    assert r.status_code == 200, r.text

    report = (await client.get(f"/drills/{drill['id']}/report", headers=VIEWER)).json()
    got = {m["what"].split(" ")[0]: m for m in report["measurements"]}
    assert 0 <= got["detection"]["seconds"] <= 6 * 60, report  # not the older drill's heat
    assert got["acknowledgement"]["verdict"] == "not done", report  # acked before it began
    report = (await client.get(f"/drills/{older['id']}/report", headers=VIEWER)).json()
    got = {m["what"].split(" ")[0]: m for m in report["measurements"]}
    assert (got["acknowledgement"]["seconds"], got["acknowledgement"]["verdict"]) == (60, "met")


async def test_a_drill_that_its_watch_does_not_match_is_refused_not_silently_empty(
    tmp_path: Path, clock: ManualClock
) -> None:
    """A watch whose query does not match the scenario's posts (only complaints in
    Chinese, say): every mention came out unmatched, nothing was published, and the drill
    was recorded and reported 'not detected'. Now a 409 that says why; nothing recorded."""
    settings = Settings(
        database=DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'cw.db'}"),
        api=ApiConfig(keys=[ApiKeyConfig(name="pat", key=PR["Authorization"][7:], role="pr")]),
        listener=ListenerConfig(
            watches=[WatchConfig(id="narrow", brand="Acme", query="acme AND 退款")]
        ),
    )
    runtime = Runtime(settings, clock=clock, classifier=FakeClassifier(), migrate=True)
    app = create_app(runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cw") as client:
            r = await client.post(
                "/drills", headers=PR, json={"scenario": "rumour", "watch": "narrow"}
            )
            assert r.status_code == 409, r.text
            assert "matched none of the drill's" in r.json()["detail"]
            assert (await client.get("/drills", headers=PR)).json()["total"] == 0
