"""DingTalk (钉钉) custom robot: markdown or actionCard, signed, @-mentions the on-call person.

Followed: DingTalk Open Platform, "自定义机器人接入" / "自定义机器人安全设置" / "消息类型"
(open.dingtalk.com/document/robots/custom-robot-access, .../customize-robot-security-settings,
.../message-types-and-data-format):

* signing (加签): ``sign = urlencode(base64(HMAC-SHA256(key=secret,
  msg=f"{timestamp}\\n{secret}")))`` with ``timestamp`` in milliseconds (at most 1 h off);
  both go in the query string next to ``access_token``;
* ``{"msgtype": "markdown", "markdown": {"title", "text"}, "at": {"atMobiles",
  "atUserIds", "isAtAll": false}}``: a person is pinged when the ``at`` list names them
  *and* the text contains ``@<mobile>`` / ``@<userId>``;
  ``{"msgtype": "actionCard", "actionCard": {"title", "text", "singleTitle", "singleURL"}}``
  shows the ack link as a button (``singleTitle``/``singleURL`` are required: a message
  without an ack link goes as markdown; actionCard has no ``at``: a message with mentions
  goes as markdown too, its ack link in the text);
* the answer is HTTP 200 with ``{"errcode", "errmsg"}``; errcode 130101 ("send too fast,
  exceed 20 times per minute") means the robot is throttled for 10 minutes; other codes
  (310000 signature/keyword/IP refused, 300001 bad token, ...) are permanent.
* limit: 20 messages a minute per robot; exceeding it blocks the robot for 10 minutes;
  bodies at most 20 000 bytes (460101 "body 大小不合法": the whole JSON body, so the text
  is shortened until the body fits, escaping included).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, ClassVar

import httpx

from alerts.channels import DingTalkChannelConfig
from alerts.notifiers import escape, render
from alerts.notifiers.base import AlertMessage, Contact, RateLimit
from alerts.notifiers.http import HookClient, fit_body
from core.clock import Clock

RATE_LIMITED = 130101
BLOCK_SECONDS = 600.0
TEXT_MAX_BYTES = 18000
BODY_MAX_BYTES = 20000  # the robot refuses bodies over 20 000 bytes


def sign(secret: str, timestamp_ms: str) -> str:
    """The ``sign`` query parameter before URL encoding (httpx encodes it)."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def _mention(contact: Contact) -> str | None:
    if user_id := escape.chat_id(contact.chat_ids.get("dingtalk")):
        return f"@{user_id}"
    if mobile := escape.phone(contact.phone):
        return f"@{mobile}"
    return None


def at_block(mentions: tuple[Contact, ...]) -> dict[str, Any]:
    mobiles: list[str] = []
    user_ids: list[str] = []
    for contact in mentions:
        if user_id := escape.chat_id(contact.chat_ids.get("dingtalk")):
            user_ids.append(user_id)
        elif mobile := escape.phone(contact.phone):
            mobiles.append(mobile)
    return {"atMobiles": mobiles, "atUserIds": user_ids, "isAtAll": False}


def message(alert: AlertMessage, msgtype: str = "markdown", language: str = "en") -> dict[str, Any]:
    """The body in ``language``, at most ``BODY_MAX_BYTES`` once encoded."""
    return fit_body(lambda n: _message(alert, msgtype, n, language), TEXT_MAX_BYTES, BODY_MAX_BYTES)


def _message(
    alert: AlertMessage, msgtype: str, text_max_bytes: int, language: str
) -> dict[str, Any]:
    title = render.headline(alert, render.short(escape.markdown, 60), language)
    label = render.ack_label(language)
    ack = next((link for link in render.links(alert, language) if link.label == label), None)
    # an actionCard needs its button (the robot refuses one without singleURL): a message
    # without an ack link (follow-ups, digests, ack links off) goes as markdown; so does
    # one that @-mentions someone (an escalation to the on-call person): an actionCard
    # cannot ping anyone, and the ping matters more than the button
    if msgtype == "actionCard" and ack is not None and not alert.mentions:
        text = render.markdown(alert, ack_link=False, max_bytes=text_max_bytes, language=language)
        card = {"title": title, "text": text, "singleTitle": ack.label, "singleURL": ack.url}
        return {"msgtype": "actionCard", "actionCard": card}
    # the @-mention must be in the text (it is never cut): the robot refuses an ``at``
    # list naming someone the text does not mention
    text = render.markdown(alert, mention=_mention, max_bytes=text_max_bytes, language=language)
    return {
        "msgtype": "markdown",
        "markdown": {"title": title, "text": text},
        "at": at_block(alert.mentions),
    }


class DingTalkNotifier:
    kind = "dingtalk"
    rate_limits: ClassVar[tuple[RateLimit, ...]] = (
        RateLimit(count=20, per_seconds=60, penalty_seconds=BLOCK_SECONDS),
    )

    def __init__(
        self, name: str, config: DingTalkChannelConfig, http: httpx.AsyncClient, clock: Clock
    ) -> None:
        self.name = name
        self._secret = config.secret.get_secret_value() if config.secret else None
        self._msgtype = config.msgtype
        self.language = config.language
        self._clock = clock
        self._client = HookClient(
            name, config.webhook_url.get_secret_value(), config.timeout, http, [self._secret or ""]
        )

    def signed_url(self) -> httpx.URL:
        url = httpx.URL(self._client.url)
        if self._secret is None:
            return url
        timestamp = str(int(self._clock.now().timestamp() * 1000))
        return url.copy_merge_params(
            {"timestamp": timestamp, "sign": sign(self._secret, timestamp)}
        )

    async def send(self, alert: AlertMessage) -> None:
        response = await self._client.post_json(
            message(alert, self._msgtype, self.language), url=self.signed_url()
        )
        self._client.check_code(
            response,
            code_field="errcode",
            message_field="errmsg",
            retryable={RATE_LIMITED: BLOCK_SECONDS, -1: None},
        )
