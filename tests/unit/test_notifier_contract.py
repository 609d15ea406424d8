"""The one contract every notifier passes, each against a local fake of its platform that
checks the signature and the body as the real service would (``tests.notifier_fakes``):

* accepted -> delivered (and the fake found nothing to refuse: signature, URL, body shape);
* throttled (HTTP 429 + Retry-After / SMTP 451) -> retryable, Retry-After passed on;
* server error (5xx / SMTP 4yz) -> retryable; refused (4xx / SMTP 5yz) -> permanent;
* timeout -> retryable; no secret (URL token, signing key, routing key, password) in any
  error text, even when the server echoes everything back;
* every message kind renders: trigger, DRILL, acknowledge/resolve follow-ups, digest,
  ack link; the platform's published rate limits are declared.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from alerts.notifiers.base import DeliveryError, Notifier
from core.clock import ManualClock
from tests.notifier_fakes import (
    ALL_KINDS,
    HTTP_HARNESSES,
    SECRETS,
    EmailHarness,
    Harness,
    HttpHarness,
    digest_alert,
    hostile_alert,
    make_harness,
)


@pytest.fixture(params=ALL_KINDS)
async def harness(request: pytest.FixtureRequest, clock: ManualClock) -> AsyncIterator[Harness]:
    made = await make_harness(request.param, clock)
    yield made
    await made.close()


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, "a secret leaked into an error"


def accepted(harness: Harness) -> int:
    if isinstance(harness, EmailHarness):
        return len(harness.messages)
    assert harness.problems == [], harness.problems
    return len(harness.bodies)


async def test_accepted_message_is_delivered_and_passes_the_platform_checks(
    harness: Harness,
) -> None:
    notifier = harness.notifier()
    assert isinstance(notifier, Notifier)
    await notifier.send(hostile_alert())
    assert accepted(harness) == 1


@pytest.mark.parametrize(
    "variant",
    [
        {"drill": True},
        {"action": "acknowledge", "actor": "alice"},
        {"action": "resolve", "actor": "bob"},
        {"ack_url": None, "mentions": (), "evidence": ()},
        {"tier": 1, "title": "x" * 5000, "explanation": "&<" * 5000},
    ],
    ids=["drill", "acknowledged", "resolved", "bare", "oversized"],
)
async def test_every_message_kind_is_accepted(harness: Harness, variant: dict[str, object]) -> None:
    await harness.notifier().send(hostile_alert(**variant))
    assert accepted(harness) == 1
    text = harness.rendered_text()
    if variant.get("drill"):
        assert "DRILL" in text
    if variant.get("action") == "acknowledge":
        assert "Acknowledged by alice" in text or harness.kind == "pagerduty"
    if variant.get("action") == "resolve":
        assert "Resolved by bob" in text or harness.kind == "pagerduty"


async def test_digest_lists_every_incident(harness: Harness) -> None:
    await harness.notifier().send(digest_alert())
    if harness.kind == "pagerduty":  # one event per incident, each under its own key
        assert accepted(harness) == 3
        keys = [body["dedup_key"] for body in harness.bodies]
        assert keys == [f"crisiswatch-incident-{i}" for i in (7, 8, 9)]
        return
    assert accepted(harness) == 1
    text = harness.rendered_text()
    for incident_id in (7, 8, 9):
        assert f"{incident_id}" in text
    assert "3 incidents" in text


async def test_ack_link_is_offered(harness: Harness) -> None:
    await harness.notifier().send(hostile_alert())
    assert "https://cw.example/ack/tok.123.sig" in harness.rendered_text()


async def test_follow_ups_carry_no_ack_link(harness: Harness) -> None:
    await harness.notifier().send(hostile_alert(action="acknowledge", actor="alice"))
    if harness.kind != "webhook":  # the webhook passes the whole message on, by contract
        assert "https://cw.example/ack/" not in harness.rendered_text()


async def test_throttling_is_retryable_and_retry_after_is_honoured(harness: Harness) -> None:
    harness.scenario = "throttled"
    with pytest.raises(DeliveryError) as info:
        await harness.notifier().send(hostile_alert())
    assert info.value.retryable
    if isinstance(harness, HttpHarness):
        assert info.value.retry_after == 17
        assert "HTTP 429" in str(info.value)


async def test_server_errors_are_retryable(harness: Harness) -> None:
    harness.scenario = "server_error"
    with pytest.raises(DeliveryError) as info:
        await harness.notifier().send(hostile_alert())
    assert info.value.retryable
    assert info.value.retry_after is None


async def test_refusals_are_permanent(harness: Harness) -> None:
    harness.scenario = "rejected"
    with pytest.raises(DeliveryError) as info:
        await harness.notifier().send(hostile_alert())
    assert not info.value.retryable


async def test_timeout_is_retryable_without_secrets(harness: Harness) -> None:
    harness.scenario = "timeout"
    with pytest.raises(DeliveryError) as info:
        await harness.notifier().send(hostile_alert())
    assert info.value.retryable
    assert_no_secret(str(info.value))
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_no_secret_in_errors_or_logs_when_the_server_echoes_everything(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    harness.scenario = "echo"
    notifier = harness.notifier()
    with pytest.raises(DeliveryError) as info:
        await notifier.send(hostile_alert())
    assert not info.value.retryable
    assert_no_secret(str(info.value))
    assert_no_secret(repr(info.value))
    ours = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore", "mail"))]
    assert_no_secret("\n".join(r.getMessage() for r in ours))
    assert_no_secret(repr(notifier.name))


RETRYABLE_STATUSES = [408, 425, 429, 500, 502, 503, 504]
PERMANENT_STATUSES = [301, 400, 401, 403, 404, 410, 413]


@pytest.mark.parametrize("kind", list(HTTP_HARNESSES))
@pytest.mark.parametrize("status", RETRYABLE_STATUSES + PERMANENT_STATUSES)
async def test_http_statuses(kind: str, status: int, clock: ManualClock) -> None:
    harness = await make_harness(kind, clock)
    harness.scenario = f"status:{status}"
    try:
        with pytest.raises(DeliveryError) as info:
            await harness.notifier().send(hostile_alert())
    finally:
        await harness.close()
    assert info.value.retryable is (status in RETRYABLE_STATUSES)
    assert f"HTTP {status}" in str(info.value)


def test_every_notifier_declares_its_platform_limits() -> None:
    from alerts.notifiers.registry import FACTORIES

    assert set(ALL_KINDS) | {"console"} == set(FACTORIES)
    from alerts.notifiers import (
        dingtalk,
        email,
        feishu,
        pagerduty,
        slack,
        teams,
        wecom,
    )

    limits = {
        "slack": slack.SlackNotifier.rate_limits,
        "teams": teams.TeamsNotifier.rate_limits,
        "feishu": feishu.FeishuNotifier.rate_limits,
        "dingtalk": dingtalk.DingTalkNotifier.rate_limits,
        "wecom": wecom.WeComNotifier.rate_limits,
        "pagerduty": pagerduty.PagerDutyNotifier.rate_limits,
        "email": email.EmailNotifier.rate_limits,
    }
    as_tuples = {
        k: [(r.count, r.per_seconds, r.penalty_seconds) for r in v] for k, v in limits.items()
    }
    assert as_tuples == {
        "slack": [(1, 1.0, 0)],
        "teams": [(4, 1.0, 0)],
        "feishu": [(5, 1.0, 0), (100, 60.0, 0)],
        "dingtalk": [(20, 60.0, 600.0)],
        "wecom": [(20, 60.0, 0)],
        "pagerduty": [(120, 60.0, 0)],
        "email": [(30, 60.0, 0)],
    }
