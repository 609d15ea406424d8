"""Silences, on-call and responses over HTTP: roles, clear 4xx, the author from the key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from alerts.config import AlertsConfig
from api.app import create_app
from api.runtime import Role, Runtime
from api.settings import ApiConfig, ApiKeyConfig, Settings
from core.clock import ManualClock
from core.settings import DatabaseConfig
from tests.integration.test_api import open_incident
from tests.support import RESPONDER_KEY, VIEWER_KEY


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def client(
    tmp_path: Path, clock: ManualClock
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    alerts = AlertsConfig.model_validate(
        {
            "people": {"olga": {"phone": "+8613800000000"}},
            "teams": {
                "customer_service": {"channels": ["customer_service-console"]},
                "pr": {
                    "channels": ["pr-console"],
                    "rota": {"start": "2026-01-01T09:00:00+00:00", "people": ["olga"]},
                },
                "marketing": {"channels": ["marketing-console"]},
                "legal": {"channels": ["legal-console"]},
                "executives": {"channels": ["executives-console"]},
            },
        }
    )
    settings = Settings(
        database=DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'api.db'}"),
        api=ApiConfig(
            keys=[
                ApiKeyConfig(name="maria", key=RESPONDER_KEY, role="responder"),
                ApiKeyConfig(name="watcher", key=VIEWER_KEY, role="viewer"),
            ]
        ),
        alerts=alerts,
    )
    runtime = Runtime(settings, clock=clock, migrate=True, roles=frozenset({Role.API}))
    app = create_app(runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cw") as http:
            yield http, runtime


async def test_silences_are_created_listed_and_expired(
    client: tuple[httpx.AsyncClient, Runtime], clock: ManualClock
) -> None:
    http, _ = client
    ends = (clock.now() + timedelta(hours=2)).isoformat()
    body = {"matchers": {"watch": ["acme"], "tier": [1]}, "ends_at": ends, "reason": "known"}
    assert (await http.post("/silences", json=body, headers=auth(VIEWER_KEY))).status_code == 403
    created = await http.post("/silences", json=body, headers=auth(RESPONDER_KEY))
    assert created.status_code == 201, created.text
    silence = created.json()
    assert silence["author"] == "maria" and silence["matchers"] == {"tier": [1], "watch": ["acme"]}
    listed = (await http.get("/silences", headers=auth(VIEWER_KEY))).json()
    assert [s["id"] for s in listed] == [silence["id"]]
    gone = await http.delete(f"/silences/{silence['id']}", headers=auth(RESPONDER_KEY))
    assert gone.status_code == 200
    assert (await http.get("/silences", headers=auth(VIEWER_KEY))).json() == []
    missing = await http.delete("/silences/999", headers=auth(RESPONDER_KEY))
    assert missing.status_code == 404 and "silence 999" in missing.json()["detail"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"matchers": {}, "reason": "x"}, "at least one matcher"),
        ({"matchers": {"tier": [1]}, "reason": "x", "past": True}, "in the future"),
        ({"matchers": {"tier": [7]}, "reason": "x"}, "tier 7 does not exist"),
        ({"matchers": {"colour": ["red"]}, "reason": "x"}, "colour"),
    ],
)
async def test_bad_silences_are_clear_422s(
    client: tuple[httpx.AsyncClient, Runtime],
    clock: ManualClock,
    body: dict[str, object],
    fragment: str,
) -> None:
    http, _ = client
    delta = timedelta(hours=-1) if body.pop("past", False) else timedelta(hours=1)
    body["ends_at"] = (clock.now() + delta).isoformat()
    answer = await http.post("/silences", json=body, headers=auth(RESPONDER_KEY))
    assert answer.status_code == 422 and fragment in answer.text


async def test_who_is_on_call(client: tuple[httpx.AsyncClient, Runtime]) -> None:
    http, _ = client
    teams = {t["team"]: t for t in (await http.get("/oncall", headers=auth(VIEWER_KEY))).json()}
    assert teams["pr"]["person"] == "olga" and teams["pr"]["until"] is not None
    assert teams["legal"]["person"] is None


async def test_a_recorded_statement_stops_the_sla_clock(
    client: tuple[httpx.AsyncClient, Runtime], clock: ManualClock
) -> None:
    http, runtime = client
    incident_id = await open_incident(runtime, clock, tier=2)
    answer = await http.post(
        f"/incidents/{incident_id}/response",
        json={"kind": "statement", "note": "published on the official account"},
        headers=auth(RESPONDER_KEY),
    )
    assert answer.status_code == 200, answer.text
    detail = (await http.get(f"/incidents/{incident_id}", headers=auth(VIEWER_KEY))).json()
    assert "responded" in [e["kind"] for e in detail["timeline"]]
    bad = await http.post(
        f"/incidents/{incident_id}/response", json={"kind": "tweet"}, headers=auth(RESPONDER_KEY)
    )
    assert bad.status_code == 422
