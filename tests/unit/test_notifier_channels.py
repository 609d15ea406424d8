"""Per-platform details beyond the shared contract: exact signatures, platform error codes,
message shapes (mentions, buttons, follow-ups), email structure."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from alerts.channels import (
    DingTalkChannelConfig,
    FeishuChannelConfig,
    PagerDutyChannelConfig,
    WeComChannelConfig,
)
from alerts.notifiers import dingtalk, feishu, pagerduty, slack, teams, wecom
from alerts.notifiers.base import DeliveryError
from core.clock import ManualClock
from tests.notifier_fakes import (
    PD_KEY,
    SIGNING_SECRET,
    TOKEN,
    DingTalkHarness,
    EmailHarness,
    FeishuHarness,
    digest_alert,
    hostile_alert,
)

DINGTALK_URL = f"https://oapi.dingtalk.com/robot/send?access_token={TOKEN}"
WECOM_URL = f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={TOKEN}"
FEISHU_URL = f"https://open.feishu.cn/open-apis/bot/v2/hook/{TOKEN}"


def answering(body: object, status: int = 200) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(status, json=body))
    )


# -- signatures, exactly as documented -----------------------------------------------------


async def test_dingtalk_signs_the_query_string_in_milliseconds(clock: ManualClock) -> None:
    harness = DingTalkHarness(clock)
    await harness.notifier().send(hostile_alert())
    await harness.close()
    query = parse_qs(urlsplit(str(harness.requests[0].url)).query)
    ts = query["timestamp"][0]
    assert ts == str(int(clock.now().timestamp() * 1000))
    mac = hmac.new(SIGNING_SECRET.encode(), f"{ts}\n{SIGNING_SECRET}".encode(), hashlib.sha256)
    assert query["sign"] == [base64.b64encode(mac.digest()).decode()]
    assert query["access_token"] == [TOKEN]
    assert "sign=" in str(harness.requests[0].url) and "%2B" in str(
        harness.requests[0].url.copy_merge_params({"x": "+"})
    )


async def test_feishu_signs_the_body_in_seconds(clock: ManualClock) -> None:
    harness = FeishuHarness(clock)
    await harness.notifier().send(hostile_alert())
    await harness.close()
    body = harness.bodies[0]
    assert body["timestamp"] == str(int(clock.now().timestamp()))
    key = f"{body['timestamp']}\n{SIGNING_SECRET}".encode()
    assert body["sign"] == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


async def test_unsigned_bots_send_no_signature(clock: ManualClock) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"errcode": 0, "code": 0})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        config = DingTalkChannelConfig(webhook_url=DINGTALK_URL)  # type: ignore[arg-type]
        await dingtalk.DingTalkNotifier("d", config, client, clock).send(hostile_alert())
        fconfig = FeishuChannelConfig(webhook_url=FEISHU_URL)  # type: ignore[arg-type]
        await feishu.FeishuNotifier("f", fconfig, client, clock).send(hostile_alert())
    assert "sign=" not in str(seen[0].url)
    assert b'"sign"' not in seen[1].content


# -- platform error codes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "answer", "retryable", "retry_after"),
    [
        ("dingtalk", {"errcode": 130101, "errmsg": "send too fast"}, True, 600.0),
        ("dingtalk", {"errcode": 310000, "errmsg": "sign not match"}, False, None),
        ("dingtalk", {"errcode": -1, "errmsg": "system busy"}, True, None),
        ("wecom", {"errcode": 45009, "errmsg": "api freq out of limit"}, True, 60.0),
        ("wecom", {"errcode": 93000, "errmsg": "invalid webhook url"}, False, None),
        ("feishu", {"code": 11232, "msg": "frequency limited"}, True, None),
        ("feishu", {"code": 19021, "msg": "sign match fail"}, False, None),
        ("feishu", {"code": 9499, "msg": "Bad Request"}, False, None),
    ],
)
async def test_platform_error_codes(
    kind: str, answer: dict[str, object], retryable: bool, retry_after: float | None, clock
) -> None:
    async with answering(answer) as client:
        notifier = {
            "dingtalk": lambda: dingtalk.DingTalkNotifier(
                "d",
                DingTalkChannelConfig(webhook_url=DINGTALK_URL, secret=SIGNING_SECRET),  # type: ignore[arg-type]
                client,
                clock,
            ),
            "wecom": lambda: wecom.WeComNotifier(
                "w",
                WeComChannelConfig(webhook_url=WECOM_URL),  # type: ignore[arg-type]
                client,
            ),
            "feishu": lambda: feishu.FeishuNotifier(
                "f",
                FeishuChannelConfig(webhook_url=FEISHU_URL, secret=SIGNING_SECRET),  # type: ignore[arg-type]
                client,
                clock,
            ),
        }[kind]()
        with pytest.raises(DeliveryError) as info:
            await notifier.send(hostile_alert())
    assert info.value.retryable is retryable
    assert info.value.retry_after == retry_after
    assert TOKEN not in str(info.value) and SIGNING_SECRET not in str(info.value)


async def test_a_200_that_is_not_json_is_permanent(clock: ManualClock) -> None:
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, text="<html>proxy</html>"))
    ) as client:
        notifier = wecom.WeComNotifier(
            "w",
            WeComChannelConfig(webhook_url=WECOM_URL),  # type: ignore[arg-type]
            client,
        )
        with pytest.raises(DeliveryError, match="not JSON") as info:
            await notifier.send(hostile_alert())
    assert not info.value.retryable


# -- message shapes ------------------------------------------------------------------------


def test_slack_buttons_only_on_triggers() -> None:
    msg = slack.message(hostile_alert(), with_buttons=True)
    actions = [b for b in msg["blocks"] if b["type"] == "actions"]
    assert len(actions) == 1
    ids = [(e["action_id"], e["value"]) for e in actions[0]["elements"]]
    assert ids == [("crisiswatch_ack", "42"), ("crisiswatch_resolve", "42")]
    assert "confirm" in actions[0]["elements"][1]
    for alert in (hostile_alert(action="acknowledge", actor="alice"), digest_alert()):
        blocks = slack.message(alert, with_buttons=True)["blocks"]
        assert not [b for b in blocks if b["type"] == "actions"]
    follow_up = slack.message(hostile_alert(action="resolve", actor="bob"))
    assert follow_up["blocks"][0]["text"]["text"].startswith("Resolved by bob: Tier 3 #42")


def test_teams_card_mentions_and_ack_action() -> None:
    card = teams.message(hostile_alert())["attachments"][0]["content"]
    assert card["actions"][0] == {
        "type": "Action.OpenUrl",
        "title": "Acknowledge",
        "url": "https://cw.example/ack/tok.123.sig",
    }
    assert card["msteams"]["entities"] == [
        {
            "type": "mention",
            "text": "<at>Li Lei</at>",
            "mentioned": {"id": "lilei@acme.example", "name": "Li Lei"},
        }
    ]


def test_feishu_card_colours_and_button() -> None:
    card = feishu.card(hostile_alert())
    assert card["header"]["template"] == "red"
    buttons = [e for e in card["body"]["elements"] if e["tag"] == "button"]
    assert buttons[0]["behaviors"] == [
        {"type": "open_url", "default_url": "https://cw.example/ack/tok.123.sig"}
    ]
    assert feishu.card(hostile_alert(drill=True))["header"]["template"] == "grey"
    assert feishu.card(hostile_alert(action="acknowledge"))["header"]["template"] == "green"


def test_wecom_limits_are_in_bytes() -> None:
    big = hostile_alert(explanation="危机" * 3000, title="标题" * 500)
    content = wecom.message(big)["markdown"]["content"]
    assert len(content.encode()) <= 4096
    text = wecom.message(big, "text")["text"]["content"]
    assert len(text.encode()) <= 2048


def test_pagerduty_events() -> None:
    config = PagerDutyChannelConfig(routing_key=PD_KEY)  # type: ignore[arg-type]
    trigger = pagerduty.event(hostile_alert(tier=1, drill=True), config)
    assert trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == "crisiswatch-incident-42"
    assert trigger["payload"]["severity"] == "warning"
    assert trigger["payload"]["summary"].startswith("[DRILL] Tier 1 #42")
    assert trigger["payload"]["timestamp"] == "2026-01-05T09:00:00+00:00"
    assert trigger["links"][0] == {
        "href": "https://cw.example/ack/tok.123.sig",
        "text": "Acknowledge",
    }
    for action in ("acknowledge", "resolve"):
        event = pagerduty.event(hostile_alert(action=action, actor="alice"), config)
        assert event == {
            "routing_key": PD_KEY,
            "dedup_key": "crisiswatch-incident-42",
            "event_action": action,
        }


def test_pagerduty_keys_each_page_of_an_incident_apart() -> None:
    """Page 0 keeps the key incidents always had; a later page (an upgrade after an ack)
    gets its own, so PagerDuty opens a new alert instead of folding the trigger into the
    acknowledged one. Its follow-ups carry the same page, hence the same key."""
    config = PagerDutyChannelConfig(routing_key=PD_KEY)  # type: ignore[arg-type]
    assert hostile_alert(page=0).dedup_key == "crisiswatch-incident-42"
    trigger = pagerduty.event(hostile_alert(page=2), config)
    assert trigger["dedup_key"] == "crisiswatch-incident-42-2"
    ack = pagerduty.event(hostile_alert(page=2, action="acknowledge", actor="a"), config)
    assert ack["dedup_key"] == "crisiswatch-incident-42-2"
    assert hostile_alert(page=2).thread_key == "crisiswatch-incident-42"


@pytest.fixture
async def smtp(clock: ManualClock) -> AsyncIterator[EmailHarness]:
    harness = EmailHarness(clock)
    await harness.start()
    yield harness
    await harness.close()


async def test_email_is_html_with_a_plain_text_alternative(smtp: EmailHarness) -> None:
    await smtp.notifier().send(hostile_alert(title="Line\nbreak\r\nBcc: x@evil.example"))
    message = smtp.messages[0]
    assert message.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]  # the last one is the preferred one
    assert "\n" not in str(message["Subject"]) and message["Bcc"] is None
    assert str(message["Subject"]).startswith("[crisiswatch] Tier 3 #42: Line break")
    assert message["References"] == "<crisiswatch-incident-42@crisiswatch>"
    assert message["Date"].datetime == smtp.clock.now()
    assert smtp.envelopes[0] == (
        "crisiswatch@acme.example",
        ["pr@acme.example", "legal@acme.example"],
    )
    html = smtp.markup_text()
    assert '<a href="https://cw.example/ack/tok.123.sig">Acknowledge</a>' in html


async def test_email_threads_every_page_of_an_incident_together(smtp: EmailHarness) -> None:
    await smtp.notifier().send(hostile_alert(page=0))
    await smtp.notifier().send(hostile_alert(page=1, reason="upgraded to tier 3"))
    roots = {str(m["References"]) for m in smtp.messages}
    assert roots == {"<crisiswatch-incident-42@crisiswatch>"}, "one thread per incident"
