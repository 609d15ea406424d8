"""Acknowledging from where the alert is read: signed single-use ack links (confirm page,
POST acknowledges) and Slack's interactive Ack/Resolve buttons (signed requests)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from sqlalchemy import select

from alerts import acklinks
from alerts.acklinks import AckLinkConfig, AckToken
from alerts.models import OPEN, Incident
from api.app import create_app
from api.runtime import Role, Runtime
from api.settings import Settings, SlackAppConfig
from core.clock import ManualClock
from core.db import unit_of_work
from core.settings import DatabaseConfig

ACK_SECRET = "ack-link-secret-0123456789abcdefghij"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"

Api = tuple[httpx.AsyncClient, Runtime]


async def serve(tmp_path: Path, clock: ManualClock, **sections: Any) -> AsyncIterator[Api]:
    settings = Settings(
        database=DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'ack.db'}"),
        **sections,
    )
    runtime = Runtime(settings, clock=clock, migrate=True, roles=frozenset({Role.API}))
    app = create_app(runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cw") as client:
            yield client, runtime


@pytest.fixture
async def api(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Api]:
    sections = {
        "ack_links": AckLinkConfig(secret=ACK_SECRET, ttl=timedelta(hours=1)),  # type: ignore[arg-type]
        "slack_app": SlackAppConfig(signing_secret=SLACK_SECRET),  # type: ignore[arg-type]
    }
    async for served in serve(tmp_path, clock, **sections):
        yield served


async def new_incident(runtime: Runtime, clock: ManualClock, title: str = "Acme: crisis") -> int:
    assert runtime.sessions is not None
    now = clock.now()
    async with unit_of_work(runtime.sessions) as session:
        incident = Incident(
            watch_id="acme",
            story_id=f"s{now.timestamp()}-{title}",
            brand="Acme",
            tier=3,
            status=OPEN,
            title=title,
            opened_at=now,
            updated_at=now,
            alerted_at=now,
            escalation_token="t" * 36,
        )
        session.add(incident)
        await session.flush()
        return incident.id


async def mint(runtime: Runtime, clock: ManualClock, incident_id: int, who: str = "Li Lei") -> str:
    """The path of a fresh ack link (what i4b's outbox calls for each recipient)."""
    assert runtime.sessions is not None
    async with unit_of_work(runtime.sessions) as session:
        url = await acklinks.mint_ack_url(
            session,
            runtime.settings.ack_links,
            "https://cw.example/",
            incident_id=incident_id,
            recipient=who,
            channel="dingtalk",
            now=clock.now(),
        )
    assert url is not None and url.startswith("https://cw.example/ack/")
    return urlsplit(url).path


async def status_of(runtime: Runtime, incident_id: int) -> tuple[str, str | None]:
    assert runtime.sessions is not None
    async with unit_of_work(runtime.sessions) as session:
        incident = await session.get(Incident, incident_id)
        assert incident is not None
        return incident.status, incident.acked_by


# -- ack links -----------------------------------------------------------------------------


async def test_confirm_page_then_post_acknowledges_once(api: Api, clock: ManualClock) -> None:
    client, runtime = api
    incident_id = await new_incident(runtime, clock, title="Acme <script>alert(1)</script>")
    path = await mint(runtime, clock, incident_id, who="Li <b>Lei</b>")

    page = await client.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert '<form method="post">' in page.text
    assert "&lt;script&gt;" in page.text and "<script>" not in page.text
    assert "Li &lt;b&gt;Lei&lt;/b&gt;" in page.text
    assert await status_of(runtime, incident_id) == ("open", None)  # GET changes nothing

    done = await client.post(path)
    assert done.status_code == 200, done.text
    assert "acknowledged" in done.text
    assert await status_of(runtime, incident_id) == (
        "acknowledged",
        "Li <b>Lei</b> (via dingtalk link)",
    )

    for again in (client.post(path), client.get(path)):
        used = await again
        assert used.status_code == 410
        assert "already been used" in used.text


async def test_expired_link_is_410(api: Api, clock: ManualClock) -> None:
    client, runtime = api
    path = await mint(runtime, clock, await new_incident(runtime, clock))
    clock.advance(3600)
    for answer in (await client.get(path), await client.post(path)):
        assert answer.status_code == 410
        assert "expired" in answer.text


async def test_forged_or_mangled_links_are_403(api: Api, clock: ManualClock) -> None:
    client, runtime = api
    path = await mint(runtime, clock, await new_incident(runtime, clock))
    token_id, expires, signature = path.removeprefix("/ack/").split(".")
    later = int(expires) + 86400  # extend the expiry: the signature no longer matches
    soon = clock.now() + timedelta(minutes=5)
    other = AckLinkConfig(secret="another-secret-0123456789abcdefghij")  # type: ignore[arg-type]
    forged = [
        f"/ack/{token_id}.{later}.{signature}",
        f"/ack/{token_id}.{expires}.{signature[:-2]}xx",
        f"/ack/{acklinks.encode(other, token_id, soon)}",
        "/ack/garbage",
        "/ack/" + "a" * 300,
        f"/ack/{token_id}.%C2%B2.{signature}",  # '2' superscript: int() failed, a 500
        # a correctly signed token whose row never existed
        f"/ack/{acklinks.encode(runtime.settings.ack_links, 'nope', soon)}",
    ]
    for bad in forged:
        for answer in (await client.get(bad), await client.post(bad)):
            assert answer.status_code == 403, (bad, answer.status_code)
            assert "not valid" in answer.text
    refused = runtime.metrics.registry.get_sample_value(
        "crisiswatch_inbound_refused_total", {"endpoint": "ack", "reason": "forged"}
    )
    assert refused == 2 * len(forged)
    answer = await client.post(path)  # the real one still works
    assert answer.status_code == 200


async def test_resolved_incident_is_409_and_the_link_stays_unused(
    api: Api, clock: ManualClock
) -> None:
    client, runtime = api
    incident_id = await new_incident(runtime, clock)
    path = await mint(runtime, clock, incident_id)
    from alerts.incidents import resolve

    assert runtime.sessions is not None
    async with unit_of_work(runtime.sessions) as session:
        await resolve(session, incident_id, "bob", clock)
    answer = await client.post(path)
    assert answer.status_code == 409
    async with unit_of_work(runtime.sessions) as session:
        row = await session.scalar(select(AckToken))
        assert row is not None and row.used_at is None


async def test_links_are_off_without_a_secret(tmp_path: Path, clock: ManualClock) -> None:
    async for client, runtime in serve(tmp_path, clock):
        assert runtime.sessions is not None
        async with unit_of_work(runtime.sessions) as session:
            url = await acklinks.mint_ack_url(
                session,
                runtime.settings.ack_links,
                "https://cw.example",
                incident_id=1,
                recipient="x",
                channel="email",
                now=clock.now(),
            )
        assert url is None
        answer = await client.get("/ack/abc.1.sig")
        assert answer.status_code == 404
        answer = await client.post("/slack/interactions", content=b"payload=%7B%7D")
        assert answer.status_code == 404


def test_config_refuses_a_short_secret() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        AckLinkConfig(secret="short")  # type: ignore[arg-type]


# -- Slack interactivity ---------------------------------------------------------------------


def slack_request(
    payload: dict[str, Any], timestamp: int, secret: str = SLACK_SECRET
) -> tuple[bytes, dict[str, str]]:
    body = urlencode({"payload": json.dumps(payload)}).encode()
    base = f"v0:{timestamp}:".encode() + body
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": signature,
    }
    return body, headers


def click(action_id: str, incident_id: int | str) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "user": {"id": "U0ALICE", "username": "alice", "name": "alice", "team_id": "T1"},
        "api_app_id": "A1",
        "container": {"type": "message"},
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": f"crisiswatch-{incident_id}",
                "value": str(incident_id),
                "action_ts": "1700000000.000",
            }
        ],
    }


async def test_slack_buttons_acknowledge_and_resolve(api: Api, clock: ManualClock) -> None:
    client, runtime = api
    incident_id = await new_incident(runtime, clock)
    now = int(clock.now().timestamp())
    body, headers = slack_request(click("crisiswatch_ack", incident_id), now)
    answer = await client.post("/slack/interactions", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert await status_of(runtime, incident_id) == ("acknowledged", "slack:alice")

    body, headers = slack_request(click("crisiswatch_resolve", incident_id), now)
    answer = await client.post("/slack/interactions", content=body, headers=headers)
    assert answer.status_code == 200
    assert (await status_of(runtime, incident_id))[0] == "resolved"


async def test_slack_signature_and_timestamp_are_enforced(api: Api, clock: ManualClock) -> None:
    client, runtime = api
    incident_id = await new_incident(runtime, clock)
    now = int(clock.now().timestamp())
    payload = click("crisiswatch_ack", incident_id)
    cases = {
        "wrong secret": slack_request(payload, now, secret="not-the-signing-secret"),
        "stale (6 min old)": slack_request(payload, now - 360),
        "from the future": slack_request(payload, now + 360),
    }
    body, headers = slack_request(payload, now)
    cases["body changed"] = (body + b"x", headers)
    cases["no signature"] = (body, {"X-Slack-Request-Timestamp": str(now)})
    for name, (content, sent_headers) in cases.items():
        answer = await client.post("/slack/interactions", content=content, headers=sent_headers)
        assert answer.status_code == 401, name
    assert await status_of(runtime, incident_id) == ("open", None)
    # 4 min 59 s old is still fine (the limit is five minutes)
    body, headers = slack_request(payload, now - 299)
    answer = await client.post("/slack/interactions", content=body, headers=headers)
    assert answer.status_code == 200


async def test_slack_malformed_or_foreign_payloads(api: Api, clock: ManualClock) -> None:
    client, runtime = api
    incident_id = await new_incident(runtime, clock)
    now = int(clock.now().timestamp())

    async def send(content: bytes) -> httpx.Response:
        base = f"v0:{now}:".encode() + content
        sig = "v0=" + hmac.new(SLACK_SECRET.encode(), base, hashlib.sha256).hexdigest()
        headers = {"X-Slack-Request-Timestamp": str(now), "X-Slack-Signature": sig}
        return await client.post("/slack/interactions", content=content, headers=headers)

    assert (await send(b"not a form")).status_code == 400
    assert (await send(b"payload=%5B1%5D")).status_code == 400  # a JSON list
    body, _ = slack_request(click("crisiswatch_ack", "DROP TABLE"), now)
    assert (await send(body)).status_code == 400
    body, _ = slack_request({"type": "view_submission"}, now)
    assert (await send(body)).status_code == 200  # not ours: ignored
    body, _ = slack_request(click("someone_elses_button", incident_id), now)
    assert (await send(body)).status_code == 200
    body, _ = slack_request(click("crisiswatch_ack", 999), now)
    assert (await send(body)).status_code == 404
    for digits in ("\u00b2", "\u0661"):  # '²' made int() fail: a 500; Arabic-Indic one
        body, _ = slack_request(click("crisiswatch_ack", digits), now)
        assert (await send(body)).status_code == 400, digits
    assert await status_of(runtime, incident_id) == ("open", None)
    # a timestamp header of such digits: refused, not a 500
    body, headers = slack_request(click("crisiswatch_ack", incident_id), now)
    headers["X-Slack-Request-Timestamp"] = "\u00b2".encode("latin-1")  # type: ignore[assignment]
    answer = await client.post("/slack/interactions", content=body, headers=headers)
    assert answer.status_code == 401
    headers["X-Slack-Request-Timestamp"] = "9" * 5000  # int() refuses 4,300+ digits: a 500
    answer = await client.post("/slack/interactions", content=body, headers=headers)
    assert answer.status_code == 401
    # a user name holding a lone surrogate (it could not be stored: a 500)
    payload = click("crisiswatch_ack", incident_id)
    payload["user"] = {"username": "al\ud800ice"}
    body, _ = slack_request(payload, now)
    assert (await send(body)).status_code == 200
    assert await status_of(runtime, incident_id) == ("acknowledged", "slack:al\ufffdice")


async def test_link_and_button_changes_are_audited(api: Api, clock: ManualClock) -> None:
    from api.audit import list_entries

    client, runtime = api
    linked = await new_incident(runtime, clock, title="by link")
    assert (await client.post(await mint(runtime, clock, linked))).status_code == 200
    clicked = await new_incident(runtime, clock, title="by button")
    now = int(clock.now().timestamp())
    for action in ("crisiswatch_ack", "crisiswatch_resolve"):
        body, headers = slack_request(click(action, clicked), now)
        assert (await client.post("/slack/interactions", content=body, headers=headers)).is_success
    assert runtime.sessions is not None
    async with unit_of_work(runtime.sessions) as session:
        entries, total = await list_entries(session)
    assert total == 3
    got = [(e.actor, e.role, e.action, e.target_id) for e in reversed(entries)]
    assert got == [
        ("Li Lei (via dingtalk link)", "ack_link", "incident.acknowledge", str(linked)),
        ("slack:alice", "slack", "incident.acknowledge", str(clicked)),
        ("slack:alice", "slack", "incident.resolve", str(clicked)),
    ]
    assert entries[0].before is not None and entries[0].before["status"] == "acknowledged"
    assert entries[0].after is not None and entries[0].after["status"] == "resolved"
