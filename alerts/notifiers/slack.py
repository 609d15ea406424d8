"""Slack channel: an incoming webhook with a Block Kit message.

Header (tier and title), a section with the reason and the explanation, one context block
per evidence snippet, a context block with the ack hint and links, and a plain-text
fallback for notifications. Every piece of text goes through ``escape.slack`` and the
``mrkdwn`` objects are ``verbatim`` (no auto-linking, no mention parsing); link unfurling
is off.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import httpx

from alerts.channels import SlackChannelConfig
from alerts.notifiers import escape
from alerts.notifiers.base import AlertMessage, RateLimit
from alerts.notifiers.http import post, secret_parts

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


def message(alert: AlertMessage) -> dict[str, Any]:
    drill = "[DRILL] " if alert.drill else ""
    title = fit(f"{drill}Tier {alert.tier}: {alert.title}", HEADER_MAX)
    reason = fit(alert.reason, 300)
    facts = [
        f"*Watch:* {fit(alert.brand or alert.watch_id, 200)}",
        f"*Incident:* #{alert.incident_id}",
    ]
    if alert.teams:
        facts.append(f"*Teams:* {fit(', '.join(alert.teams), 300)}")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}},
        {
            "type": "section",
            "text": _mrkdwn(
                f"{_TIER_EMOJI.get(alert.tier, '')} *{reason}*\n"
                f"{fit(alert.explanation, TEXT_MAX - 400)}"
            ),
        },
        {"type": "context", "elements": [_mrkdwn("   ".join(facts))]},
    ]
    for ev in alert.evidence:
        who = fit(ev.author or "unknown", 100)
        followers = f" ({ev.followers:,} followers)" if ev.followers is not None else ""
        text = fit(" ".join(ev.text.split()), 600)
        link = ""
        if url := escape.safe_url(ev.url):
            link = f" <{escape.slack_entities(url)}|view post>"
        blocks.append(
            {"type": "context", "elements": [_mrkdwn(f"*{who}*{followers}: “{text}”{link}")]}
        )
    footer = [f"Acknowledge: `{fit(alert.ack_hint, 300)}`"] if alert.ack_hint else []
    for item in alert.links:
        if url := escape.safe_url(item.url):
            footer.append(f"<{escape.slack_entities(url)}|{fit(item.label, 80)}>")
    if footer:
        blocks.append({"type": "context", "elements": [_mrkdwn("   ".join(footer))]})
    fallback = f"{title} ({reason})"
    return {"text": fallback, "blocks": blocks, "unfurl_links": False, "unfurl_media": False}


class SlackNotifier:
    kind = "slack"
    rate_limits: ClassVar[tuple[RateLimit, ...]] = (
        RateLimit(count=1, per_seconds=1.0),
    )  # ~1 message/s per channel

    def __init__(self, name: str, config: SlackChannelConfig, http: httpx.AsyncClient) -> None:
        self.name = name
        self._url = config.webhook_url.get_secret_value()
        self._timeout = config.timeout
        self._http = http
        self._secrets = secret_parts(self._url)

    async def send(self, alert: AlertMessage) -> None:
        body = json.dumps(message(alert), ensure_ascii=False).encode()
        await post(
            self._http,
            channel=self.name,
            url=self._url,
            content=body,
            headers={"Content-Type": "application/json; charset=utf-8"},
            send_timeout=self._timeout,
            secrets=self._secrets,
        )
