"""Slack channel: an incoming webhook with a Block Kit message.

Header (tier and title, ``[DRILL]`` first for drills), a section with the reason and the
explanation (a digest lists its incidents; a follow-up says who acknowledged/resolved),
one context block per evidence snippet, the on-call person's ``<@U...>`` mention, a
context block with the ack hint, the ack link and the other links, Ack/Resolve buttons
(``actions`` block; the Slack app's interactivity endpoint is ``api.routers.slack``), and
a plain-text fallback for notifications. Every piece of text goes through
``escape.slack`` and the ``mrkdwn`` objects are ``verbatim`` (no auto-linking, no mention
parsing); link unfurling is off.

Followed: Slack docs, "Sending messages using incoming webhooks", Block Kit reference
(header, section, context, actions blocks; button element with ``action_id``, ``value``,
``style`` and a ``confirm`` dialog) and "Formatting text for app surfaces" (escape
``& < >``; ``<@U123>`` mentions). Limit: about one message a second per channel.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from alerts.channels import SlackChannelConfig
from alerts.notifiers import escape, render
from alerts.notifiers.base import AlertMessage, RateLimit
from alerts.notifiers.http import HookClient

_TIER_EMOJI = {1: ":large_yellow_circle:", 2: ":large_orange_circle:", 3: ":red_circle:"}
HEADER_MAX = 150
TEXT_MAX = 3000


def fit(text: str, limit: int) -> str:
    """Escaped for Slack and at most ``limit`` characters once escaped."""
    raw_limit = limit
    while True:
        out = escape.slack(text, raw_limit)
        if len(out) <= limit:
            return out
        raw_limit -= max(len(out) - limit, 1)


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


ACK_ACTION = "crisiswatch_ack"
RESOLVE_ACTION = "crisiswatch_resolve"


def _link(url: str, label: str) -> str:
    return f"<{escape.slack_entities(url)}|{fit(label, 80)}>"


def _body(alert: AlertMessage) -> str:
    if alert.digest:
        lines = []
        for item in alert.digest:
            line = f"• Tier {item.tier} #{item.incident_id}: {fit(item.title, 200)}"
            if item.reason:
                line += f" ({fit(item.reason, 120)})"
            if url := escape.safe_url(item.url):
                line += " " + _link(url, "open")
            lines.append(line)
        return "\n".join(lines)
    if render.is_follow_up(alert):
        return ""
    return fit(alert.explanation, TEXT_MAX - 400)


def buttons(alert: AlertMessage) -> dict[str, Any]:
    """Ack/Resolve buttons; Slack sends the click to the app's interactivity URL."""
    value = str(alert.incident_id)
    return {
        "type": "actions",
        "block_id": f"crisiswatch-{alert.incident_id}",
        "elements": [
            {
                "type": "button",
                "action_id": ACK_ACTION,
                "text": {"type": "plain_text", "text": "Acknowledge"},
                "style": "primary",
                "value": value,
            },
            {
                "type": "button",
                "action_id": RESOLVE_ACTION,
                "text": {"type": "plain_text", "text": "Resolve"},
                "style": "danger",
                "value": value,
                "confirm": {
                    "title": {"type": "plain_text", "text": "Resolve the incident?"},
                    "text": {"type": "plain_text", "text": "Pending alerts are cancelled."},
                    "confirm": {"type": "plain_text", "text": "Resolve"},
                    "deny": {"type": "plain_text", "text": "Cancel"},
                },
            },
        ],
    }


def message(alert: AlertMessage, *, with_buttons: bool = False) -> dict[str, Any]:
    title = render.headline(alert, lambda text: fit(text, 100))
    if len(title) > HEADER_MAX:  # a long actor and a long title: shorten both
        title = render.headline(alert, lambda text: fit(text, 40))
    reason = render.status(alert, lambda text: fit(text, 300))
    emoji = ":white_check_mark:" if render.is_follow_up(alert) else _TIER_EMOJI.get(alert.tier, "")
    facts = [
        f"*Watch:* {fit(alert.brand or alert.watch_id, 200)}",
        f"*Incident:* #{alert.incident_id}",
    ]
    if alert.teams:
        facts.append(f"*Teams:* {fit(', '.join(alert.teams), 300)}")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}},
        {"type": "section", "text": _mrkdwn(f"{emoji} *{reason}*\n{_body(alert)}".rstrip())},
        {"type": "context", "elements": [_mrkdwn("   ".join(facts))]},
    ]
    if not alert.digest and not render.is_follow_up(alert):
        for ev in alert.evidence:
            who = fit(ev.author or "unknown", 100)
            text = fit(" ".join(ev.text.split()), 600)
            link = f" {_link(url, 'view post')}" if (url := escape.safe_url(ev.url)) else ""
            blocks.append(
                {
                    "type": "context",
                    "elements": [
                        _mrkdwn(f"*{who}*{render.followers(ev.followers)}: “{text}”{link}")
                    ],
                }
            )
    mentions = [
        f"<@{uid}>" for c in alert.mentions if (uid := escape.chat_id(c.chat_ids.get("slack")))
    ]
    if mentions:
        blocks.append({"type": "section", "text": _mrkdwn("On call: " + " ".join(mentions))})
    footer = [_link(link.url, link.label) for link in render.links(alert)]
    if alert.ack_hint and not render.is_follow_up(alert):
        footer.insert(0, f"Acknowledge: `{fit(alert.ack_hint, 300)}`")
    if footer:
        blocks.append({"type": "context", "elements": [_mrkdwn("   ".join(footer))]})
    if with_buttons and not render.is_follow_up(alert) and not alert.digest:
        blocks.append(buttons(alert))
    fallback = f"{title} ({reason})"
    return {"text": fallback, "blocks": blocks, "unfurl_links": False, "unfurl_media": False}


class SlackNotifier:
    kind = "slack"
    rate_limits: ClassVar[tuple[RateLimit, ...]] = (
        RateLimit(count=1, per_seconds=1.0),
    )  # ~1 message/s per channel

    def __init__(self, name: str, config: SlackChannelConfig, http: httpx.AsyncClient) -> None:
        self.name = name
        self._buttons = config.buttons
        self._client = HookClient(name, config.webhook_url.get_secret_value(), config.timeout, http)

    async def send(self, alert: AlertMessage) -> None:
        await self._client.post_json(message(alert, with_buttons=self._buttons))
