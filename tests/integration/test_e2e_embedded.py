"""Embedded end to end: a crisis stream in through the signed webhook, a tier-3 signal,
one incident, a signed alert at a real local HTTP receiver, an ack through the API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from alerts.config import (
    AlertsConfig,
    EscalationPolicy,
    EscalationStep,
    PersonConfig,
    RotaConfig,
    TeamConfig,
    WebhookChannelConfig,
)
from api.app import create_app
from api.runtime import Runtime
from api.settings import ApiConfig, ApiKeyConfig, Settings
from core.bus.memory import MemoryBus
from core.clock import ManualClock
from core.events import Mention
from core.settings import DatabaseConfig
from listener.config import ListenerConfig, WatchConfig, WebhookConfig
from listener.webhook import signed_headers
from tests.fakes import FakeClassifier
from tests.support import (
    INGEST_SECRET,
    RECEIVER_SECRET,
    RESPONDER_KEY,
    VIEWER_KEY,
    Receiver,
    chatter,
    crisis_stream,
    http_receiver,
)


def embedded_settings(db_url: str, receiver: Receiver) -> Settings:
    def hook(path: str) -> WebhookChannelConfig:
        return WebhookChannelConfig(url=receiver.url(path), secret=RECEIVER_SECRET)

    rota = RotaConfig(start=datetime(2026, 1, 1, 9, tzinfo=UTC), people=["duty"])
    # tier 3: the on-call person after 10 min, then the teams again
    policy = EscalationPolicy(
        steps=[
            EscalationStep(after=timedelta(minutes=10), notify="on_call"),
            EscalationStep(after=timedelta(minutes=10), notify="route"),
        ]
    )

    return Settings(
        database=DatabaseConfig(url=db_url),
        api=ApiConfig(
            keys=[
                ApiKeyConfig(name="oncall", key=RESPONDER_KEY, role="responder"),
                ApiKeyConfig(name="watcher", key=VIEWER_KEY, role="viewer"),
            ]
        ),
        listener=ListenerConfig(
            watches=[WatchConfig(id="acme", brand="Acme", terms=["acme"])],
            webhook=WebhookConfig(enabled=True, secret=INGEST_SECRET),
        ),
        alerts=AlertsConfig(
            channels={
                "cs": hook("/cs"),
                "pr": hook("/pr"),
                "marketing": hook("/marketing"),
                "legal": hook("/legal"),
                "exec": hook("/exec"),
                "oncall": hook("/oncall"),
            },
            people={"duty": PersonConfig(channels=["oncall"])},
            teams={
                "customer_service": TeamConfig(channels=["cs"], rota=rota),
                "pr": TeamConfig(channels=["pr"], rota=rota),
                "marketing": TeamConfig(channels=["marketing"]),
                "legal": TeamConfig(channels=["legal"], rota=rota),
                "executives": TeamConfig(channels=["exec"], rota=rota),
            },
            escalation_policies={"tier-3": policy},
            escalation={1: None, 2: None, 3: "tier-3"},
        ),
    )


@pytest.fixture
async def world(
    tmp_path: Path, clock: ManualClock
) -> AsyncIterator[tuple[FastAPI, Runtime, Receiver, httpx.AsyncClient]]:
    async with http_receiver(clock.now) as receiver:
        settings = embedded_settings(f"sqlite+aiosqlite:///{tmp_path / 'cw.db'}", receiver)
        runtime = Runtime(settings, clock=clock, classifier=FakeClassifier(), migrate=True)
        app = create_app(runtime)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://cw") as client:
                yield app, runtime, receiver, client


async def push(client: httpx.AsyncClient, clock: ManualClock, mentions: list) -> httpx.Response:
    body = json.dumps({"mentions": [m.model_dump(mode="json") for m in mentions]}).encode()
    headers = signed_headers(INGEST_SECRET, body, clock.now()) | {
        "content-type": "application/json"
    }
    return await client.post("/ingest/mentions", content=body, headers=headers)


async def settle(runtime: Runtime) -> None:
    assert isinstance(runtime.bus, MemoryBus)
    await runtime.bus.join()
    assert runtime.alerter is not None
    await runtime.alerter.tick()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def run_crisis(
    client: httpx.AsyncClient, runtime: Runtime, clock: ManualClock
) -> list[Mention]:
    start = clock.now()
    stream = chatter(start) + crisis_stream(start + timedelta(minutes=1))
    stream.sort(key=lambda m: m.created_at)
    for i in range(0, len(stream), 50):
        batch = stream[i : i + 50]
        clock.set(batch[-1].created_at)  # mentions arrive as they are posted
        r = await push(client, clock, batch)
        assert r.status_code == 200, r.text
        await settle(runtime)
    return stream


async def test_crisis_alerts_once_and_ack_stops_escalation(world, clock: ManualClock) -> None:
    _app, runtime, receiver, client = world
    stream = await run_crisis(client, runtime, clock)

    r = await client.get("/incidents", headers=auth(VIEWER_KEY))
    assert r.status_code == 200
    page = r.json()
    assert page["total"] == 1, page
    incident = page["items"][0]
    assert incident["tier"] == 3
    assert incident["watch_id"] == "acme"

    # tier 3 reached PR, legal and executives; a signed alert each, none twice
    for path in ("/pr", "/legal", "/exec"):
        tier3 = [
            b
            for b in receiver.on(path)
            if b["alert"]["tier"] == 3 and not b["alert"]["reason"].startswith("TASK ")
        ]  # (playbook task reminders go to the owning teams too)
        assert len(tier3) == 1, (path, receiver.requests)
    assert receiver.bad_signatures == 0
    assert receiver.on("/oncall") == []

    # redelivering the whole stream changes nothing (dedup + idempotent stages)
    before = len(receiver.requests)
    for i in range(0, len(stream), 50):
        r = await push(client, clock, stream[i : i + 50])
        assert r.json()["duplicates"] == len(stream[i : i + 50])
    await settle(runtime)
    assert len(receiver.requests) == before

    r = await client.post(f"/incidents/{incident['id']}/ack", headers=auth(RESPONDER_KEY))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "acknowledged"
    assert r.json()["acked_by"] == "oncall"
    again = await client.post(f"/incidents/{incident['id']}/ack", headers=auth(RESPONDER_KEY))
    assert again.status_code == 200 and again.json()["acked_at"] == r.json()["acked_at"]

    clock.advance(3600)
    await runtime.alerter.tick()  # type: ignore[union-attr]
    assert receiver.on("/oncall") == [], "acknowledged: nobody is paged"

    detail = (await client.get(f"/incidents/{incident['id']}", headers=auth(VIEWER_KEY))).json()
    kinds = [e["kind"] for e in detail["timeline"]]
    assert "opened" in kinds and "acknowledged" in kinds and "escalated" not in kinds
    assert detail["evidence"], "evidence mentions are kept"

    metrics = (await client.get("/metrics")).text
    assert "crisiswatch_alert_latency_seconds_count" in metrics
    assert 'crisiswatch_time_to_ack_seconds_count{drill="false",tier="3"} 1.0' in metrics


async def test_unacknowledged_incident_escalates_after_deadline(world, clock: ManualClock) -> None:
    _app, runtime, receiver, client = world
    await run_crisis(client, runtime, clock)
    assert receiver.on("/oncall") == []
    page = (await client.get("/incidents", headers=auth(VIEWER_KEY))).json()
    incident = page["items"][0]
    deadline = datetime.fromisoformat(incident["next_escalation_at"])
    upgraded = datetime.fromisoformat(incident["updated_at"])
    assert deadline - upgraded == timedelta(minutes=10), "tier 3: 10 minutes to acknowledge"

    clock.set(deadline - timedelta(seconds=30))
    await runtime.alerter.tick()  # type: ignore[union-attr]
    assert receiver.on("/oncall") == [], "not before the 10-minute deadline"

    clock.set(deadline + timedelta(seconds=1))
    await runtime.alerter.tick()  # type: ignore[union-attr]
    pages = receiver.on("/oncall")
    assert len(pages) == 1, receiver.requests
    assert pages[0]["alert"]["tier"] == 3

    detail = (await client.get(f"/incidents/{incident['id']}", headers=auth(VIEWER_KEY))).json()
    # the on-call step, and the tier-3 SLA (ack in 10 min) breached: the next step at once
    assert detail["escalation_level"] == 2
    assert "sla_breached" in [e["kind"] for e in detail["timeline"]]
    assert "escalated" in [e["kind"] for e in detail["timeline"]]


async def test_copies_before_the_complaint_end_in_one_tier3_incident(
    world, clock: ManualClock
) -> None:
    """The complaint comes last (several scorers over Kafka can do this): its reposts and
    copies open two stories and two incidents first; when it comes, the copies' story is
    merged into the complaint's cascade and its incident into the other, and the one
    incident left open is the complaint's, at tier 3; nobody gets the same tier twice
    for one incident."""
    _app, runtime, receiver, client = world
    start = clock.now()
    stream = crisis_stream(start, n=180, minutes=4.0)
    root, rest = stream[0], stream[1:]
    for i in range(0, len(rest), 45):
        batch = rest[i : i + 45]
        clock.set(batch[-1].created_at)
        assert (await push(client, clock, batch)).status_code == 200
        await settle(runtime)
    before = (await client.get("/incidents", headers=auth(VIEWER_KEY))).json()
    assert before["total"] == 2, before  # the reposts' story and the copies' story
    assert (await push(client, clock, [root])).status_code == 200
    await settle(runtime)
    page = (await client.get("/incidents", headers=auth(VIEWER_KEY))).json()
    live = [i for i in page["items"] if i["merged_into_id"] is None]
    assert len(live) == 1 and page["total"] == 2, page
    (crisis,) = live
    merged = next(i for i in page["items"] if i["merged_into_id"] is not None)
    assert merged["status"] == "closed" and merged["merged_into_id"] == crisis["id"]
    # both were tier 3 already (a tie: the copies' incident goes into the complaint's)
    assert crisis["tier"] == 3 and crisis["story_id"] == "acme:bluesky:root-1"
    assert merged["story_id"] == "acme:reddit:m2"  # the first copy opened that story
    detail = (await client.get(f"/incidents/{crisis['id']}", headers=auth(VIEWER_KEY))).json()
    assert "story_merged" in [e["kind"] for e in detail["timeline"]]
    metrics = (await client.get("/metrics")).text
    assert 'crisiswatch_detector_stories_joined_total{how="merged"} 1.0' in metrics
    for path in ("/pr", "/legal", "/exec"):
        sent = [
            (b["alert"]["incident_id"], b["alert"]["tier"])
            for b in receiver.on(path)
            if not b["alert"]["reason"].startswith("TASK ")
            and b["alert"]["action"] == "trigger"  # not an ack/resolve follow-up
        ]
        assert len(sent) == len(set(sent)), (path, sent)
    # the merged incident's alerts were settled where they went
    resolved = [b["alert"] for b in receiver.on("/pr") if b["alert"]["action"] == "resolve"]
    assert [a["incident_id"] for a in resolved] == [merged["id"]]
    assert "merged into incident" in resolved[0]["reason"]
