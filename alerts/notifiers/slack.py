"""Slack channel: an incoming webhook with a Block Kit message.

Header (tier and title, ``[DRILL]`` first for drills), a section with the reason and the
explanation (a digest lists its incidents; a follow-up says who acknowledged/resolved),
one context block per evidence snippet, the on-call person's ``<@U...>`` mention, a
context block with the ack hint, the ack link and the other links, Ack/Resolve buttons
(``actions`` block; the Slack app's interactivity endpoint is ``api.routers.slack``), and
a plain-text fallback for notifications. Every piece of text goes through
``escape.slack`` and the ``mrkdwn`` objects are ``verbatim`` (no auto-linking, no mention
parsing); link unfurling is off. One-line fields (names, titles, the reason) have their
line breaks collapsed; a post's link is labelled with its host ("view post on x.example").

Block Kit limits kept: at most 50 blocks, a header's text 150 characters, a section's text
3000, a context at most 10 elements of 3000 each. A digest too long for one section is
split into several (at most ``MAX_DIGEST_SECTIONS``), and what still does not fit is
counted ("…and 12 more incidents"): Slack refuses the whole message (``invalid_blocks``)
when a single limit is exceeded.

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
CONTEXT_ELEMENTS_MAX = 10
MAX_DIGEST_SECTIONS = 20  # and 50 blocks in all: header, facts, mentions, footer, buttons


def fit(text: str, limit: int) -> str:
    """Escaped for Slack and at most ``limit`` characters once escaped."""
    return escape.slack(text, limit)


def fit_line(text: str, limit: int) -> str:
    """``fit`` on one line (line breaks collapsed): names, titles."""
    return escape.slack_line(text, limit)


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


ACK_ACTION = "crisiswatch_ack"
RESOLVE_ACTION = "crisiswatch_resolve"


def _link(url: str, label: str, limit: int = 80) -> str:
    return f"<{escape.slack_entities(url)}|{fit_line(label, limit)}>"


def _digest_lines(alert: AlertMessage) -> list[str]:
    lines = []
    for item in alert.digest:
        line = f"• Tier {item.tier} #{item.incident_id}: {fit_line(item.title, 200)}"
        if item.reason:
            line += f" ({fit_line(item.reason, 120)})"
        if url := escape.safe_url(item.url):
            link = _link(url, "open")
            if len(line) + 1 + len(link) <= TEXT_MAX:
                line += " " + link
        lines.append(line)
    return lines


def _more(count: int) -> str:
    return f"…and {count} more incident{'' if count == 1 else 's'}"


def pack(first: str, lines: list[str], max_sections: int) -> list[str]:
    """``first`` then ``lines`` as section texts of at most ``TEXT_MAX`` characters each,
    at most ``max_sections`` of them; lines that do not fit are counted at the end."""
    sections: list[list[str]] = [[first]]

    def length(section: list[str]) -> int:
        return sum(len(text) for text in section) + len(section) - 1

    shown = 0
    for line in lines:
        if length(sections[-1]) + 1 + len(line) <= TEXT_MAX:
            sections[-1].append(line)
        elif len(sections) < max_sections and len(line) <= TEXT_MAX:
            sections.append([line])
        else:
            break
        shown += 1
    if shown < len(lines):
        last = sections[-1]
        keep = 1 if len(sections) == 1 else 0  # never ``first``
        while len(last) > keep and length([*last, _more(len(lines) - shown)]) > TEXT_MAX:
            last.pop()
            shown -= 1
        last.append(_more(len(lines) - shown))
    return ["\n".join(section) for section in sections]


def _sections(alert: AlertMessage, first: str) -> list[str]:
    """The texts of the sections under the header: the reason, then the body."""
    if alert.digest:
        return pack(first, _digest_lines(alert), MAX_DIGEST_SECTIONS)
    if render.is_follow_up(alert):
        return [first]
    return [f"{first}\n{fit(alert.explanation, TEXT_MAX - 400)}".rstrip()]  # first: <= 400


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
    title = render.headline(alert, lambda text: fit_line(text, 100))
    if len(title) > HEADER_MAX:  # a long actor and a long title: shorten both
        title = render.headline(alert, lambda text: fit_line(text, 40))
    reason = render.status(alert, lambda text: fit_line(text, 300))
    emoji = ":white_check_mark:" if render.is_follow_up(alert) else _TIER_EMOJI.get(alert.tier, "")
    facts = [
        f"*Watch:* {fit_line(alert.brand or alert.watch_id, 200)}",
        f"*Incident:* #{alert.incident_id}",
    ]
    if alert.teams:
        facts.append(f"*Teams:* {fit_line(', '.join(alert.teams), 300)}")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}},
        *(
            {"type": "section", "text": _mrkdwn(text)}
            for text in _sections(alert, f"{emoji} *{reason}*")
        ),
        {"type": "context", "elements": [_mrkdwn("   ".join(facts))]},
    ]
    if not alert.digest and not render.is_follow_up(alert):
        for ev in alert.evidence:
            who = fit_line(ev.author or "unknown", 100)
            text = fit_line(ev.text, 600)
            quote = f"*{who}*{render.followers(ev.followers)}: “{text}”"
            if url := escape.safe_url(ev.url):
                link = _link(url, render.post_label(url), 120)
                quote += f" {link}" if len(quote) + 1 + len(link) <= TEXT_MAX else ""
            blocks.append({"type": "context", "elements": [_mrkdwn(quote)]})
    mentions = [
        f"<@{uid}>" for c in alert.mentions if (uid := escape.chat_id(c.chat_ids.get("slack")))
    ]
    if mentions:
        blocks.append({"type": "section", "text": _mrkdwn("On call: " + " ".join(mentions))})
    footer = [_link(link.url, link.label) for link in render.links(alert)]
    if alert.ack_hint and not render.is_follow_up(alert):
        footer.insert(0, f"Acknowledge: `{fit_line(alert.ack_hint, 300)}`")
    # one element per link: each may be long (a signed URL), each has its own limit
    footer = [text for text in footer if len(text) <= TEXT_MAX][:CONTEXT_ELEMENTS_MAX]
    if footer:
        blocks.append({"type": "context", "elements": [_mrkdwn(text) for text in footer]})
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
