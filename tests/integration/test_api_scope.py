"""Keys scoped to some watches: the audit log and on-call show only what concerns their
watches, a refusal does not name another watch; silences say when they were released."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from alerts.config import AlertsConfig
from alerts.service import AlertService
from alerts.workflow.drills import Drill
from api import audit
from api.auth import Principal
from api.runtime import Runtime
from api.settings import ApiConfig, ApiKeyConfig, Settings
from core.bus.memory import MemoryBus
from core.clock import ManualClock
from core.db import unit_of_work
from core.settings import DatabaseConfig
from tests.access_support import KEYS, api_app, key_headers, make_template, open_incident, served

ACME_KEY = "acme-scoped-key-0123456789"
GLOBEX_KEY = "globex-scoped-key-0123456789"
BETA_KEY = "beta-scoped-key-0123456789"
ACME = {"X-API-Key": ACME_KEY}
GLOBEX = {"X-API-Key": GLOBEX_KEY}
BETA = {"X-API-Key": BETA_KEY}
ADMIN = key_headers("admin")
SCOPED_KEYS = [
    ApiKeyConfig(name="acme-admin", key=ACME_KEY, role="admin", watches=["acme"]),
    ApiKeyConfig(name="globex-viewer", key=GLOBEX_KEY, role="viewer", watches=["globex"]),
    ApiKeyConfig(name="beta-viewer", key=BETA_KEY, role="viewer", watches=["beta"]),
]


@asynccontextmanager
async def scoped_api(
    url: str, clock: ManualClock, alerts: AlertsConfig | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    keys = [ApiKeyConfig(name=role, key=key, role=role) for role, key in KEYS.items()]
    settings = Settings(
        database=DatabaseConfig(url=url),
        api=ApiConfig(keys=keys + SCOPED_KEYS),
        alerts=alerts or AlertsConfig(),
    )
    async with served(*api_app(settings, clock)) as both:
        yield both


def silence(**matchers: object) -> dict[str, object]:
    return {"matchers": matchers, "ends_at": "2099-01-01T00:00:00Z", "reason": "known noise"}


async def entries(client: httpx.AsyncClient, headers: dict[str, str], query: str = "") -> Any:
    r = await client.get(f"/audit{query}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def add_drill(
    runtime: Runtime, clock: ManualClock, watch: str, *, audited: bool = False
) -> int:
    """A drill as ``POST /drills`` records it (starting one needs a listener)."""
    assert runtime.sessions is not None
    async with unit_of_work(runtime.sessions) as session:
        drill = Drill(
            scenario="rumour",
            watch_id=watch,
            story_root=f"bluesky:{watch}",
            mentions=3,
            first_mention_at=clock.now(),
            started_at=clock.now(),
            started_by="admin",
        )
        session.add(drill)
        await session.flush()
        if audited:
            after = {"watch_id": watch}
            who = Principal("admin", "admin")
            audit.record(
                session, who, "drill.start", "drill", drill.id, at=clock.now(), after=after
            )
        return drill.id


def targets(page: Any) -> set[tuple[str, str]]:
    return {(e["target_type"], e["target_id"]) for e in page["items"]}


async def test_a_scoped_key_reads_only_the_audit_entries_of_its_watches(
    db_url: str, clock: ManualClock
) -> None:
    async with scoped_api(db_url, clock) as (client, runtime):
        acme = await open_incident(runtime, clock, watch="acme")
        globex = await open_incident(runtime, clock, watch="globex")
        for incident in (acme, globex):
            r = await client.post(f"/incidents/{incident}/ack", headers=ADMIN)
            assert r.status_code == 200, r.text
        made = {}
        for name, matchers in (
            ("acme", {"watch": ["acme"]}),
            ("globex", {"watch": ["globex"]}),
            ("both", {"watch": ["acme", "globex"]}),
            ("every watch", {"tier": [3]}),
        ):
            r = await client.post("/silences", headers=ADMIN, json=silence(**matchers))
            assert r.status_code == 201, r.text
            made[name] = str(r.json()["id"])
        template = await make_template(runtime, clock)
        r = await client.post(f"/templates/{template}/versions/1/submit", headers=ADMIN)
        assert r.status_code == 200, r.text
        acme_drill = str(await add_drill(runtime, clock, "acme", audited=True))
        globex_drill = str(await add_drill(runtime, clock, "globex", audited=True))

        everything = await entries(client, ADMIN)
        assert everything["total"] == 9  # 2 acks, 4 silences, 1 submit, 2 drills
        mine = {("incident", str(acme)), ("silence", made["acme"]), ("drill", acme_drill)}
        page = await entries(client, ACME)
        assert targets(page) == mine and page["total"] == 3
        assert targets(await entries(client, ACME, "?watch=acme")) == mine
        page = await entries(client, ACME, "?target_type=silence")
        assert targets(page) == {("silence", made["acme"])} and page["total"] == 1
        page = await entries(client, ACME, f"?target_type=incident&target_id={globex}")
        assert page == {"items": [], "total": 0, "limit": 50, "offset": 0}
        page = await entries(client, ACME, "?limit=1&offset=1")
        assert len(page["items"]) == 1 and page["total"] == 3
        r = await client.get("/audit?watch=globex", headers=ACME)
        assert r.status_code == 403 and "not scoped to watch 'globex'" in r.json()["detail"]
        # an unscoped key may narrow to one watch too
        theirs = {("incident", str(globex)), ("silence", made["globex"]), ("drill", globex_drill)}
        assert targets(await entries(client, ADMIN, "?watch=globex")) == theirs
        assert (await entries(client, ADMIN, "?watch=nothing-here"))["total"] == 0


def _alerts() -> AlertsConfig:
    teams = ("acme-pr", "globex-pr", "globex-social", "shared-legal", "eu-desk", "exec", "idle")
    return AlertsConfig.model_validate(
        {
            "channels": {team: {"type": "console"} for team in teams},
            "people": {"ann": {}, "bo": {}},
            "teams": {
                team: {
                    "channels": [team],
                    "rota": {"start": "2026-01-01T09:00:00Z", "people": ["ann", "bo"]},
                }
                for team in teams
            },
            "watch_labels": {"beta": {"region": "eu"}},
            "routes": {
                "teams": ["shared-legal"],  # watches no child matches (gamma)
                "routes": [
                    {
                        "match": {"watch": ["acme"]},
                        "teams": ["acme-pr"],
                        "routes": [{"match": {"tier": [3]}, "teams": ["acme-pr", "shared-legal"]}],
                    },
                    {
                        "match": {"watch": ["globex"], "source": ["bluesky"]},
                        "teams": ["globex-social"],
                    },
                    {"match": {"watch": ["globex"]}, "teams": ["globex-pr"]},
                    {"match": {"labels": {"region": "eu"}}, "teams": ["eu-desk"]},
                ],
            },
            "escalation_policies": {
                "page-exec": {"steps": [{"after": "PT5M", "notify": {"on_call_of": ["exec"]}}]}
            },
            "escalation": {1: None, 2: None, 3: "page-exec"},
        }
    )


async def test_a_scoped_key_sees_on_call_only_for_the_teams_of_its_watches(
    sqlite_url: str, clock: ManualClock
) -> None:
    async def teams(headers: dict[str, str], query: str = "") -> list[str]:
        r = await client.get(f"/oncall{query}", headers=headers)
        assert r.status_code == 200, r.text
        assert all(row["person"] in ("ann", "bo") for row in r.json())
        return [row["team"] for row in r.json()]

    async with scoped_api(sqlite_url, clock, _alerts()) as (client, _):
        everyone = ["acme-pr", "eu-desk", "exec", "globex-pr", "globex-social", "idle"]
        assert await teams(key_headers("viewer")) == [*everyone, "shared-legal"]
        # acme: its route (and its tier-3 child); exec is paged at tier 3 for every watch
        assert await teams(ACME) == ["acme-pr", "exec", "shared-legal"]
        # globex: the bluesky route may match, the next one then does
        assert await teams(GLOBEX) == ["exec", "globex-pr", "globex-social"]
        assert await teams(BETA) == ["eu-desk", "exec"]  # by its watch_labels
        assert await teams(key_headers("viewer"), "?watch=gamma") == ["exec", "shared-legal"]
        assert await teams(ACME, "?watch=acme") == ["acme-pr", "exec", "shared-legal"]
        r = await client.get("/oncall?watch=globex", headers=ACME)
        assert r.status_code == 403 and "not scoped to watch 'globex'" in r.json()["detail"]
        # ?tier=: the teams an alert of that tier reaches (routes, escalation, playbook)
        assert await teams(ACME, "?watch=acme&tier=1") == ["acme-pr"]
        assert await teams(ACME, "?watch=acme&tier=3") == ["acme-pr", "exec", "shared-legal"]
        assert await teams(ACME, "?tier=2") == ["acme-pr"]
        assert await teams(GLOBEX, "?tier=3") == ["exec", "globex-pr", "globex-social"]
        assert await teams(key_headers("viewer"), "?watch=gamma&tier=1") == ["shared-legal"]
        # no watch configured here: every watch the routes name, and any other
        assert await teams(key_headers("viewer"), "?tier=1") == [
            "acme-pr", "eu-desk", "globex-pr", "globex-social", "shared-legal",
        ]  # fmt: skip
        for bad in ("?tier=0", "?tier=4", "?tier=x"):
            r = await client.get(f"/oncall{bad}", headers=ACME)
            assert r.status_code == 422, (bad, r.text)


async def test_a_silence_says_when_its_muted_incidents_were_released(
    sqlite_url: str, clock: ManualClock
) -> None:
    async with scoped_api(sqlite_url, clock) as (client, runtime):
        r = await client.post("/silences", headers=ADMIN, json=silence(watch=["acme"], tier=[2]))
        assert r.status_code == 201, r.text
        ended = r.json()
        assert ended["released_at"] is None
        live = (await client.post("/silences", headers=ADMIN, json=silence(watch=["beta"]))).json()
        muted = await open_incident(runtime, clock, watch="acme", tier=2)
        clock.advance(600)
        r = await client.delete(f"/silences/{ended['id']}", headers=ADMIN)
        assert r.status_code == 200 and r.json()["released_at"] is None, r.text

        clock.advance(5)  # the alerter's next tick
        assert runtime.sessions is not None
        async with httpx.AsyncClient() as http:
            metrics = runtime.metrics
            bus = MemoryBus(metrics=metrics)
            alerts = runtime.settings.alerts
            service = AlertService(bus, runtime.sessions, alerts, http, clock, metrics)
            try:
                assert await service.release_silences() == 1
            finally:
                service.jobs.close()
        released_at = clock.now()

        r = await client.get("/silences?include_expired=true", headers=ADMIN)
        by_id = {s["id"]: s for s in r.json()}
        assert by_id[ended["id"]]["released_at"] is not None
        assert by_id[ended["id"]]["released_at"].replace("Z", "+00:00") == released_at.isoformat()
        assert by_id[live["id"]]["released_at"] is None
        active = (await client.get("/silences", headers=ADMIN)).json()
        assert [(s["id"], s["released_at"]) for s in active] == [(live["id"], None)]
        # the released incident's timeline says so, at the same time
        detail = (await client.get(f"/incidents/{muted}", headers=ADMIN)).json()
        (event,) = [e for e in detail["timeline"] if e["kind"] == "unsilenced"]
        assert event["detail"]["silence"] == ended["id"]
        # expiring it again answers with its release time
        r = await client.delete(f"/silences/{ended['id']}", headers=ADMIN)
        assert r.status_code == 200 and r.json()["released_at"] is not None


async def test_refusals_of_a_scoped_key_never_name_the_other_watch(
    sqlite_url: str, clock: ManualClock
) -> None:
    async with scoped_api(sqlite_url, clock) as (client, runtime):
        mine = await open_incident(runtime, clock, watch="acme")
        other = await open_incident(runtime, clock, watch="globex")
        template = await make_template(runtime, clock, until="approved")
        r = await client.post("/silences", headers=ADMIN, json=silence(watch=["acme", "globex"]))
        shared = r.json()["id"]
        drill = await add_drill(runtime, clock, "globex")
        on = f"/incidents/{other}"
        calls: list[tuple[str, str, dict[str, Any] | None]] = [
            ("GET", on, None),
            ("POST", f"{on}/ack", None),
            ("POST", f"{on}/resolve", None),
            ("POST", f"{on}/response", {"kind": "reply"}),
            ("POST", f"{on}/mitigate", None),
            ("POST", f"{on}/close", None),
            ("POST", f"{on}/merge", {"into": mine}),
            ("POST", f"/incidents/{mine}/merge", {"into": other}),
            ("GET", f"{on}/roles", None),
            ("PUT", f"{on}/roles/incident_lead", {"person": "ann"}),
            ("DELETE", f"{on}/roles/incident_lead", None),
            ("GET", f"{on}/tasks", None),
            ("PATCH", f"{on}/tasks/1", {"status": "done"}),
            ("POST", f"{on}/notes", {"text": "seen"}),
            ("GET", f"{on}/timeline", None),
            ("GET", f"{on}/tier-history", None),
            ("GET", f"{on}/evidence", None),
            ("GET", f"{on}/report", None),
            ("GET", f"{on}/template-suggestions", None),
            ("GET", f"{on}/responses", None),
            ("POST", f"{on}/responses", {"template_id": template}),
            ("POST", f"/templates/{template}/preview", {"incident_id": other}),
            ("GET", f"/drills/{drill}/report", None),
            ("DELETE", f"/silences/{shared}", None),
        ]
        for method, path, body in calls:
            r = await client.request(method, path, headers=ACME, json=body)
            assert r.status_code == 403, (method, path, r.text)
            assert "globex" not in r.text and "not scoped to" in r.text, (method, path, r.text)
        # nothing changed; each attempt is audited as refused (api.audit)
        changed = await entries(client, ADMIN, "?action=silence.expire&outcome=ok")
        assert changed["total"] == 0
        refused = await entries(client, ADMIN, "?action=silence.expire&outcome=forbidden")
        assert [(e["actor"], e["target_id"]) for e in refused["items"]] == [
            ("acme-admin", str(shared))
        ]
        untouched = (await client.get(on, headers=ADMIN)).json()
        assert untouched["status"] == "open" and untouched["merged_into_id"] is None
