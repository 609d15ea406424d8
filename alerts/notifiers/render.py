"""What every channel says, apart from how it says it.

Every notifier renders the same parts of an ``AlertMessage``:

* ``headline``: ``[DRILL]`` first for drills; a follow-up (``action`` acknowledge/resolve)
  says so ("Acknowledged by alice"); a digest counts its incidents;
* ``status``: why this message (the reason, or who acknowledged/resolved it);
* ``digest`` messages list their incidents; triggers show the explanation and evidence;
* ``ack_url`` is a link or button ("Acknowledge"), before the other links.

The strings returned here are raw (not escaped): each notifier escapes them for its own
markup. ``markdown`` renders the whole body in the markdown that DingTalk, WeCom, Feishu
cards and Teams TextBlocks share (``**bold**``, ``[label](url)``), escaped with
``escape.markdown``.
"""

from __future__ import annotations

from collections.abc import Callable

from alerts.notifiers import escape
from alerts.notifiers.base import AlertMessage, Contact, Link

ACK_LABEL = "Acknowledge"
_FOLLOW_UP = {"acknowledge": "Acknowledged", "resolve": "Resolved"}


def is_follow_up(alert: AlertMessage) -> bool:
    return alert.action != "trigger"


Escape = Callable[[str], str]


def _raw(text: str) -> str:
    return text


def headline(alert: AlertMessage, esc: Escape = _raw) -> str:
    """One line; ``esc`` escapes the parts that come from outside (title, actor), not ours."""
    drill = "[DRILL] " if alert.drill else ""
    if alert.digest:
        worst = max(item.tier for item in alert.digest)
        return f"{drill}{len(alert.digest)} incidents (up to tier {worst}): {esc(alert.title)}"
    subject = f"Tier {alert.tier} #{alert.incident_id}: {esc(alert.title)}"
    if is_follow_up(alert):
        who = f" by {esc(alert.actor)}" if alert.actor else ""
        return f"{drill}{_FOLLOW_UP[alert.action]}{who}: {subject}"
    return f"{drill}{subject}"


def status(alert: AlertMessage, esc: Escape = _raw) -> str:
    if is_follow_up(alert):
        who = esc(alert.actor) if alert.actor else "someone"
        return f"{_FOLLOW_UP[alert.action].lower()} by {who}"
    return esc(alert.reason)


def links(alert: AlertMessage) -> list[Link]:
    """The ack link first (only on triggers), then the other links; unsafe URLs dropped."""
    out: list[Link] = []
    if alert.ack_url and not is_follow_up(alert) and escape.safe_url(alert.ack_url):
        out.append(Link(label=ACK_LABEL, url=alert.ack_url))
    out += [link for link in alert.links if escape.safe_url(link.url)]
    return out


def short(esc: Callable[[str, int], str], limit: int = 200) -> Escape:
    """``esc`` with a length limit, for ``headline``/``status``."""
    return lambda text: esc(text, limit)


def followers(count: int | None) -> str:
    return f" ({count:,} followers)" if count is not None else ""


def markdown(
    alert: AlertMessage,
    *,
    mention: Callable[[Contact], str | None] | None = None,
    ack_link: bool = True,
) -> str:
    """The message body in shared markdown; ``mention`` renders one person's @-mention."""
    md = escape.markdown
    lines = [f"**{headline(alert, short(md))}**", "", f"**{status(alert, short(md))}**"]
    if alert.digest:
        lines.append("")
        for item in alert.digest:
            line = f"- Tier {item.tier} #{item.incident_id}: {md(item.title, 200)}"
            if item.reason:
                line += f" ({md(item.reason, 120)})"
            if url := escape.markdown_url(item.url):
                line += f" [open]({url})"
            lines.append(line)
    elif not is_follow_up(alert):
        lines += ["", md(alert.explanation, 1500), ""]
        facts = [f"Watch: {md(alert.brand or alert.watch_id, 200)}"]
        if alert.teams:
            facts.append(f"Teams: {md(', '.join(alert.teams), 300)}")
        lines.append(" · ".join(facts))
        for ev in alert.evidence:
            who = md(ev.author or "unknown", 100)
            text = md(ev.text, 500)
            line = f"- **{who}**{followers(ev.followers)}: “{text}”"
            if url := escape.markdown_url(ev.url):
                line += f" [view post]({url})"
            lines.append(line)
    named = [m for m in (mention(c) for c in alert.mentions) if m] if mention else []
    if named:
        lines += ["", "On call: " + " ".join(named)]
    shown = [link for link in links(alert) if ack_link or link.label != ACK_LABEL]
    if shown:
        parts = [f"[{md(link.label, 80)}]({escape.markdown_url(link.url)})" for link in shown]
        lines += ["", " · ".join(parts)]
    return "\n".join(lines)
