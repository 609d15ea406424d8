"""Console channel: the alert as a readable block in the log (logger ``alerts.console``)."""

from __future__ import annotations

import logging
from typing import ClassVar

from alerts.channels import ConsoleChannelConfig
from alerts.notifiers import escape, render
from alerts.notifiers.base import AlertMessage, RateLimit
from alerts.notifiers.i18n import phrases

log = logging.getLogger("alerts.console")

_LEVELS = {"INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR}


def _own(text: str) -> str:
    """Our own text (labels, the ack hint): on one line, not defanged."""
    return escape.one_line(escape.clean(text, 300))


_LABELS = {
    "en": {
        "status": "status:  ",
        "watch": "watch:   ",
        "teams": "teams:   ",
        "what": "what:    ",
        "on_call": "on call: ",
        "ack": "ack:     ",
    },
    "zh": {
        "status": "状态：",
        "watch": "监测项：",
        "teams": "团队：",
        "what": "说明：",
        "on_call": "值班：",
        "ack": "确认接口：",
    },
}


def render_text(alert: AlertMessage, language: str = "en") -> str:
    """Every line is ours: outside text is cleaned and collapsed onto its line (a name or a
    post with a line break cannot forge a log line)."""
    p = escape.line
    ph = phrases(language)
    said = _LABELS.get(language, _LABELS["en"])
    first = render.headline(alert, render.short(p, 300), language)
    if not alert.digest and not render.is_follow_up(alert):
        drill = ph.drill if alert.drill else ""
        title = p(ph.title(alert.title), 300)
        if ph.language == "en":
            first = f"{drill}TIER {alert.tier} ALERT #{alert.incident_id}: {title}"
        else:
            first = f"{drill}{ph.tier(alert.tier)}告警 #{alert.incident_id}{ph.colon}{title}"
    lines = [
        first,
        f"  {said['status']}{render.status(alert, render.short(p, 300), language)}",
        f"  {said['watch']}{p(alert.brand or alert.watch_id, 200)} ({p(alert.watch_id, 200)})",
    ]
    if alert.teams:
        lines.append(f"  {said['teams']}{p(', '.join(alert.teams), 300)}")
    if alert.digest:
        for item in alert.digest:
            title = p(ph.title(item.title), 200)
            if ph.language == "en":
                lines.append(f"  - tier {item.tier} #{item.incident_id}: {title}")
            else:
                lines.append(f"  - {ph.subject(item.tier, item.incident_id, title)}")
    elif not render.is_follow_up(alert):
        lines.append(f"  {said['what']}{p(render.explanation(alert, language), 1000)}")
        for ev in alert.evidence:
            who = p(ev.author or ph.unknown, 80)
            if ev.followers is None:
                followers = ""
            elif ph.language == "en":
                followers = f", {ev.followers} followers"
            else:
                followers = ph.followers(ev.followers)
            lines.append(f'  - {who}{followers}{ph.colon}"{p(ev.text, 280)}"')
            if url := escape.safe_url(ev.url):
                lines.append(f"    {url}")
    if names := [p(c.name, 80) for c in alert.mentions]:
        lines.append(f"  {said['on_call']}{', '.join(names)}")
    for link in render.links(alert, language):
        lines.append(f"  {_own(link.label)}{ph.colon}{link.url}")  # safe_url: no whitespace
    if alert.ack_hint and not render.is_follow_up(alert):
        lines.append(f"  {said['ack']}{_own(alert.ack_hint)}")
    return "\n".join(lines)


class ConsoleNotifier:
    kind = "console"
    rate_limits: ClassVar[tuple[RateLimit, ...]] = ()

    def __init__(self, name: str, config: ConsoleChannelConfig) -> None:
        self.name = name
        self._level = _LEVELS[config.level]
        self.language = config.language

    async def send(self, alert: AlertMessage) -> None:
        log.log(self._level, "[%s]\n%s", self.name, render_text(alert, self.language))
