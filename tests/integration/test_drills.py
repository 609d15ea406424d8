"""A crisis drill end to end on the embedded pipeline with a ManualClock: the scenario's
mentions go through listener, scorer, detector and alerter as a drill; people work the
drill incident; the drill report measures it against the plan and names the gaps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.audit import list_entries
from api.drills import SCENARIOS, DrillSchedule
from api.runtime import Role, Runtime
from api.settings import ApiConfig, ApiKeyConfig, DrillScheduleConfig, Settings
from core.bus.memory import MemoryBus
from core.clock import ManualClock
from core.db import unit_of_work
from core.events import TOPIC_MENTIONS
from core.settings import DatabaseConfig
from listener.config import ListenerConfig, WatchConfig
from tests.access_support import make_template
from tests.fakes import FakeClassifier

PR = {"Authorization": "Bearer pr-key-0123456789abcdef"}
VIEWER = {"Authorization": "Bearer viewer-key-0123456789abcdef"}
ACME_PR = {"X-API-Key": "acme-only-pr-key-0123456789"}
ACME_VIEWER = {"X-API-Key": "acme-only-viewer-key-0123456789"}


@pytest.fixture
async def world(
    tmp_path: Path, clock: ManualClock
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    settings = Settings(
        database=DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'cw.db'}"),
        api=ApiConfig(
            keys=[
                ApiKeyConfig(name="pat", key=PR["Authorization"][7:], role="pr"),
                ApiKeyConfig(name="vic", key=VIEWER["Authorization"][7:], role="viewer"),
                ApiKeyConfig(name="acme-pr", key=ACME_PR["X-API-Key"], role="pr", watches=["acme"]),
                ApiKeyConfig(
                    name="acme-vic", key=ACME_VIEWER["X-API-Key"], role="viewer", watches=["acme"]
                ),
            ]
        ),
        listener=ListenerConfig(
            watches=[
                WatchConfig(id="acme", brand="Acme", terms=["acme"]),
                WatchConfig(id="globex", brand="Globex", terms=["globex"]),
            ]
        ),
    )
    runtime = Runtime(settings, clock=clock, classifier=FakeClassifier(), migrate=True)
    app = create_app(runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cw") as client:
            yield client, runtime


async def settle(runtime: Runtime) -> None:
    """Every signal applied and every alert sent: the sending a signal starts runs beside
    the tick (it may hold the rows the tick would claim), so both are waited for."""
    assert isinstance(runtime.bus, MemoryBus) and runtime.alerter is not None
    await runtime.bus.join()
    await runtime.alerter.sent()
    await runtime.alerter.tick()
    await runtime.alerter.sent()


def test_three_scenarios_ship() -> None:
    assert {"product_complaint", "executive_remark", "rumour"} <= set(SCENARIOS)


async def test_a_drill_runs_end_to_end_and_reports_its_gaps(
    world: tuple[httpx.AsyncClient, Runtime], clock: ManualClock
) -> None:
    client, runtime = world
    r = await client.post(
        "/drills", headers=PR, json={"scenario": "product_complaint", "watch": "acme"}
    )
    assert r.status_code == 201, r.text
    drill = r.json()
    await settle(runtime)

    page = (await client.get("/incidents", headers=VIEWER)).json()
    assert page["total"] == 1, page
    incident = page["items"][0]
    assert incident["drill"] is True and ":drill:" in incident["story_id"]
    assert incident["tier"] == 3
    assert incident["title"]

    clock.advance(3 * 60)
    r = await client.post(f"/incidents/{incident['id']}/ack", headers=PR)
    assert r.status_code == 200, r.text
    clock.advance(20 * 60)  # the statement comes late
    template_id = await make_template(runtime, clock, until="approved")
    r = await client.post(
        f"/incidents/{incident['id']}/responses",
        headers=PR,
        json={"template_id": template_id, "variables": {"product": "X2"}},
    )
    assert r.status_code == 201, r.text
    assert r.json()["text"].startswith("[DRILL]") or "DRILL" in r.json()["text"]

    report = (await client.get(f"/drills/{drill['id']}/report", headers=VIEWER)).json()
    assert report["incident_id"] == incident["id"] and report["tier"] == 3
    verdicts = {m["what"].split(" ")[0]: m for m in report["measurements"]}
    assert verdicts["detection"]["verdict"] == "met"
    assert 0 <= verdicts["detection"]["seconds"] <= 6 * 60  # event time, first signal
    assert (verdicts["acknowledgement"]["seconds"], verdicts["acknowledgement"]["verdict"]) == (
        180,
        "met",
    )
    assert verdicts["approved"]["verdict"] == "missed"
    assert verdicts["approved"]["seconds"] == 23 * 60
    assert report["gaps"] == [
        "approved statement (first template use): missed (1380 s, target 600 s)"
    ]
    md = (await client.get(f"/drills/{drill['id']}/report?format=md", headers=VIEWER)).text
    assert md.startswith(f"# DRILL report {drill['id']}: product_complaint")
    assert "| **missed** |" in md

    listed = (await client.get("/drills", headers=VIEWER)).json()
    assert listed["total"] == 1 and listed["items"][0]["started_by"] == "pat"


async def test_drill_errors(world: tuple[httpx.AsyncClient, Runtime]) -> None:
    client, _ = world
    cases = [
        ({"scenario": "alien_invasion", "watch": "acme"}, 422, "unknown scenario"),
        ({"scenario": "rumour", "watch": "nope"}, 422, "unknown watch"),
        ({"scenario": "rumour"}, 422, "watch"),
    ]
    for body, code, text in cases:
        r = await client.post("/drills", headers=PR, json=body)
        assert r.status_code == code and text in r.text, r.text
    assert (await client.post("/drills", headers=VIEWER, json=cases[0][0])).status_code == 403
    assert (await client.get("/drills/999/report", headers=VIEWER)).status_code == 404


async def test_a_scoped_key_drills_and_reads_only_its_watches(
    world: tuple[httpx.AsyncClient, Runtime],
) -> None:
    client, runtime = world
    for watch in ("globex", "nope"):  # refused before the watch is looked up
        r = await client.post(
            "/drills", headers=ACME_PR, json={"scenario": "rumour", "watch": watch}
        )
        assert r.status_code == 403 and f"not scoped to watch {watch!r}" in r.text, r.text
    await settle(runtime)
    assert (await client.get("/drills", headers=VIEWER)).json()["total"] == 0
    assert (await client.get("/incidents", headers=VIEWER)).json()["total"] == 0

    r = await client.post("/drills", headers=ACME_PR, json={"scenario": "rumour", "watch": "acme"})
    assert r.status_code == 201, r.text
    mine = r.json()["id"]
    r = await client.post("/drills", headers=PR, json={"scenario": "rumour", "watch": "globex"})
    assert r.status_code == 201, r.text
    theirs = r.json()["id"]
    await settle(runtime)

    listed = (await client.get("/drills", headers=ACME_VIEWER)).json()
    assert [d["id"] for d in listed["items"]] == [mine] and listed["total"] == 1
    listed = (await client.get("/drills?watch=acme", headers=ACME_VIEWER)).json()
    assert [d["id"] for d in listed["items"]] == [mine]
    r = await client.get("/drills?watch=globex", headers=ACME_VIEWER)
    assert r.status_code == 403 and "not scoped to watch 'globex'" in r.text
    listed = (await client.get("/drills", headers=VIEWER)).json()
    assert [d["id"] for d in listed["items"]] == [theirs, mine]  # unscoped: every drill
    listed = (await client.get("/drills?watch=globex", headers=VIEWER)).json()
    assert [d["id"] for d in listed["items"]] == [theirs]

    for fmt in ("json", "md"):
        r = await client.get(f"/drills/{theirs}/report?format={fmt}", headers=ACME_VIEWER)
        assert r.status_code == 403 and f"the watch of drill {theirs}" in r.text, r.text
        assert "globex" not in r.text  # another watch's drill does not name its watch
        r = await client.get(f"/drills/{mine}/report?format={fmt}", headers=ACME_VIEWER)
        assert r.status_code == 200, r.text
    r = await client.get("/drills/999/report", headers=ACME_VIEWER)  # as another watch's
    assert r.status_code == 403 and "(or drill 999 does not exist)" in r.text, r.text
    report = (await client.get(f"/drills/{theirs}/report", headers=VIEWER)).json()
    assert report["drill"]["watch_id"] == "globex"


async def test_the_schedule_runs_the_scenarios_in_turn(
    world: tuple[httpx.AsyncClient, Runtime], clock: ManualClock
) -> None:
    client, runtime = world
    schedule = DrillSchedule(runtime)
    first = await schedule.run_next()
    await settle(runtime)
    clock.advance(91 * 24 * 3600)  # the next quarter
    second = await schedule.run_next()
    assert first is not None and second is not None
    assert [first.scenario, second.scenario] == sorted(SCENARIOS)[:2]
    assert first.started_by == "scheduler"
    await settle(runtime)
    page = (await client.get("/incidents", headers=VIEWER)).json()
    assert page["total"] == 2 and all(i["drill"] for i in page["items"])
    for drill in (first, second):
        report = (await client.get(f"/drills/{drill.id}/report", headers=VIEWER)).json()
        assert report["incident_id"] is not None
        assert "acknowledgement: not done" in report["gaps"]


async def test_a_scheduled_drill_is_audited_as_the_system(
    world: tuple[httpx.AsyncClient, Runtime],
) -> None:
    """No person starts a scheduled drill: the audit log says the system did (an operator
    reading it learns where the drill incidents came from)."""
    _, runtime = world
    drill = await DrillSchedule(runtime).run_next()
    assert drill is not None and runtime.sessions is not None
    async with unit_of_work(runtime.sessions) as session:
        entries, total = await list_entries(session, action="drill.start")
    assert total == 1
    entry = entries[0]
    assert (entry.actor, entry.role, entry.target_type, entry.target_id) == (
        "system:scheduler",
        "system",
        "drill",
        str(drill.id),
    )
    assert entry.after is not None and entry.after["scenario"] == drill.scenario
    assert entry.after["started_by"] == "scheduler"


def test_a_bad_drill_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match=r"drills\.cron"):
        DrillScheduleConfig(cron="every quarter")
    assert DrillScheduleConfig().enabled is False


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
async def test_every_scenario_is_detected_as_a_drill(
    world: tuple[httpx.AsyncClient, Runtime], scenario: str
) -> None:
    client, runtime = world
    r = await client.post("/drills", headers=PR, json={"scenario": scenario, "watch": "acme"})
    assert r.status_code == 201, r.text
    await settle(runtime)
    report = (await client.get(f"/drills/{r.json()['id']}/report", headers=VIEWER)).json()
    assert report["incident_id"] is not None and report["tier"] >= 2, report
    incident = (await client.get(f"/incidents/{report['incident_id']}", headers=VIEWER)).json()
    assert incident["drill"] is True
    assert all(d["status"] != "failed" for d in incident["deliveries"])


async def test_a_listener_only_process_records_and_injects_scheduled_drills(
    tmp_path: Path, clock: ManualClock
) -> None:
    """The distributed `crisiswatch listener` runs the schedule: the drill's row goes to the
    database (where an API process lists it) and its mentions onto the bus."""
    db = DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'cw.db'}")
    listener = ListenerConfig(watches=[WatchConfig(id="acme", brand="Acme", terms=["acme"])])
    settings = Settings(database=db, listener=listener, drills=DrillScheduleConfig(enabled=True))
    runtime = Runtime(settings, roles=frozenset({Role.LISTENER}), clock=clock, migrate=True)
    await runtime.start()
    try:
        assert runtime.sessions is not None and isinstance(runtime.bus, MemoryBus)
        drill = await DrillSchedule(runtime).run_next()
        assert drill is not None and drill.started_by == "scheduler"
        topic = runtime.bus._topics[TOPIC_MENTIONS]
        assert topic.end == drill.mentions  # every drill mention published, none dropped
    finally:
        await runtime.stop()
    api_settings = Settings(
        database=db,
        listener=listener,
        api=ApiConfig(
            keys=[ApiKeyConfig(name="vic", key=VIEWER["Authorization"][7:], role="viewer")]
        ),
    )
    api = Runtime(api_settings, roles=frozenset({Role.API}), clock=clock)
    app = create_app(api)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cw") as client:
            page = (await client.get("/drills", headers=VIEWER)).json()
    assert page["total"] == 1 and page["items"][0]["id"] == drill.id


async def test_a_listener_without_a_database_schedules_no_drill_and_says_why(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    listener = ListenerConfig(watches=[WatchConfig(id="acme", brand="Acme", terms=["acme"])])
    settings = Settings(listener=listener, drills=DrillScheduleConfig(enabled=True))
    runtime = Runtime(settings, roles=frozenset({Role.LISTENER}), clock=clock)
    await runtime.start()
    try:
        assert runtime.sessions is None  # no database.url: the listener keeps none
        schedule = DrillSchedule(runtime)
        await schedule.start()
        assert schedule._scheduler is None
        assert "no database" in caplog.text and "database.url" in caplog.text
        assert await schedule.run_next() is None  # asked anyway: refused, said why
        assert "no database to record the drill in" in caplog.text
    finally:
        await runtime.stop()
