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
from alerts.notifiers.i18n import English, phrases

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


def _digest_lines(alert: AlertMessage, ph: English) -> list[str]:
    lines = []
    for item in alert.digest:
        title, reason = render.item_parts(item, ph)
        line = f"• {ph.subject(item.tier, item.incident_id, fit_line(title, 200))}"
        if reason:
            line += ph.paren(fit_line(reason, 120))
        if url := escape.safe_url(item.url):
            link = _link(url, ph.open)
            if len(line) + 1 + len(link) <= TEXT_MAX:
                line += " " + link
        lines.append(line)
    return lines


def pack(first: str, lines: list[str], max_sections: int, ph: English | None = None) -> list[str]:
    """``first`` then ``lines`` as section texts of at most ``TEXT_MAX`` characters each,
    at most ``max_sections`` of them; lines that do not fit are counted at the end."""
    words = ph or phrases()

    def _more(count: int) -> str:
        return words.more(count, "incident")

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


def _sections(alert: AlertMessage, first: str, ph: English) -> list[str]:
    """The texts of the sections under the header: the reason, then the body."""
    if alert.digest:
        return pack(first, _digest_lines(alert, ph), MAX_DIGEST_SECTIONS, ph)
    if render.is_follow_up(alert):
        return [first]
    said = fit(ph.explanation(alert), TEXT_MAX - 400)
    return [f"{first}\n{said}".rstrip()]  # first: <= 400


_CONFIRM = {
    "en": ("Resolve the incident?", "Pending alerts are cancelled.", "Cancel"),
    "zh": ("确认解决此事件？", "尚未发出的告警将被取消。", "取消"),
}


def buttons(alert: AlertMessage, language: str = "en") -> dict[str, Any]:
    """Ack/Resolve buttons; Slack sends the click to the app's interactivity URL."""
    ph = phrases(language)
    title, text, deny = _CONFIRM.get(ph.language, _CONFIRM["en"])
    value = str(alert.incident_id)
    return {
        "type": "actions",
        "block_id": f"crisiswatch-{alert.incident_id}",
        "elements": [
            {
                "type": "button",
                "action_id": ACK_ACTION,
                "text": {"type": "plain_text", "text": ph.ack},
                "style": "primary",
                "value": value,
            },
            {
                "type": "button",
                "action_id": RESOLVE_ACTION,
                "text": {"type": "plain_text", "text": ph.resolve},
                "style": "danger",
                "value": value,
                "confirm": {
                    "title": {"type": "plain_text", "text": title},
                    "text": {"type": "plain_text", "text": text},
                    "confirm": {"type": "plain_text", "text": ph.resolve},
                    "deny": {"type": "plain_text", "text": deny},
                },
            },
        ],
    }


def _label(name: str, ph: English) -> str:
    """A fact's label in bold: "*Watch:*" ("*监测项：*")."""
    return f"*{name}{ph.colon.rstrip()}*"


def message(
    alert: AlertMessage, *, with_buttons: bool = False, language: str = "en"
) -> dict[str, Any]:
    ph = phrases(language)
    title = render.headline(alert, lambda text: fit_line(text, 100), language)
    if len(title) > HEADER_MAX:  # a long actor and a long title: shorten both
        title = render.headline(alert, lambda text: fit_line(text, 40), language)
    reason = render.status(alert, lambda text: fit_line(text, 300), language)
    emoji = ":white_check_mark:" if render.is_follow_up(alert) else _TIER_EMOJI.get(alert.tier, "")
    facts = [
        f"{_label(ph.watch, ph)} {fit_line(alert.brand or alert.watch_id, 200)}",
        f"{_label(ph.incident, ph)} #{alert.incident_id}",
    ]
    if alert.teams:
        facts.append(f"{_label(ph.teams, ph)} {fit_line(', '.join(alert.teams), 300)}")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}},
        *(
            {"type": "section", "text": _mrkdwn(text)}
            for text in _sections(alert, f"{emoji} *{reason}*", ph)
        ),
        {"type": "context", "elements": [_mrkdwn("   ".join(facts))]},
    ]
    if not alert.digest and not render.is_follow_up(alert):
        for ev in alert.evidence:
            who = fit_line(ev.author or ph.unknown, 100)
            text = fit_line(ev.text, 600)
            quote = f"*{who}*{ph.followers(ev.followers)}{ph.colon}“{text}”"
            if url := escape.safe_url(ev.url):
                link = _link(url, ph.post_label(escape.host(url)), 120)
                quote += f" {link}" if len(quote) + 1 + len(link) <= TEXT_MAX else ""
            blocks.append({"type": "context", "elements": [_mrkdwn(quote)]})
    mentions = [
        f"<@{uid}>" for c in alert.mentions if (uid := escape.chat_id(c.chat_ids.get("slack")))
    ]
    if mentions:
        on_call = f"{ph.on_call}{ph.colon}" + " ".join(mentions)
        blocks.append({"type": "section", "text": _mrkdwn(on_call)})
    footer = [_link(link.url, link.label) for link in render.links(alert, language)]
    if alert.ack_hint and not render.is_follow_up(alert):
        footer.insert(0, f"{ph.ack}{ph.colon}`{fit_line(alert.ack_hint, 300)}`")
    # one element per link: each may be long (a signed URL), each has its own limit
    footer = [text for text in footer if len(text) <= TEXT_MAX][:CONTEXT_ELEMENTS_MAX]
    if footer:
        blocks.append({"type": "context", "elements": [_mrkdwn(text) for text in footer]})
    if with_buttons and not render.is_follow_up(alert) and not alert.digest:
        blocks.append(buttons(alert, language))
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
        self.language = config.language
        self._client = HookClient(name, config.webhook_url.get_secret_value(), config.timeout, http)

    async def send(self, alert: AlertMessage) -> None:
        await self._client.post_json(
            message(alert, with_buttons=self._buttons, language=self.language)
        )
