"""Microsoft Teams: a Workflows webhook ("When a Teams webhook request is received") that
posts one Adaptive Card.

Followed: Microsoft Learn, "Create incoming webhooks with Workflows for Microsoft Teams" and
"Send Adaptive Cards using an incoming webhook" / "Format cards in Teams" (user mention in
Adaptive Cards), adaptivecards.io schema 1.4:

* body ``{"type": "message", "attachments": [{"contentType":
  "application/vnd.microsoft.card.adaptive", "contentUrl": null, "content": <card>}]}``;
* the card: ``TextBlock``s (the text supports a markdown subset: ``**bold**``,
  ``[label](url)``, lists), ``Action.OpenUrl`` for the ack link;
* a mention is ``<at>Name</at>`` in the text plus an entry in ``msteams.entities``
  (``{"type": "mention", "text": "<at>Name</at>", "mentioned": {"id", "name"}}``) where
  ``id`` is the person's Entra object id or UPN (``chat_ids.teams``);
* the Workflows trigger answers 202 Accepted; 429 carries Retry-After.
* limits: Teams allows about 4 requests a second per webhook; a message is at most about
  28 KB (the whole card: "Request Entity too large" past it), so the card's text is
  shortened until the JSON body is at most ``BODY_MAX_BYTES``, JSON escaping included.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from alerts.channels import TeamsChannelConfig
from alerts.notifiers import escape, render
from alerts.notifiers.base import AlertMessage, Contact, RateLimit
from alerts.notifiers.http import HookClient, fit_body

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
TEXT_MAX_BYTES = 20000  # at most: less when escaping would push the body over
BODY_MAX_BYTES = 27000  # Teams refuses messages over about 28 KB: kept a little under
_COLOR = {1: "Warning", 2: "Warning", 3: "Attention"}


def _mention_tag(contact: Contact) -> str | None:
    if escape.chat_id(contact.chat_ids.get("teams")) is None:
        return None
    return f"<at>{escape.markdown(contact.name, 80)}</at>"


def card(
    alert: AlertMessage, language: str = "en", max_bytes: int = TEXT_MAX_BYTES
) -> dict[str, Any]:
    """The card in ``language``; its text at most ``max_bytes`` of UTF-8."""
    color = "Good" if render.is_follow_up(alert) else _COLOR.get(alert.tier, "Attention")
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": render.headline(alert, render.short(escape.markdown), language),
            "size": "Large",
            "weight": "Bolder",
            "color": color,
            "wrap": True,
        },
        {
            "type": "TextBlock",
            "text": render.markdown(
                alert,
                mention=_mention_tag,
                ack_link=False,
                max_bytes=max_bytes,
                language=language,
            ),
            "wrap": True,
        },
    ]
    content: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "actions": [
            {"type": "Action.OpenUrl", "title": escape.line(link.label, 40), "url": link.url}
            for link in render.links(alert, language)
        ],
    }
    entities = [
        {
            "type": "mention",
            "text": tag,
            "mentioned": {"id": escape.chat_id(c.chat_ids.get("teams")), "name": c.name[:80]},
        }
        for c in alert.mentions
        if (tag := _mention_tag(c))
    ]
    if entities:
        content["msteams"] = {"entities": entities}
    return content


def message(alert: AlertMessage, language: str = "en") -> dict[str, Any]:
    """The body, at most ``BODY_MAX_BYTES`` once encoded."""

    def body(max_bytes: int) -> dict[str, Any]:
        content = card(alert, language, max_bytes)
        attachment = {"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": content}
        return {"type": "message", "attachments": [attachment]}

    return fit_body(body, TEXT_MAX_BYTES, BODY_MAX_BYTES)


class TeamsNotifier:
    kind = "teams"
    rate_limits: ClassVar[tuple[RateLimit, ...]] = (RateLimit(count=4, per_seconds=1),)

    def __init__(self, name: str, config: TeamsChannelConfig, http: httpx.AsyncClient) -> None:
        self.name = name
        self.language = config.language
        self._client = HookClient(name, config.webhook_url.get_secret_value(), config.timeout, http)

    async def send(self, alert: AlertMessage) -> None:
        await self._client.post_json(message(alert, self.language))
