"""Notifier review: a post link whose host the label misnames (a backslash read as "/" by
browsers), a Teams card over the platform's 28 KB, a webhook channel named in Chinese that
never delivered (a non-ASCII header value), a robot's credential echoed alone by the
platform, and a cut that could not say it was cut."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from alerts.channels import WebhookChannelConfig, WeComChannelConfig
from alerts.notifiers import escape, render, slack, teams
from alerts.notifiers.base import AlertMessage, DeliveryError, DigestItem, EvidenceSnippet
from alerts.notifiers.http import encode_json, truncate_utf8
from alerts.notifiers.webhook import IDEMPOTENCY_HEADER, WebhookNotifier
from alerts.notifiers.wecom import WeComNotifier
from core.clock import ManualClock
from tests.notifier_fakes import hostile_alert

# -- a backslash is "/" to a browser: the label named a host the link does not go to ----------

SPOOF = "https://evil.example\\@good.example/p/1"  # a browser opens evil.example


def _spoofing_alert() -> AlertMessage:
    post = EvidenceSnippet(author="a", followers=1, text="look", url=SPOOF)
    return hostile_alert(evidence=(post,))


def test_a_url_with_a_backslash_is_not_linked() -> None:
    assert escape.safe_url(SPOOF) is None
    assert escape.host(SPOOF) is None
    assert escape.markdown_url("https://x.example/a\\") is None  # "\)" would escape the ")"
    assert escape.safe_url("https://x.example/a%5Cb") == "https://x.example/a%5Cb"


@pytest.mark.parametrize(
    "render_text",
    [
        lambda a: render.markdown(a),
        lambda a: json.dumps(slack.message(a), ensure_ascii=False),
    ],
)
def test_no_post_link_is_labelled_with_a_host_it_does_not_lead_to(render_text: Any) -> None:
    text = render_text(_spoofing_alert())
    assert "good.example" not in text and "good［.］example" not in text


# -- Teams: the whole card at most about 28 KB, JSON escaping included ----------------------


def _backslash_posts() -> AlertMessage:
    posts = tuple(
        EvidenceSnippet(author="a", followers=1, text="t", url="https://x.example/" + "\\" * 1900)
        for _ in range(10)
    )
    return hostile_alert(evidence=posts)  # was a 36 KB body


def _quoted_digest() -> AlertMessage:
    items = tuple(
        DigestItem(incident_id=i, tier=1, title='"' * 200, reason="new") for i in range(1, 120)
    )
    return hostile_alert(title="119 alerts (digest)", digest=items)  # was a 38 KB body


@pytest.mark.parametrize("alert", [_backslash_posts(), _quoted_digest()])
def test_a_teams_body_stays_under_28_kb(alert: AlertMessage) -> None:
    body = teams.message(alert)
    assert len(encode_json(body)) <= teams.BODY_MAX_BYTES < 28 * 1000
    if alert.digest:  # the items that no longer fit are counted
        assert "more incidents" in body["attachments"][0]["content"]["body"][1]["text"]


# -- a webhook channel named in Chinese: the idempotency header must be ASCII ---------------


async def test_a_webhook_channel_with_a_chinese_name_delivers(clock: ManualClock) -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    config = WebhookChannelConfig(url="https://hooks.example/in", secret="s" * 32)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
        notifier = WebhookNotifier("公关告警", config, client, clock)
        await notifier.send(hostile_alert(idempotency_key="42:3:公关告警:alert"))
        await notifier.send(hostile_alert(idempotency_key="42:3:pr:alert"))
    first, second = (r.headers[IDEMPOTENCY_HEADER] for r in seen)
    assert first == "42:3:%E5%85%AC%E5%85%B3%E5%91%8A%E8%AD%A6:alert"
    assert second == "42:3:pr:alert"  # ASCII keys as they always were
    assert json.loads(seen[0].content)["alert"]["idempotency_key"] == "42:3:公关告警:alert"


# -- the robot's key, echoed alone in an error answer, is redacted --------------------------

WECOM_KEY = "693a91f6-7b2c-4bc4-97a0-0ec2a1fa5aaa"


async def test_an_echoed_wecom_key_is_redacted() -> None:
    answer = {"errcode": 93000, "errmsg": f"invalid webhook url, key {WECOM_KEY} not found"}
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json=answer))
    url = f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={WECOM_KEY}"
    async with httpx.AsyncClient(transport=transport) as client:
        config = WeComChannelConfig(webhook_url=url)  # type: ignore[arg-type]
        with pytest.raises(DeliveryError) as info:
            await WeComNotifier("wc", config, client).send(hostile_alert())
    assert "errcode 93000" in str(info.value)
    assert WECOM_KEY not in str(info.value)
    assert info.value.retryable is False


# -- a cut keeps to its limit even where "…" does not fit -----------------------------------


@pytest.mark.parametrize("limit", [0, 1, 2, 3, 4, 5, 6, 7])
def test_truncate_utf8_keeps_its_limit(limit: int) -> None:
    out = truncate_utf8("中文中文", limit)
    assert len(out.encode()) <= limit
    assert out == "" or out.endswith("…")
