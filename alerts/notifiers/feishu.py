"""Feishu / Lark custom bot: a signed interactive card.

Followed: Feishu Open Platform, "自定义机器人使用指南" (open.feishu.cn/document/
client-docs/bot-v3/add-custom-bot; Lark: open.larksuite.com, same API):

* signing (签名校验): ``sign = base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}",
  msg=b""))``, ``timestamp`` in seconds (at most 1 h off); ``timestamp`` and ``sign`` are
  fields of the JSON body;
* ``{"msg_type": "interactive", "card": {...}}``: a card (JSON 2.0: ``schema``, ``header``
  with a ``plain_text`` title and a colour ``template``, ``body.elements`` with a
  ``markdown`` element and a ``button`` whose ``behaviors`` open the ack URL); in card
  markdown a person is mentioned with ``<at id=open_id></at>``;
* the answer is ``{"code", "msg"}``: 0 is success, 19021 a bad signature or stale
  timestamp, 11232 throttled (retryable); 9499 is both "Bad Request" (a malformed request:
  permanent) and, with HTTP 400, "too many request" (throttled: retryable), so the code is
  read whatever the HTTP status and 9499 is told apart by its message;
* limits: 100 requests a minute and 5 a second per bot; bodies at most 20 KB (the whole
  JSON body: the card's markdown is shortened until it fits, escaping included).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, ClassVar

import httpx

from alerts.channels import FeishuChannelConfig
from alerts.notifiers import escape, render
from alerts.notifiers.base import AlertMessage, Contact, RateLimit
from alerts.notifiers.http import HookClient, fit_body
from core.clock import Clock

RATE_LIMITED = 11232
BAD_REQUEST_OR_THROTTLED = 9499
MARKDOWN_MAX_BYTES = 15000  # at most: less when escaping would push the body over
BODY_MAX_BYTES = 20000  # "20 KB", read as the stricter 20 000 bytes
_TEMPLATE = {1: "yellow", 2: "orange", 3: "red"}


def sign(secret: str, timestamp: str) -> str:
    mac = hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def _mention(contact: Contact) -> str | None:
    user_id = escape.chat_id(contact.chat_ids.get("feishu"))
    return f"<at id={user_id}></at>" if user_id else None


def throttled(code: int, message: str) -> bool:
    """9499 "too many request" (HTTP 400) is throttling; 9499 "Bad Request" is not."""
    return code == BAD_REQUEST_OR_THROTTLED and "too many request" in message.lower()


def card(
    alert: AlertMessage, max_bytes: int = MARKDOWN_MAX_BYTES, language: str = "en"
) -> dict[str, Any]:
    """The card in ``language``; its markdown at most ``max_bytes`` of UTF-8."""
    template = "green" if render.is_follow_up(alert) else _TEMPLATE.get(alert.tier, "red")
    elements: list[dict[str, Any]] = [
        {
            "tag": "markdown",
            "content": render.markdown(
                alert, mention=_mention, ack_link=False, max_bytes=max_bytes, language=language
            ),
        }
    ]
    ack = render.ack_label(language)
    for link in render.links(alert, language):
        elements.append(
            {
                "tag": "button",
                "text": {"tag": "plain_text", "content": escape.line(link.label, 40)},
                "type": "primary" if link.label == ack else "default",
                "behaviors": [{"type": "open_url", "default_url": link.url}],
            }
        )
    return {
        "schema": "2.0",
        "header": {
            "title": {
                "tag": "plain_text",
                "content": render.headline(alert, render.short(escape.markdown), language),
            },
            "template": "grey" if alert.drill else template,
        },
        "body": {"elements": elements},
    }


class FeishuNotifier:
    kind = "feishu"
    rate_limits: ClassVar[tuple[RateLimit, ...]] = (
        RateLimit(count=5, per_seconds=1),
        RateLimit(count=100, per_seconds=60),
    )

    def __init__(
        self, name: str, config: FeishuChannelConfig, http: httpx.AsyncClient, clock: Clock
    ) -> None:
        self.name = name
        self._secret = config.secret.get_secret_value() if config.secret else None
        self._clock = clock
        self.language = config.language
        self._client = HookClient(
            name, config.webhook_url.get_secret_value(), config.timeout, http, [self._secret or ""]
        )

    def payload(self, alert: AlertMessage) -> dict[str, Any]:
        signed: dict[str, Any] = {}
        if self._secret is not None:
            timestamp = str(int(self._clock.now().timestamp()))
            signed = {"timestamp": timestamp, "sign": sign(self._secret, timestamp)}

        def body(max_bytes: int) -> dict[str, Any]:
            return signed | {
                "msg_type": "interactive",
                "card": card(alert, max_bytes, self.language),
            }

        return fit_body(body, MARKDOWN_MAX_BYTES, BODY_MAX_BYTES)

    async def send(self, alert: AlertMessage) -> None:
        response = await self._client.post_json(self.payload(alert), check_status=False)
        self._client.check_code(
            response,
            code_field="code",
            message_field="msg",
            retryable={RATE_LIMITED: None},
            retryable_if=throttled,
        )
