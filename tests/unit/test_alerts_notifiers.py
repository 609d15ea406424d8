"""Channel specifics: webhook signature, Slack blocks, escaping helpers, registry. The
contract every notifier passes is ``test_notifier_contract``; hostile text is
``test_notifier_injection``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import httpx
import pytest

from alerts.config import (
    AlertsConfig,
    ConsoleChannelConfig,
    SlackChannelConfig,
    WebhookChannelConfig,
)
from alerts.notifiers import escape
from alerts.notifiers.base import AlertMessage, EvidenceSnippet, Link, Notifier
from alerts.notifiers.registry import UnknownChannelType, build_notifier, build_notifiers
from alerts.notifiers.slack import SlackNotifier
from alerts.notifiers.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookNotifier,
    verify_signature,
)
from core.clock import ManualClock

SECRET_TOKEN = "XoXbSeCrEtToKeN123456"
SECRET_URL = f"https://hooks.example.com/services/T0001/B0002/{SECRET_TOKEN}"
HMAC_SECRET = "hmac-signing-secret-0123456789"
SECRETS = (SECRET_URL, SECRET_TOKEN, HMAC_SECRET)

HOSTILE = (
    "@channel @here <!everyone> <!channel> <@U123ABC> *bold* click "
    "<https://evil.example/phish|your bank> or https://evil.example/x or evil.example "
    "\x1b[31mred\u202e & done @所有人"
)

Handler = Callable[[httpx.Request], httpx.Response]


def alert(**overrides: object) -> AlertMessage:
    data: dict[str, object] = {
        "incident_id": 42,
        "tier": 3,
        "title": "Acme: network-wide crisis",
        "explanation": "41 negative posts in 10 min from 37 authors",
        "watch_id": "acme",
        "brand": "Acme",
        "reason": "new",
        "teams": ("pr", "legal"),
        "evidence": (
            EvidenceSnippet(
                author="mallory @everyone",
                followers=1200,
                text=HOSTILE,
                url="https://social.example/p/1",
            ),
        ),
        "links": (Link(label="Open incident", url="https://cw.example/incidents/42"),),
        "ack_hint": "POST /incidents/42/ack",
        "opened_at": datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
        "idempotency_key": "42:3:pr:alert",
    }
    data.update(overrides)
    return AlertMessage.model_validate(data)


@pytest.fixture
async def client_factory() -> AsyncIterator[Callable[[Handler], httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []

    def make(handler: Handler) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


def make_http_notifier(kind: str, client: httpx.AsyncClient, clock: ManualClock) -> Notifier:
    if kind == "webhook":
        return WebhookNotifier(
            "ops-hook",
            WebhookChannelConfig(url=SECRET_URL, secret=HMAC_SECRET, timeout=3),  # type: ignore[arg-type]
            client,
            clock,
        )
    return SlackNotifier(
        "pr-slack",
        SlackChannelConfig(webhook_url=SECRET_URL, timeout=3),
        client,  # type: ignore[arg-type]
    )


HTTP_KINDS = ["webhook", "slack"]


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


# -- channel specifics -----------------------------------------------------------------


async def test_webhook_signature_verifies(client_factory, clock) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202)

    await make_http_notifier("webhook", client_factory(handler), clock).send(alert())
    request = seen[0]
    ts = request.headers[TIMESTAMP_HEADER]
    sig = request.headers[SIGNATURE_HEADER]
    now = clock.now().timestamp()
    assert ts == str(int(now)) and sig.startswith("sha256=")
    assert verify_signature(HMAC_SECRET, ts, request.content, sig, now=now)
    assert not verify_signature("another-secret-0123456789", ts, request.content, sig, now=now)
    assert not verify_signature(HMAC_SECRET, ts, request.content + b" ", sig, now=now)
    assert not verify_signature(HMAC_SECRET, ts, request.content, sig, now=now + 3600)
    assert request.headers["X-Crisiswatch-Idempotency-Key"] == "42:3:pr:alert"
    payload = json.loads(request.content)
    assert payload["type"] == "crisiswatch.alert"
    assert payload["alert"]["incident_id"] == 42 and payload["alert"]["tier"] == 3


async def test_slack_message_shape(client_factory, clock) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text="ok")

    await make_http_notifier("slack", client_factory(handler), clock).send(alert(drill=True))
    msg = json.loads(seen[0].content)
    header, section = msg["blocks"][0], msg["blocks"][1]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    assert header["text"]["text"].startswith("[DRILL] Tier 3")
    assert len(header["text"]["text"]) <= 150
    assert section["type"] == "section" and "41 negative posts" in section["text"]["text"]
    contexts = [b for b in msg["blocks"] if b["type"] == "context"]
    evidence = contexts[1]["elements"][0]
    assert evidence["verbatim"] is True
    assert "&lt;\u200b!everyone&gt;" in evidence["text"]
    assert "<https://social.example/p/1|view post on social［.］example>" in evidence["text"]
    assert "Tier 3" in msg["text"]
    assert msg["unfurl_links"] is False


async def test_slack_fits_block_limits_even_when_escaping_grows_the_text(
    client_factory, clock
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    notifier = make_http_notifier("slack", client_factory(handler), clock)
    await notifier.send(alert(title="&" * 500, explanation="<" * 5000))
    msg = json.loads(seen[0].content)
    assert len(msg["blocks"][0]["text"]["text"]) <= 150
    assert len(msg["blocks"][1]["text"]["text"]) <= 3000


def test_escape_helpers() -> None:
    assert escape.slack("a & <b>") == "a &amp; &lt;b&gt;"
    assert escape.plain("ping @channel now") == "ping @\u200bchannel now"
    assert escape.plain("see https://x.example/a") == "see hxxps[:]//x[.]example/a"
    assert escape.plain("e.g. 1.5M posts") == "e.g. 1.5M posts"
    assert escape.clean("a\x00b\x1b[0mc\u202ed\ne") == "ab[0mcd\ne"
    assert escape.clean("x" * 50, 10) == "x" * 9 + "…"
    assert escape.safe_url("https://ok.example/p?a=1") == "https://ok.example/p?a=1"
    for bad in ("javascript:alert(1)", "https://x.example/a|b", "https://x.example/<b>", None):
        assert escape.safe_url(bad) is None


async def test_registry_builds_every_configured_channel(clock) -> None:
    config = AlertsConfig.model_validate(
        {
            "channels": {
                "log": {"type": "console"},
                "hook": {"type": "webhook", "url": SECRET_URL, "secret": HMAC_SECRET},
                "slack": {"type": "slack", "webhook_url": SECRET_URL},
            },
            "teams": {t: {"channels": ["log"]} for t in ("pr", "legal", "customer_service")},
            "routes": {1: ["customer_service"], 2: ["pr"], 3: ["pr", "legal"]},
        }
    )
    async with httpx.AsyncClient() as client:
        notifiers = build_notifiers(config, client, clock)
    assert {n: (v.kind, type(v).__name__) for n, v in notifiers.items()} == {
        "log": ("console", "ConsoleNotifier"),
        "hook": ("webhook", "WebhookNotifier"),
        "slack": ("slack", "SlackNotifier"),
    }
    assert all(isinstance(n, Notifier) for n in notifiers.values())


async def test_registry_refuses_an_unknown_channel_type(clock) -> None:
    class PagerConfig(ConsoleChannelConfig):
        type: str = "pager"  # type: ignore[assignment]

    with pytest.raises(
        UnknownChannelType,
        match=r"'pager'.*known: console, dingtalk, email, feishu, pagerduty, slack, teams, web",
    ):
        async with httpx.AsyncClient() as client:
            build_notifier("pager-1", PagerConfig(), client, clock)
