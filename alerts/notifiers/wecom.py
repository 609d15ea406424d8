"""WeCom (企业微信) group robot: markdown (or text), @-mentions the on-call person.

Followed: WeCom developer docs, "群机器人配置说明" (developer.work.weixin.qq.com/document/
path/91770, also work.weixin.qq.com/api/doc/90000/90136/91770):

* ``POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=<key>``; the URL is the only
  credential (no signature scheme exists);
* ``{"msgtype": "markdown", "markdown": {"content"}}``, content at most 4096 bytes of UTF-8;
  markdown does **not** take ``mentioned_list``: a member is mentioned with ``<@userid>``
  inside the content;
* ``{"msgtype": "text", "text": {"content", "mentioned_list", "mentioned_mobile_list"}}``,
  content at most 2048 bytes; ``@all`` in those lists pings everyone, so we only ever put
  validated ids and numbers there;
* the answer is ``{"errcode", "errmsg"}``; 45009 means the robot's rate limit was hit
  (20 messages a minute per robot); -1 is "system busy"; other codes are permanent.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from alerts.channels import WeComChannelConfig
from alerts.notifiers import escape, render
from alerts.notifiers.base import AlertMessage, Contact, DigestItem, RateLimit
from alerts.notifiers.http import HookClient
from alerts.notifiers.i18n import English, phrases

RATE_LIMITED = 45009
MARKDOWN_MAX_BYTES = 4096
TEXT_MAX_BYTES = 2048


def _mention(contact: Contact) -> str | None:
    user_id = escape.chat_id(contact.chat_ids.get("wecom"))
    return f"<@{user_id}>" if user_id else None


def _item(item: DigestItem, ph: English) -> str:
    title = escape.line(ph.title(item.title), 200)
    if ph.language == "en":
        return f"- #{item.incident_id} tier {item.tier}: {title}"
    return f"- {ph.subject(item.tier, item.incident_id, title)}"


def text_content(alert: AlertMessage, language: str = "en") -> str:
    """At most ``TEXT_MAX_BYTES``; the links are never cut (the body is)."""
    ph = phrases(language)
    head = [
        escape.line(render.headline(alert, language=language), 300),
        escape.line(render.status(alert, language=language), 300),
    ]
    body: list[str] = []
    if alert.digest:
        body += [_item(item, ph) for item in alert.digest]
    elif not render.is_follow_up(alert):
        body.append(escape.plain(render.explanation(alert, language), 800))
    tail = [f"{link.label}{ph.colon}{link.url}" for link in render.links(alert, language)]
    return render.fit(head, body, tail, TEXT_MAX_BYTES)


def message(alert: AlertMessage, msgtype: str = "markdown", language: str = "en") -> dict[str, Any]:
    if msgtype == "text":
        user_ids = [u for c in alert.mentions if (u := escape.chat_id(c.chat_ids.get("wecom")))]
        mobiles = [m for c in alert.mentions if (m := escape.phone(c.phone))]
        return {
            "msgtype": "text",
            "text": {
                "content": text_content(alert, language),
                "mentioned_list": user_ids,
                "mentioned_mobile_list": mobiles,
            },
        }
    content = render.markdown(
        alert, mention=_mention, max_bytes=MARKDOWN_MAX_BYTES, language=language
    )
    return {"msgtype": "markdown", "markdown": {"content": content}}


class WeComNotifier:
    kind = "wecom"
    rate_limits: ClassVar[tuple[RateLimit, ...]] = (RateLimit(count=20, per_seconds=60),)

    def __init__(self, name: str, config: WeComChannelConfig, http: httpx.AsyncClient) -> None:
        self.name = name
        self._msgtype = config.msgtype
        self.language = config.language
        self._client = HookClient(name, config.webhook_url.get_secret_value(), config.timeout, http)

    async def send(self, alert: AlertMessage) -> None:
        response = await self._client.post_json(message(alert, self._msgtype, self.language))
        self._client.check_code(
            response,
            code_field="errcode",
            message_field="errmsg",
            retryable={RATE_LIMITED: 60.0, -1: None},
        )
