"""Review of the ways to acknowledge without an API key (ack links, Slack buttons): hostile
or careless requests get a clear 4xx, never a 500, and never an action they should not."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from sqlalchemy import select

from alerts.acklinks import AckLinkConfig, AckToken
from alerts.incidents import resolve
from alerts.models import CLOSED, Incident
from api.settings import SlackAppConfig
from core.clock import ManualClock
from core.db import unit_of_work
from tests.integration.test_acklinks import (
    ACK_SECRET,
    SLACK_SECRET,
    Api,
    click,
    mint,
    new_incident,
    serve,
    slack_request,
    status_of,
)


@pytest.fixture
async def api(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Api]:
    sections = {
        "ack_links": AckLinkConfig(secret=ACK_SECRET, ttl=timedelta(hours=1)),
        "slack_app": SlackAppConfig(signing_secret=SLACK_SECRET),
    }
    async for served in serve(tmp_path, clock, **sections):
        yield served


async def test_a_non_ascii_signature_in_an_ack_link_is_403_not_500(
    api: Api, clock: ManualClock
) -> None:
    """``hmac.compare_digest`` raises TypeError on a str holding non-ASCII characters: a
    link whose signature part was mangled (by a chat app, a mail gateway, a person) was a
    500 from both the confirm page and the POST."""
    client, runtime = api
    incident_id = await new_incident(runtime, clock)
    path = await mint(runtime, clock, incident_id)
    token_id, expires, signature = path.removeprefix("/ack/").split(".")
    mangled = [
        f"/ack/{token_id}.{expires}.{quote(signature[:-1] + 'é')}",
        f"/ack/{token_id}.{expires}.{quote('€' * 10)}",
        f"/ack/{quote('ü' + token_id[1:])}.{expires}.{signature}",
    ]
    for bad in mangled:
        for answer in (await client.get(bad), await client.post(bad)):
            assert answer.status_code == 403, (bad, answer.status_code)
            assert "not valid" in answer.text
    assert await status_of(runtime, incident_id) == ("open", None)
    assert (await client.post(path)).status_code == 200  # the real link still works


async def test_confirm_page_of_a_finished_incident_offers_no_acknowledge_button(
    api: Api, clock: ManualClock
) -> None:
    """The confirm page offered "Acknowledge" for a resolved or merged incident; pressing it
    could only fail (409). It answers 409 at once, naming the incident a merge kept."""
    client, runtime = api
    resolved = await new_incident(runtime, clock, title="resolved one")
    survivor = await new_incident(runtime, clock, title="survivor")
    merged = await new_incident(runtime, clock, title="merged one")
    resolved_link = await mint(runtime, clock, resolved)
    merged_link = await mint(runtime, clock, merged)
    assert runtime.sessions is not None
    async with unit_of_work(runtime.sessions) as session:
        await resolve(session, resolved, "bob", clock)
        row = await session.get(Incident, merged)
        assert row is not None
        row.status = CLOSED
        row.merged_into_id = survivor

    page = await client.get(resolved_link)
    assert page.status_code == 409, page.text
    assert "<form" not in page.text
    assert f"Incident {resolved} is resolved" in page.text

    page = await client.get(merged_link)
    assert page.status_code == 409, page.text
    assert "<form" not in page.text
    assert f"merged into incident {survivor}" in page.text
    answer = await client.post(merged_link)
    assert answer.status_code == 409
    assert f"merged into incident {survivor}" in answer.text
    assert await status_of(runtime, survivor) == ("open", None)  # never the other incident
    async with unit_of_work(runtime.sessions) as session:
        tokens = (await session.scalars(select(AckToken))).all()
        assert [t.used_at for t in tokens] == [None, None]  # both links stay unused


async def test_slack_button_on_a_merged_incident_names_the_survivor(
    api: Api, clock: ManualClock
) -> None:
    client, runtime = api
    survivor = await new_incident(runtime, clock, title="survivor")
    merged = await new_incident(runtime, clock, title="merged one")
    assert runtime.sessions is not None
    async with unit_of_work(runtime.sessions) as session:
        row = await session.get(Incident, merged)
        assert row is not None
        row.status = CLOSED
        row.merged_into_id = survivor
    now = int(clock.now().timestamp())
    for action in ("crisiswatch_ack", "crisiswatch_resolve"):
        body, headers = slack_request(click(action, merged), now)
        answer = await client.post("/slack/interactions", content=body, headers=headers)
        assert answer.status_code == 409, answer.text
    assert await status_of(runtime, survivor) == ("open", None)


async def test_slack_headers_are_read_whatever_their_case(api: Api, clock: ManualClock) -> None:
    client, runtime = api
    incident_id = await new_incident(runtime, clock)
    body, headers = slack_request(
        click("crisiswatch_ack", incident_id), int(clock.now().timestamp())
    )
    shouted = {name.upper(): value for name, value in headers.items()}
    answer = await client.post("/slack/interactions", content=body, headers=shouted)
    assert answer.status_code == 200, answer.text
    assert await status_of(runtime, incident_id) == ("acknowledged", "slack:alice")


async def test_slack_signature_with_non_ascii_or_odd_form_is_401(
    api: Api, clock: ManualClock
) -> None:
    client, runtime = api
    incident_id = await new_incident(runtime, clock)
    body, headers = slack_request(
        click("crisiswatch_ack", incident_id), int(clock.now().timestamp())
    )
    for given in ("v0=" + "é" * 64, "", "v0=", "V0=" + headers["X-Slack-Signature"][3:]):
        sent = dict(headers)
        sent["X-Slack-Signature"] = given.encode("latin-1")  # type: ignore[assignment]
        answer = await client.post("/slack/interactions", content=body, headers=sent)
        assert answer.status_code == 401, (given, answer.status_code)
    assert await status_of(runtime, incident_id) == ("open", None)


async def test_slack_oversized_body_is_413(api: Api, clock: ManualClock) -> None:
    client, _ = api
    body = b"payload=" + b"a" * (70 * 1024)
    _, headers = slack_request({}, int(clock.now().timestamp()))
    answer = await client.post("/slack/interactions", content=body, headers=headers)
    assert answer.status_code == 413


async def test_an_expired_link_is_refused_and_counted(api: Api, clock: ManualClock) -> None:
    client, runtime = api
    incident_id = await new_incident(runtime, clock)
    path = await mint(runtime, clock, incident_id)
    clock.advance(3601)
    answer = await client.post(path)
    assert answer.status_code == 410
    assert await status_of(runtime, incident_id) == ("open", None)
    refused = runtime.metrics.registry.get_sample_value(
        "crisiswatch_inbound_refused_total", {"endpoint": "ack", "reason": "expired"}
    )
    assert refused == 1


async def test_slack_payload_nested_too_deeply_is_400(api: Api, clock: ManualClock) -> None:
    """A signed payload nested past Python's recursion limit made json.loads raise
    RecursionError: a 500 (only a holder of the signing secret could send it)."""
    client, _ = api
    timestamp = int(clock.now().timestamp())
    _, headers = slack_request({}, timestamp)
    body = urlencode({"payload": "[" * 5000 + "]" * 5000}).encode()
    base = f"v0:{timestamp}:".encode() + body
    headers["X-Slack-Signature"] = (
        "v0=" + hmac.new(SLACK_SECRET.encode(), base, hashlib.sha256).hexdigest()
    )
    answer = await client.post("/slack/interactions", content=body, headers=headers)
    assert answer.status_code == 400, answer.text
    assert "nested too deeply" in answer.json()["detail"]
