"""Console channel: the alert as a readable block in the log (logger ``alerts.console``)."""

from __future__ import annotations

import logging
from typing import ClassVar

from alerts.channels import ConsoleChannelConfig
from alerts.notifiers import escape, render
from alerts.notifiers.base import AlertMessage, RateLimit

log = logging.getLogger("alerts.console")

_LEVELS = {"INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR}


def _own(text: str) -> str:
    """Our own text (labels, the ack hint): on one line, not defanged."""
    return escape.one_line(escape.clean(text, 300))


def render_text(alert: AlertMessage) -> str:
    """Every line is ours: outside text is cleaned and collapsed onto its line (a name or a
    post with a line break cannot forge a log line)."""
    p = escape.line
    first = render.headline(alert, render.short(p, 300))
    if not alert.digest and not render.is_follow_up(alert):
        drill = "[DRILL] " if alert.drill else ""
        first = f"{drill}TIER {alert.tier} ALERT #{alert.incident_id}: {p(alert.title, 300)}"
    lines = [
        first,
        f"  status:  {render.status(alert, render.short(p, 300))}",
        f"  watch:   {p(alert.brand or alert.watch_id, 200)} ({p(alert.watch_id, 200)})",
    ]
    if alert.teams:
        lines.append(f"  teams:   {p(', '.join(alert.teams), 300)}")
    if alert.digest:
        for item in alert.digest:
            lines.append(f"  - tier {item.tier} #{item.incident_id}: {p(item.title, 200)}")
    elif not render.is_follow_up(alert):
        lines.append(f"  what:    {p(alert.explanation, 1000)}")
        for ev in alert.evidence:
            who = p(ev.author or "unknown", 80)
            followers = f", {ev.followers} followers" if ev.followers is not None else ""
            lines.append(f'  - {who}{followers}: "{p(ev.text, 280)}"')
            if url := escape.safe_url(ev.url):
                lines.append(f"    {url}")
    if names := [p(c.name, 80) for c in alert.mentions]:
        lines.append(f"  on call: {', '.join(names)}")
    for link in render.links(alert):
        lines.append(f"  {_own(link.label)}: {link.url}")  # safe_url: no whitespace
    if alert.ack_hint and not render.is_follow_up(alert):
        lines.append(f"  ack:     {_own(alert.ack_hint)}")
    return "\n".join(lines)


class ConsoleNotifier:
    kind = "console"
    rate_limits: ClassVar[tuple[RateLimit, ...]] = ()

    def __init__(self, name: str, config: ConsoleChannelConfig) -> None:
        self.name = name
        self._level = _LEVELS[config.level]

    async def send(self, alert: AlertMessage) -> None:
        log.log(self._level, "[%s]\n%s", self.name, render_text(alert))
