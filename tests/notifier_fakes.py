"""Local fakes of every platform a notifier talks to, checking requests as the real service
would (signature, URL, body shape), plus a sample alert full of hostile text.

Each ``Harness`` builds its notifier pointed at its fake and can be told how to answer the
next request: ``ok``, ``throttled`` (429 + Retry-After), ``server_error``, ``rejected``,
``timeout`` or ``echo`` (an error answer that repeats the URL, headers and body back).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import ssl
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import httpx
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from alerts.channels import (
    DingTalkChannelConfig,
    EmailChannelConfig,
    FeishuChannelConfig,
    PagerDutyChannelConfig,
    SlackChannelConfig,
    TeamsChannelConfig,
    WebhookChannelConfig,
    WeComChannelConfig,
)
from alerts.notifiers.base import (
    AlertMessage,
    Contact,
    DigestItem,
    EvidenceSnippet,
    Link,
    Notifier,
    RateLimit,
)
from alerts.notifiers.dingtalk import DingTalkNotifier
from alerts.notifiers.email import EmailNotifier
from alerts.notifiers.feishu import FeishuNotifier
from alerts.notifiers.pagerduty import PagerDutyNotifier
from alerts.notifiers.slack import SlackNotifier
from alerts.notifiers.teams import TeamsNotifier
from alerts.notifiers.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookNotifier,
    verify_signature,
)
from alerts.notifiers.wecom import WeComNotifier
from core.clock import ManualClock

TOKEN = "XoXbSeCrEtToKeN123456"
SIGNING_SECRET = "SECsigning-secret-0123456789abcdef"
PD_KEY = "R0UT1NGKEYR0UT1NGKEYR0UT1NGKEY32"
SMTP_USER = "alerts@acme.example"
SMTP_PASSWORD = "smtp-PaSsWoRd-0123456789"
SECRETS = (TOKEN, SIGNING_SECRET, PD_KEY, SMTP_PASSWORD)
CERTS = Path(__file__).parent / "fixtures" / "smtp"

HOSTILE = (
    '@channel @here @all <!everyone> <!channel> <@U123ABC> <at user_id="all">all</at> '
    "<at id=all></at> *bold* **big** _it_ ~gone~ `code` # heading [x](http://evil.example) "
    "[click](https://evil.example/phish) <https://evil.example/phish|your bank> "
    "or https://evil.example/x or evil.example <b>html</b> <script>alert(1)</script> "
    "&lt;!channel&gt; @\u200ball ht\u200btps://evil.example <\u200b!here> @所有人 "
    "\x1b[31mred\u202e & done"
)

# Markup that must not survive in a channel that renders markup (every chat, email HTML).
MARKUP = ("<script>", "<b>")
# What must never reach a message in raw form, whatever the channel's markup.
FORBIDDEN = (
    "@channel",
    "@here",
    "@all",
    "@everyone",
    "<!everyone>",
    "<!channel>",
    "<!here>",
    "<@U123ABC>",
    '<at user_id="all">',
    "<at id=all>",
    "http://evil",
    "https://evil",
    "evil.example",
    "\x1b",
    "\u202e",
    "@所有人",
)


def hostile_alert(**overrides: Any) -> AlertMessage:
    data: dict[str, Any] = {
        "incident_id": 42,
        "tier": 3,
        "title": "Acme: network-wide crisis",
        "explanation": "41 negative posts in 10 min from 37 authors " + HOSTILE,
        "watch_id": "acme",
        "brand": "Acme",
        "reason": "new",
        "teams": ("pr", "legal"),
        "evidence": (
            EvidenceSnippet(
                author="mallory @everyone [x](http://evil.example)",
                followers=1200,
                text=HOSTILE,
                url="https://social.example/p/1",
            ),
        ),
        "links": (Link(label="Open incident", url="https://cw.example/incidents/42"),),
        "ack_hint": "POST /incidents/42/ack",
        "ack_url": "https://cw.example/ack/tok.123.sig",
        "mentions": (
            Contact(
                name="Li Lei",
                phone="+86 138-0000-1111",
                chat_ids={
                    "slack": "U0ONCALL",
                    "dingtalk": "lilei",
                    "wecom": "LiLei",
                    "feishu": "ou_abc123",
                    "teams": "lilei@acme.example",
                },
            ),
        ),
        "opened_at": datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
        "idempotency_key": "42:3:pr:alert",
    }
    data.update(overrides)
    return AlertMessage.model_validate(data)


def digest_alert() -> AlertMessage:
    return hostile_alert(
        title="3 tier-1 incidents",
        digest=(
            DigestItem(incident_id=7, tier=1, title="Acme: minor complaint", reason="new"),
            DigestItem(incident_id=8, tier=1, title="Acme @all <!channel>", reason="new"),
            DigestItem(
                incident_id=9,
                tier=1,
                title="Acme: minor complaint",
                url="https://cw.example/incidents/9",
            ),
        ),
    )


class Rejected(Exception):
    """The fake refused the request as the real service would (the test shows why)."""


# -- HTTP platforms ------------------------------------------------------------------------


class HttpHarness:
    """A platform reached over HTTP, faked with ``httpx.MockTransport``."""

    kind = ""
    url = f"https://hooks.example.com/services/T0001/B0002/{TOKEN}"
    accepted_status = 200

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.scenario = "ok"
        self.requests: list[httpx.Request] = []
        self.bodies: list[Any] = []
        self.problems: list[str] = []
        self.client = httpx.AsyncClient(transport=httpx.MockTransport(self._handle))

    async def close(self) -> None:
        await self.client.aclose()

    def notifier(self) -> Notifier:
        raise NotImplementedError

    # what the platform checks and answers
    def check(self, request: httpx.Request, body: Any) -> str | None:
        """Why the real service would refuse this request, or None."""
        return None

    def ok(self) -> httpx.Response:
        return httpx.Response(self.accepted_status, text="ok")

    def refused(self, why: str) -> httpx.Response:
        return httpx.Response(400, text=why)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        if self.scenario == "timeout":
            raise httpx.ReadTimeout(f"timed out talking to {request.url}", request=request)
        if self.scenario == "echo":
            return httpx.Response(
                400,
                text=f"bad request to {request.url}: {dict(request.headers)} {request.content!r}",
            )
        self.requests.append(request)
        if request.method != "POST":
            return self.refused("method not allowed")
        if not request.headers.get("content-type", "").startswith("application/json"):
            return self.refused("content type must be JSON")
        try:
            body = json.loads(request.content)
        except ValueError:
            return self.refused("body is not JSON")
        self.bodies.append(body)
        problem = self.check(request, body)
        if problem is not None:
            self.problems.append(problem)
            return self.refused(problem)
        if self.scenario == "throttled":
            return httpx.Response(429, headers={"Retry-After": "17"}, text="rate limited")
        if self.scenario.startswith("status:"):
            return httpx.Response(int(self.scenario[7:]), text="answer")
        if self.scenario == "server_error":
            return httpx.Response(503, text="unavailable")
        if self.scenario == "rejected":
            return httpx.Response(403, text="forbidden")
        return self.ok()

    def markup_text(self) -> str:
        """What the receiver renders as markup (plain-JSON receivers render none)."""
        return "" if self.kind in ("webhook", "pagerduty") else self.rendered_text()

    def rendered_text(self) -> str:
        """Every string of the last accepted body, decoded (what the chat would render)."""
        return json.dumps(self.bodies[-1], ensure_ascii=False, separators=(",", ":"))


def _url_is(request: httpx.Request, expected: str) -> bool:
    got, want = urlsplit(str(request.url)), urlsplit(expected)
    return (got.scheme, got.netloc, got.path) == (want.scheme, want.netloc, want.path)


class SlackHarness(HttpHarness):
    kind = "slack"

    def notifier(self) -> Notifier:
        config = SlackChannelConfig(webhook_url=self.url, timeout=3)  # type: ignore[arg-type]
        return SlackNotifier("pr-slack", config, self.client)

    def check(self, request: httpx.Request, body: Any) -> str | None:
        if str(request.url) != self.url:
            return "no_service"
        blocks = body.get("blocks")
        if not isinstance(body.get("text"), str) or not isinstance(blocks, list) or not blocks:
            return "invalid_payload"
        if len(blocks) > 50 or any("type" not in b for b in blocks):
            return "invalid_blocks"
        for block in blocks:  # Block Kit reference: one limit exceeded refuses the message
            kind = block["type"]
            if kind == "header" and not 0 < len(block["text"]["text"]) <= 150:
                return "invalid_blocks: header text must be 1-150 characters"
            if kind == "section" and not 0 < len(block["text"]["text"]) <= 3000:
                return "invalid_blocks: section text must be 1-3000 characters"
            if kind == "context":
                elements = block.get("elements") or []
                if not 0 < len(elements) <= 10:
                    return "invalid_blocks: a context takes 1-10 elements"
                if any(not 0 < len(e.get("text", "")) <= 3000 for e in elements):
                    return "invalid_blocks: context text must be 1-3000 characters"
            if kind == "actions" and not 0 < len(block.get("elements") or []) <= 25:
                return "invalid_blocks: actions take 1-25 elements"
        return None


class WebhookHarness(HttpHarness):
    kind = "webhook"

    def notifier(self) -> Notifier:
        config = WebhookChannelConfig(url=self.url, secret=SIGNING_SECRET, timeout=3)  # type: ignore[arg-type]
        return WebhookNotifier("ops-hook", config, self.client, self.clock)

    def check(self, request: httpx.Request, body: Any) -> str | None:
        ts = request.headers.get(TIMESTAMP_HEADER, "")
        sig = request.headers.get(SIGNATURE_HEADER, "")
        now = self.clock.now().timestamp()
        if not verify_signature(SIGNING_SECRET, ts, request.content, sig, now=now):
            return "bad signature"
        if body.get("type") != "crisiswatch.alert" or body.get("version") != 1:
            return "unknown payload type"
        return None


class TeamsHarness(HttpHarness):
    kind = "teams"
    url = f"https://prod-01.westus.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?sig={TOKEN}"
    accepted_status = 202

    def notifier(self) -> Notifier:
        config = TeamsChannelConfig(webhook_url=self.url, timeout=3)  # type: ignore[arg-type]
        return TeamsNotifier("pr-teams", config, self.client)

    def check(self, request: httpx.Request, body: Any) -> str | None:
        if str(request.url) != self.url:
            return "unauthorized"
        if len(request.content) > 28 * 1024:
            return "413 request entity too large (a message is at most about 28 KB)"
        attachments = body.get("attachments")
        if body.get("type") != "message" or not isinstance(attachments, list) or not attachments:
            return "expected a message with attachments"
        card = attachments[0]
        if card.get("contentType") != "application/vnd.microsoft.card.adaptive":
            return "expected an Adaptive Card attachment"
        content = card.get("content", {})
        if content.get("type") != "AdaptiveCard" or not content.get("version"):
            return "invalid Adaptive Card"
        for block in content.get("body", []):
            if block.get("type") != "TextBlock" or not isinstance(block.get("text"), str):
                return "invalid card element"
        for action in content.get("actions", []):
            if action.get("type") != "Action.OpenUrl" or not action.get("url", "").startswith(
                "https://"
            ):
                return "invalid card action"
        for entity in content.get("msteams", {}).get("entities", []):
            texts = " ".join(b["text"] for b in content["body"])
            if entity["text"] not in texts:
                return "mention entity without its <at> text"
        return None


class FeishuHarness(HttpHarness):
    kind = "feishu"
    url = f"https://open.feishu.cn/open-apis/bot/v2/hook/{TOKEN}"

    def notifier(self) -> Notifier:
        config = FeishuChannelConfig(webhook_url=self.url, secret=SIGNING_SECRET, timeout=3)  # type: ignore[arg-type]
        return FeishuNotifier("pr-feishu", config, self.client, self.clock)

    def ok(self) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "StatusCode": 0,
                "StatusMessage": "success",
                "code": 0,
                "data": {},
                "msg": "success",
            },
        )

    def refused(self, why: str) -> httpx.Response:
        code = 19021 if "sign" in why else 9499
        return httpx.Response(200, json={"code": code, "msg": why, "data": {}})

    def check(self, request: httpx.Request, body: Any) -> str | None:
        if str(request.url) != self.url:
            return "bad request: unknown hook"
        timestamp = body.get("timestamp")
        if not isinstance(timestamp, str) or not timestamp.isdigit():
            return "sign match fail or timestamp is not within one hour from current time"
        if abs(int(timestamp) - self.clock.now().timestamp()) > 3600:
            return "sign match fail or timestamp is not within one hour from current time"
        key = f"{timestamp}\n{SIGNING_SECRET}".encode()
        expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
        if body.get("sign") != expected:
            return "sign match fail or timestamp is not within one hour from current time"
        if body.get("msg_type") != "interactive" or "card" not in body:
            return "Bad Request"
        if len(request.content) > 20 * 1024:
            return "Bad Request: body over 20 KB"
        card = body["card"]
        if card.get("schema") != "2.0" or card["header"]["title"]["tag"] != "plain_text":
            return "Bad Request: card"
        for element in card["body"]["elements"]:
            if element["tag"] not in ("markdown", "button"):
                return "Bad Request: element"
        return None


class DingTalkHarness(HttpHarness):
    kind = "dingtalk"
    url = f"https://oapi.dingtalk.com/robot/send?access_token={TOKEN}"

    def notifier(self) -> Notifier:
        config = DingTalkChannelConfig(webhook_url=self.url, secret=SIGNING_SECRET, timeout=3)  # type: ignore[arg-type]
        return DingTalkNotifier("pr-dingtalk", config, self.client, self.clock)

    def ok(self) -> httpx.Response:
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok"})

    def refused(self, why: str) -> httpx.Response:
        return httpx.Response(200, json={"errcode": 310000, "errmsg": why})

    def check(self, request: httpx.Request, body: Any) -> str | None:
        query = parse_qs(urlsplit(str(request.url)).query)
        if not _url_is(request, self.url) or query.get("access_token") != [TOKEN]:
            return "token is not exist"
        timestamp = (query.get("timestamp") or [""])[0]
        if (
            not timestamp.isdigit()
            or abs(int(timestamp) / 1000 - self.clock.now().timestamp()) > 3600
        ):
            return "invalid timestamp"
        to_sign = f"{timestamp}\n{SIGNING_SECRET}".encode()
        digest = hmac.new(SIGNING_SECRET.encode(), to_sign, hashlib.sha256).digest()
        if (query.get("sign") or [""])[0] != base64.b64encode(digest).decode():
            return "sign not match"
        if len(request.content) > 20000:
            return "body over 20000 bytes"
        kind = body.get("msgtype")
        if kind == "markdown":
            md = body.get("markdown", {})
            if not md.get("title") or not md.get("text"):
                return "markdown needs title and text"
            at = body.get("at", {})
            if at.get("isAtAll"):
                return "isAtAll must never be set"
            for who in [*at.get("atMobiles", []), *at.get("atUserIds", [])]:
                if f"@{who}" not in md["text"]:
                    return f"@{who} in at but not in the text"
        elif kind == "actionCard":
            card = body.get("actionCard", {})
            if not card.get("title") or not card.get("text"):
                return "actionCard needs title and text"
        else:
            return "unknown msgtype"
        return None


class WeComHarness(HttpHarness):
    kind = "wecom"
    url = f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={TOKEN}"

    def notifier(self) -> Notifier:
        config = WeComChannelConfig(webhook_url=self.url, timeout=3)  # type: ignore[arg-type]
        return WeComNotifier("pr-wecom", config, self.client)

    def ok(self) -> httpx.Response:
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok"})

    def refused(self, why: str) -> httpx.Response:
        return httpx.Response(200, json={"errcode": 40008, "errmsg": why})

    def check(self, request: httpx.Request, body: Any) -> str | None:
        query = parse_qs(urlsplit(str(request.url)).query)
        if not _url_is(request, self.url) or query.get("key") != [TOKEN]:
            return "invalid webhook url"
        if body.get("msgtype") == "markdown":
            content = body.get("markdown", {}).get("content", "")
            if not content or len(content.encode()) > 4096:
                return "markdown.content exceed max length 4096"
            if set(body["markdown"]) - {"content"}:
                return "markdown takes no mentioned_list"
        elif body.get("msgtype") == "text":
            text = body.get("text", {})
            if not text.get("content") or len(text["content"].encode()) > 2048:
                return "text.content exceed max length 2048"
            if "@all" in text.get("mentioned_list", []) + text.get("mentioned_mobile_list", []):
                return "@all must never be mentioned"
        else:
            return "invalid message type"
        return None


class PagerDutyAlerts:
    """PagerDuty's alerts as the Events API v2 documents them: a trigger whose dedup_key
    names an open alert (triggered or acknowledged) is folded into it and pages nobody;
    acknowledge and resolve change the open alert of their key (none: they do nothing)."""

    def __init__(self) -> None:
        self.alerts: dict[str, str] = {}  # dedup_key -> triggered/acknowledged/resolved
        self.pages: list[str] = []  # the keys whose trigger paged somebody

    def apply(self, action: str, key: str) -> None:
        state = self.alerts.get(key)
        if action == "trigger" and state not in ("triggered", "acknowledged"):
            self.alerts[key] = "triggered"
            self.pages.append(key)
        elif action == "acknowledge" and state == "triggered":
            self.alerts[key] = "acknowledged"
        elif action == "resolve" and state in ("triggered", "acknowledged"):
            self.alerts[key] = "resolved"

    def open_alerts(self) -> dict[str, str]:
        return {k: v for k, v in self.alerts.items() if v != "resolved"}


class PagerDutyHarness(HttpHarness, PagerDutyAlerts):
    """Also keeps the alerts of what it accepted (``PagerDutyAlerts``)."""

    kind = "pagerduty"
    url = "https://events.pagerduty.com/v2/enqueue"
    accepted_status = 202

    def __init__(self, clock: ManualClock) -> None:
        HttpHarness.__init__(self, clock)
        PagerDutyAlerts.__init__(self)

    def notifier(self) -> Notifier:
        config = PagerDutyChannelConfig(routing_key=PD_KEY, url=self.url, timeout=3)  # type: ignore[arg-type]
        return PagerDutyNotifier("pd", config, self.client)

    def ok(self) -> httpx.Response:
        body = self.bodies[-1]
        key, action = body["dedup_key"], body["event_action"]
        self.apply(action, key)
        return httpx.Response(
            202, json={"status": "success", "message": "Event processed", "dedup_key": key}
        )

    def refused(self, why: str) -> httpx.Response:
        return httpx.Response(
            400, json={"status": "invalid event", "message": why, "errors": [why]}
        )

    def check(self, request: httpx.Request, body: Any) -> str | None:
        if str(request.url) != self.url:
            return "wrong endpoint"
        if body.get("routing_key") != PD_KEY:
            return "Invalid routing key"
        action = body.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            return "invalid event_action"
        dedup = body.get("dedup_key")
        if not isinstance(dedup, str) or not 0 < len(dedup) <= 255:
            return "dedup_key must be 1-255 characters"
        if action != "trigger":
            return (
                None
                if set(body) == {"routing_key", "dedup_key", "event_action"}
                else "extra fields"
            )
        payload = body.get("payload", {})
        if not payload.get("summary") or len(payload["summary"]) > 1024:
            return "payload.summary is required (max 1024)"
        if payload.get("severity") not in ("critical", "error", "warning", "info"):
            return "payload.severity is invalid"
        if not payload.get("source"):
            return "payload.source is required"
        for link in body.get("links", []):
            if "href" not in link:
                return "links[].href is required"
        return None


# -- email -----------------------------------------------------------------------------------


class _SmtpHandler:
    def __init__(self, harness: EmailHarness) -> None:
        self.harness = harness

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if answer := self.harness.refuse_recipients.get(address):
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        h = self.harness
        if h.scenario == "timeout":
            await asyncio.sleep(5)
        if session.ssl is None:
            return "530 5.7.0 Must issue a STARTTLS command first"
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        data = envelope.content if isinstance(envelope.content, bytes) else b""
        message = message_from_bytes(data, policy=policy.default)
        assert isinstance(message, EmailMessage)
        h.messages.append(message)
        h.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        if h.scenario in ("throttled", "server_error"):
            return "451 4.7.1 Try again later"
        if h.scenario == "rejected":
            return "550 5.7.1 Message rejected"
        if h.scenario == "echo":
            return f"554 5.7.1 Rejected for {SMTP_USER} with {SMTP_PASSWORD}"
        return "250 2.0.0 Ok: queued"


class EmailHarness:
    """A local SMTP server (aiosmtpd) that demands STARTTLS and AUTH, as a provider would."""

    kind = "email"

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.scenario = "ok"
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str | None, list[str]]] = []
        self.refuse_recipients: dict[str, str] = {}  # address -> the RCPT answer
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(CERTS / "cert.pem", CERTS / "key.pem")

        def authenticator(
            server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
        ) -> AuthResult:
            ok = isinstance(auth_data, LoginPassword) and (
                auth_data.login == SMTP_USER.encode()
                and auth_data.password == SMTP_PASSWORD.encode()
            )
            return AuthResult(success=ok)

        handler = _SmtpHandler(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(
                handler,
                hostname="localhost",
                tls_context=tls,
                require_starttls=True,
                authenticator=authenticator,
                auth_required=True,
            ),
            "127.0.0.1",
            0,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def notifier(self) -> Notifier:
        config = EmailChannelConfig(
            host="127.0.0.1",
            port=self.port,
            username=SMTP_USER,
            password=SMTP_PASSWORD,  # type: ignore[arg-type]
            ca_file=str(CERTS / "cert.pem"),
            sender="crisiswatch@acme.example",
            to=["pr@acme.example", "legal@acme.example"],
            timeout=1 if self.scenario == "timeout" else 10,
        )
        return EmailNotifier("pr-mail", config, self.clock)

    def markup_text(self) -> str:
        html = self.messages[-1].get_body(("html",))
        assert html is not None
        return str(html.get_content())

    def rendered_text(self) -> str:
        message = self.messages[-1]
        parts = [str(message["Subject"])]
        for part in message.walk():
            if part.get_content_type() in ("text/plain", "text/html"):
                parts.append(part.get_content())
        return "\n".join(parts)


Harness = HttpHarness | EmailHarness

HTTP_HARNESSES: dict[str, type[HttpHarness]] = {
    h.kind: h
    for h in (
        SlackHarness,
        WebhookHarness,
        TeamsHarness,
        FeishuHarness,
        DingTalkHarness,
        WeComHarness,
        PagerDutyHarness,
    )
}
ALL_KINDS = [*HTTP_HARNESSES, "email"]


async def make_harness(kind: str, clock: ManualClock) -> Harness:
    if kind == "email":
        harness = EmailHarness(clock)
        await harness.start()
        return harness
    return HTTP_HARNESSES[kind](clock)


class RecordingConsole:
    """A console channel named ``cs`` that keeps what it is sent in ``log``."""

    kind = "console"
    name = "cs"
    rate_limits: ClassVar[tuple[RateLimit, ...]] = ()

    def __init__(self, log: list[AlertMessage]) -> None:
        self.log = log

    async def send(self, alert: AlertMessage) -> None:
        self.log.append(alert)
