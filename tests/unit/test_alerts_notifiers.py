"""The contract every notifier passes (statuses, timeouts, secrets, hostile text), plus the
channel-specific parts: webhook signature, Slack blocks, console output, registry."""

from __future__ import annotations

import json
import logging
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
from alerts.notifiers.base import AlertMessage, DeliveryError, EvidenceSnippet, Link, Notifier
from alerts.notifiers.console import ConsoleNotifier
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


# -- the shared contract ---------------------------------------------------------------


@pytest.mark.parametrize("kind", HTTP_KINDS)
@pytest.mark.parametrize("status", [200, 201, 204])
async def test_2xx_is_delivered(kind: str, status: int, client_factory, clock) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, text="ok")

    await make_http_notifier(kind, client_factory(handler), clock).send(alert())
    assert len(seen) == 1
    assert str(seen[0].url) == SECRET_URL
    assert seen[0].method == "POST"


@pytest.mark.parametrize("kind", HTTP_KINDS)
@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
async def test_throttling_and_server_errors_are_retryable(
    kind: str, status: int, client_factory, clock
) -> None:
    notifier = make_http_notifier(kind, client_factory(lambda r: httpx.Response(status)), clock)
    with pytest.raises(DeliveryError) as info:
        await notifier.send(alert())
    assert info.value.retryable
    assert f"HTTP {status}" in str(info.value)


@pytest.mark.parametrize("kind", HTTP_KINDS)
@pytest.mark.parametrize("status", [301, 400, 401, 403, 404, 410, 413])
async def test_other_statuses_are_permanent(kind: str, status: int, client_factory, clock) -> None:
    notifier = make_http_notifier(kind, client_factory(lambda r: httpx.Response(status)), clock)
    with pytest.raises(DeliveryError) as info:
        await notifier.send(alert())
    assert not info.value.retryable


@pytest.mark.parametrize("kind", HTTP_KINDS)
async def test_retry_after_is_passed_on(kind: str, client_factory, clock) -> None:
    handler = lambda r: httpx.Response(429, headers={"Retry-After": "17"})  # noqa: E731
    notifier = make_http_notifier(kind, client_factory(handler), clock)
    with pytest.raises(DeliveryError) as info:
        await notifier.send(alert())
    assert info.value.retryable and info.value.retry_after == 17


@pytest.mark.parametrize("kind", HTTP_KINDS)
@pytest.mark.parametrize(
    "exc", [httpx.ReadTimeout("slow"), httpx.ConnectTimeout("slow"), httpx.ConnectError("down")]
)
async def test_timeouts_and_connection_errors_are_retryable(
    kind: str, exc: Exception, client_factory, clock
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise type(exc)(f"{exc} while talking to {request.url}", request=request)

    notifier = make_http_notifier(kind, client_factory(handler), clock)
    with pytest.raises(DeliveryError) as info:
        await notifier.send(alert())
    assert info.value.retryable
    assert_no_secret(str(info.value))
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize("kind", HTTP_KINDS)
async def test_secrets_never_reach_errors_or_logs(
    kind: str, client_factory, clock, caplog: pytest.LogCaptureFixture
) -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        # A receiver that echoes everything it got, the URL and the headers included.
        return httpx.Response(
            400, text=f"bad request to {request.url}: {dict(request.headers)} {request.url.path}"
        )

    caplog.set_level(logging.DEBUG)
    notifier = make_http_notifier(kind, client_factory(echo), clock)
    with pytest.raises(DeliveryError) as info:
        await notifier.send(alert())
    assert "HTTP 400" in str(info.value)
    assert_no_secret(str(info.value))
    assert_no_secret(repr(info.value))
    # httpx's own INFO line ("HTTP Request: POST <url>") carries the URL; the app keeps the
    # "httpx" logger at WARNING (api.cli). Everything logged by crisiswatch is clean:
    ours = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert_no_secret("\n".join(r.getMessage() for r in ours))
    assert_no_secret(repr(notifier.__dict__.get("name")))


@pytest.mark.parametrize("kind", HTTP_KINDS)
async def test_hostile_text_is_neutralised(kind: str, client_factory, clock) -> None:
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(200)

    await make_http_notifier(kind, client_factory(handler), clock).send(alert())
    body = bodies[0].decode()
    text = json.dumps(json.loads(body), ensure_ascii=False)  # the decoded strings
    for raw in (
        "@channel",
        "@here",
        "@everyone",
        "<!everyone>",
        "<!channel>",
        "<@U123ABC>",
        "https://evil.example",
        "evil.example",
        "\x1b",
        "\u202e",
        "@所有人",
    ):
        assert raw not in text, raw
    assert "https://social.example/p/1" in text  # the post's own (validated) link is kept


async def test_console_neutralises_hostile_text(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="alerts.console")
    notifier = ConsoleNotifier("pr-console", ConsoleChannelConfig())
    await notifier.send(alert(title="Acme\x1b[2J: crisis"))
    out = caplog.text
    assert (
        "TIER 3 ALERT #42" in out and "41 negative posts" in out and "POST /incidents/42/ack" in out
    )
    for raw in ("@channel", "@here", "@everyone", "https://evil.example", "\x1b", "\u202e"):
        assert raw not in out, raw
    assert caplog.records[0].levelno == logging.WARNING


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
    assert "<https://social.example/p/1|view post>" in evidence["text"]
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

    with pytest.raises(UnknownChannelType, match=r"'pager'.*known: console, dingtalk, email, feishu, pagerduty, slack, teams, webhook, wecom"):
        async with httpx.AsyncClient() as client:
            build_notifier("pager-1", PagerConfig(), client, clock)
