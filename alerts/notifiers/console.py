"""Console channel: the alert as a readable block in the log (logger ``alerts.console``)."""

from __future__ import annotations

import logging
from typing import ClassVar

from alerts.channels import ConsoleChannelConfig
from alerts.notifiers import escape
from alerts.notifiers.base import AlertMessage, RateLimit

log = logging.getLogger("alerts.console")

_LEVELS = {"INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR}


def render(alert: AlertMessage) -> str:
    drill = "[DRILL] " if alert.drill else ""
    lines = [
        f"{drill}TIER {alert.tier} ALERT #{alert.incident_id}: {escape.plain(alert.title, 300)}",
        f"  reason:  {escape.plain(alert.reason, 300)}",
        f"  watch:   {escape.plain(alert.brand or alert.watch_id, 200)} ({alert.watch_id})",
    ]
    if alert.teams:
        lines.append(f"  teams:   {', '.join(alert.teams)}")
    lines.append(f"  what:    {escape.plain(alert.explanation, 1000)}")
    for ev in alert.evidence:
        who = escape.plain(ev.author or "unknown", 80)
        followers = f", {ev.followers} followers" if ev.followers is not None else ""
        text = " ".join(escape.plain(ev.text, 280).split())
        lines.append(f'  - {who}{followers}: "{text}"')
        if url := escape.safe_url(ev.url):
            lines.append(f"    {url}")
    for link in alert.links:
        lines.append(f"  {link.label}: {link.url}")
    if alert.ack_hint:
        lines.append(f"  ack:     {alert.ack_hint}")
    return "\n".join(lines)


class ConsoleNotifier:
    kind = "console"
    rate_limits: ClassVar[tuple[RateLimit, ...]] = ()

    def __init__(self, name: str, config: ConsoleChannelConfig) -> None:
        self.name = name
        self._level = _LEVELS[config.level]

    async def send(self, alert: AlertMessage) -> None:
        log.log(self._level, "[%s]\n%s", self.name, render(alert))
