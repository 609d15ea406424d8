"""Platform behaviour the notifiers got wrong: Feishu throttling answered with HTTP 400,
bodies pushed over a platform's size limit by JSON escaping, a digest's idempotency key,
an SMTP server refusing some of the recipients."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from alerts.channels import EmailChannelConfig, FeishuChannelConfig, WebhookChannelConfig
from alerts.messages import digest_message
from alerts.notifiers import email, feishu
from alerts.notifiers.base import AlertMessage, Contact, DeliveryError, EvidenceSnippet, Link
from alerts.notifiers.webhook import IDEMPOTENCY_HEADER, WebhookNotifier
from core.clock import ManualClock
from tests.notifier_fakes import (
    SIGNING_SECRET,
    TOKEN,
    DingTalkHarness,
    EmailHarness,
    FeishuHarness,
    HttpHarness,
    hostile_alert,
)

FEISHU_URL = f"https://open.feishu.cn/open-apis/bot/v2/hook/{TOKEN}"


# -- Feishu answers throttling with HTTP 400 and code 9499 ---------------------------------


@pytest.mark.parametrize(
    ("status", "answer", "retryable"),
    [
        # what the bot answers past 5 a second / 100 a minute
        (400, {"code": 9499, "msg": "too many request", "data": {}}, True),
        (200, {"code": 11232, "msg": "frequency limited psm"}, True),
        (429, {"code": 99991400, "msg": "request trigger frequency limit"}, True),
        (503, {"code": 1, "msg": "internal error"}, True),
        # a malformed request stays permanent, whatever the status
        (400, {"code": 9499, "msg": "Bad Request", "data": {}}, False),
        (200, {"code": 9499, "msg": "Bad Request", "data": {}}, False),
        (400, {"code": 19021, "msg": "sign match fail"}, False),
    ],
)
async def test_feishu_throttling_is_retryable_whatever_the_status(
    status: int, answer: dict[str, Any], retryable: bool, clock: ManualClock
) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(status, json=answer))
    async with httpx.AsyncClient(transport=transport) as client:
        config = FeishuChannelConfig(webhook_url=FEISHU_URL, secret=SIGNING_SECRET)  # type: ignore[arg-type]
        with pytest.raises(DeliveryError) as info:
            await feishu.FeishuNotifier("f", config, client, clock).send(hostile_alert())
    assert info.value.retryable is retryable
    assert f"code {answer['code']}" in str(info.value)
    assert TOKEN not in str(info.value) and SIGNING_SECRET not in str(info.value)


async def test_feishu_error_status_without_a_code_is_classified_by_its_status(
    clock: ManualClock,
) -> None:
    for status, retryable in ((400, False), (502, True), (429, True)):
        transport = httpx.MockTransport(
            lambda r, s=status: httpx.Response(s, headers={"Retry-After": "9"}, text="proxy")
        )
        async with httpx.AsyncClient(transport=transport) as client:
            config = FeishuChannelConfig(webhook_url=FEISHU_URL)  # type: ignore[arg-type]
            with pytest.raises(DeliveryError, match=f"HTTP {status}") as info:
                await feishu.FeishuNotifier("f", config, client, clock).send(hostile_alert())
        assert info.value.retryable is retryable
        assert info.value.retry_after == (9.0 if retryable else None)


# -- JSON escaping must not push a body over the platform's limit --------------------------


def _quoted(quotes: int, emoji: int) -> AlertMessage:
    """Posts full of quotes (two bytes each in JSON) and emoji (four bytes of UTF-8):
    within every text limit, yet a body far larger once JSON-escaped."""
    fill = '"' * quotes + "\U0001f600" * emoji
    evidence = tuple(
        EvidenceSnippet(
            author=(fill * 100)[:100],
            followers=1,
            text=(fill * 500)[:500],
            url="https://social.example/p/1",
        )
        for _ in range(10)
    )
    return hostile_alert(evidence=evidence, explanation=(fill * 1500)[:1500])


@pytest.mark.parametrize(
    ("harness_type", "alert"),
    [
        (DingTalkHarness, _quoted(3, 2)),  # was over 22 000 bytes (DingTalk: 20 000)
        (FeishuHarness, _quoted(5, 2)),  # was over 21 000 bytes (Feishu: 20 KB)
    ],
)
async def test_quote_heavy_posts_never_push_the_body_over_the_limit(
    harness_type: type[HttpHarness], alert: AlertMessage, clock: ManualClock
) -> None:
    harness = harness_type(clock)
    try:
        await harness.notifier().send(alert)
    finally:
        await harness.close()
    assert not harness.problems
    assert len(harness.requests[-1].content) <= 20000
    text = harness.rendered_text()
    assert "https://cw.example/ack/tok.123.sig" in text  # the links are never cut
    assert "@lilei" in text or "ou_abc123" in text  # nor the mention


# -- a digest keeps the idempotency key it was given ---------------------------------------


def _payload(i: int, contact: Contact) -> dict[str, Any]:
    return AlertMessage(
        incident_id=100 + i,
        tier=3,
        title="Acme: network-wide crisis",
        explanation="41 posts",
        watch_id="acme",
        reason="escalation-2",
        links=(Link(label="Open incident", url=f"https://cw.example/incidents/{100 + i}"),),
        opened_at=datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
        idempotency_key=str(i),
        mentions=(contact,),
    ).model_dump(mode="json")


ON_CALL = Contact(name="李雷", phone="+8613800001111", chat_ids={"slack": "U0ONCALL"})


async def test_a_digest_that_mentions_someone_keeps_its_idempotency_key(
    clock: ManualClock,
) -> None:
    first = digest_message([_payload(1, ON_CALL), _payload(2, ON_CALL)], "burst", "digest:1,2")
    later = digest_message([_payload(3, ON_CALL), _payload(4, ON_CALL)], "burst", "digest:3,4")
    assert (first.idempotency_key, later.idempotency_key) == ("digest:1,2", "digest:3,4")
    # two digests are two messages: receivers that drop repeats must not drop the second
    config = EmailChannelConfig(
        host="smtp.example", sender="cw@acme.example", to=["pr@acme.example"]
    )
    now = clock.now()
    assert email.message_id(first) != email.message_id(later)
    assert (
        email.build_email(first, config, now)["Message-ID"]
        != (email.build_email(later, config, now)["Message-ID"])
    )
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        hook = WebhookChannelConfig(url="https://hooks.example/x", secret=SIGNING_SECRET)  # type: ignore[arg-type]
        notifier = WebhookNotifier("hook", hook, client, clock)
        await notifier.send(first)
        await notifier.send(later)
    assert [r.headers[IDEMPOTENCY_HEADER] for r in seen] == ["digest:1,2", "digest:3,4"]


# -- an SMTP server that refuses some of the recipients ------------------------------------


@pytest.mark.parametrize(
    ("answer", "retryable"),
    [("550 5.1.1 No such user", False), ("452 4.2.2 Mailbox full, try later", True)],
)
async def test_a_recipient_refused_while_others_are_accepted_is_not_a_success(
    answer: str, retryable: bool, clock: ManualClock
) -> None:
    harness = EmailHarness(clock)
    await harness.start()
    harness.refuse_recipients = {"legal@acme.example": answer}
    try:
        with pytest.raises(DeliveryError) as info:
            await harness.notifier().send(hostile_alert())
    finally:
        await harness.close()
    assert harness.envelopes[-1][1] == ["pr@acme.example"]  # the other one got it
    assert "legal@acme.example" in str(info.value)
    assert info.value.retryable is retryable
