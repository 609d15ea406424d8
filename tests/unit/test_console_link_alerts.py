"""The "Open incident" link in alerts opens the incident console, not the JSON API.

A PR person clicking the link in Slack, Feishu or an email got the API's 401 ("missing API
key") in the browser: the link was ``<public_url>/incidents/<id>``. Now it is
``alerts.incident_path`` under ``public_url``, by default ``/console/#incident=<id>``
(the console asks for the key, then opens the incident), and every channel carries it
intact (the ``#`` included). Machines keep the API's URL: ``AlertMessage.api_url``, the
webhook's ``alert.api_url`` (and a digest item's). The ack hint stays the API's.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from alerts.channels import PagerDutyChannelConfig
from alerts.config import AlertsConfig
from alerts.messages import build_message, digest_message
from alerts.models import Incident
from alerts.notifiers import console, dingtalk, email, feishu, pagerduty, slack, teams, wecom
from alerts.notifiers.base import AlertMessage
from alerts.notifiers.reasons import Reason
from alerts.notifiers.webhook import payload

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BASE = "https://cw.acme.example/crisis"  # a public URL with a path prefix (a proxy)
CONSOLE_LINK = BASE + "/console/#incident=12"
API_URL = BASE + "/incidents/12"


def _incident(incident_id: int = 12) -> Incident:
    return Incident(
        id=incident_id,
        tier=3,
        title="Acme: network-wide crisis",
        explanation="41 negative posts in 10 min",
        watch_id="acme",
        story_id=f"acme:s{incident_id}",
        brand="Acme",
        heat=None,
        drill=False,
        opened_at=AT,
        page=0,
    )


def _message(config: AlertsConfig, incident_id: int = 12) -> AlertMessage:
    return build_message(
        _incident(incident_id),
        config=config,
        reason=Reason(code="new"),
        teams=("pr",),
        evidence=(),
        idempotency_key=f"{incident_id}:3:pr:alert",
    )


def test_the_default_link_opens_the_console() -> None:
    assert AlertsConfig().incident_path == "/console/#incident={id}"
    message = _message(AlertsConfig(public_url=BASE + "/"))
    assert [(link.label, link.url) for link in message.links] == [("Open incident", CONSOLE_LINK)]
    assert message.api_url == API_URL
    assert message.ack_hint == f"POST {API_URL}/ack"  # ack_path stays the API's


def test_a_configured_incident_path_is_the_link() -> None:
    config = AlertsConfig(public_url=BASE, incident_path="/ui/incidents/{id}?from=alert")
    message = _message(config, 7)
    assert [link.url for link in message.links] == [BASE + "/ui/incidents/7?from=alert"]
    assert message.api_url == BASE + "/incidents/7"  # machines: the API, whatever the path
    # the old default, set on purpose, is kept
    old = _message(AlertsConfig(public_url=BASE, incident_path="/incidents/{id}"))
    assert [link.url for link in old.links] == [API_URL]


def test_without_a_public_url_there_is_no_link() -> None:
    message = _message(AlertsConfig())
    assert message.links == () and message.api_url is None


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/console/#incident={incident}", "incident_path: only the {id} placeholder"),
        ("/console/#{id}{", "incident_path: only the {id} placeholder"),
    ],
)
def test_an_incident_path_with_another_placeholder_is_refused(path: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why.replace("{", r"\{")):
        AlertsConfig(incident_path=path)


def _texts(message: AlertMessage) -> dict[str, str]:
    """What each channel sends, as text (the link is found in it as it is)."""
    pd = PagerDutyChannelConfig(routing_key="0123456789abcdef0123456789abcdef")
    return {
        "slack": json.dumps(slack.message(message), ensure_ascii=False),
        "email text": email.plain_body(message),
        "email html": email.html_body(message),
        "teams": json.dumps(teams.card(message), ensure_ascii=False),
        "feishu": json.dumps(feishu.card(message, language="zh"), ensure_ascii=False),
        "dingtalk": json.dumps(dingtalk.message(message), ensure_ascii=False),
        "wecom": json.dumps(wecom.message(message), ensure_ascii=False),
        "wecom text": json.dumps(wecom.message(message, "text"), ensure_ascii=False),
        "pagerduty": json.dumps(pagerduty.event(message, pd), ensure_ascii=False),
        "console": console.render_text(message),
    }


def test_every_channel_carries_the_console_link_whole() -> None:
    message = _message(AlertsConfig(public_url=BASE))
    for channel, text in _texts(message).items():
        assert CONSOLE_LINK in text, channel
        assert API_URL + '"' not in text and API_URL + ")" not in text, channel
    event = pagerduty.event(
        message, PagerDutyChannelConfig(routing_key="0123456789abcdef0123456789abcdef")
    )
    assert event["links"] == [{"href": CONSOLE_LINK, "text": "Open incident"}]


def test_the_webhook_gives_people_the_console_and_machines_the_api() -> None:
    body: dict[str, Any] = payload(_message(AlertsConfig(public_url=BASE)))
    alert = body["alert"]
    assert alert["links"] == [{"label": "Open incident", "url": CONSOLE_LINK}]
    assert alert["api_url"] == API_URL


def test_a_digest_item_keeps_both_urls() -> None:
    config = AlertsConfig(public_url=BASE)
    stored = [_message(config, n).model_dump(mode="json") for n in (12, 13)]
    digest = digest_message(stored, "held, then sent together", "digest:12,13")
    assert [(i.url, i.api_url) for i in digest.digest] == [
        (CONSOLE_LINK, API_URL),
        (BASE + "/console/#incident=13", BASE + "/incidents/13"),
    ]
    items = payload(digest)["alert"]["digest"]  # type: ignore[index]
    assert [(i["url"], i["api_url"]) for i in items] == [
        (CONSOLE_LINK, API_URL),
        (BASE + "/console/#incident=13", BASE + "/incidents/13"),
    ]
    for channel, text in _texts(digest).items():
        # PagerDuty gets each incident as its own event; WeCom's text and the log list the
        # items without their links
        if channel not in ("pagerduty", "wecom text", "console"):
            assert CONSOLE_LINK in text, channel


def test_an_alert_stored_before_api_url_still_sends() -> None:
    # outbox payloads queued before the field: no api_url (null in the webhook body)
    stored = _message(AlertsConfig(public_url=BASE)).model_dump(mode="json")
    del stored["api_url"]
    old = AlertMessage.model_validate(stored)
    assert old.api_url is None
    assert payload(old)["alert"]["api_url"] is None  # type: ignore[index]


def test_the_webhook_ack_hint_is_our_url_as_it_is() -> None:
    """The ack hint is our API's own URL: a machine reads it as it is, not defanged
    (``hxxps[:]//cw[.]acme[.]example``), while the brand stays defanged like every text."""
    body: dict[str, Any] = payload(_message(AlertsConfig(public_url=BASE), incident_id=7))
    assert body["alert"]["ack_hint"] == f"POST {BASE}/incidents/7/ack"
