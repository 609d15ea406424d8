"""PagerDuty Events API v2: trigger / acknowledge / resolve one alert per incident.

Followed: PagerDuty developer docs, "Events API v2 Overview" (response codes and retry
logic), "Send an Alert Event" and "Events API Rate Limits"
(github.com/PagerDuty/developer-docs, docs/events-API-v2/01..05):

* ``POST https://events.pagerduty.com/v2/enqueue`` with ``routing_key`` (the 32-character
  integration key), ``event_action`` (``trigger``/``acknowledge``/``resolve``) and a
  ``dedup_key`` (at most 255 characters) that is the same for every event of one incident
  page (``AlertMessage.dedup_key``), so acknowledge and resolve reach the alert that
  trigger opened; a trigger whose key names an open alert (triggered *or acknowledged*)
  is folded into it and pages nobody, hence a new key when an upgrade reopens an
  acknowledged incident;
* a trigger carries ``payload.summary`` (at most 1024 characters), ``payload.source``,
  ``payload.severity`` (critical/error/warning/info), ``payload.timestamp``,
  ``payload.component``/``group``/``class``, ``payload.custom_details``, and ``links``;
  acknowledge and resolve carry only routing_key, dedup_key and event_action;
* 202 accepted; 400 invalid event (do not retry); 429 and 5xx: retry later;
* limit: about 120 events a minute per integration key.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from alerts.channels import PagerDutyChannelConfig
from alerts.notifiers import escape, render
from alerts.notifiers.base import AlertMessage, RateLimit
from alerts.notifiers.http import HookClient

SUMMARY_MAX = 1024


def event(alert: AlertMessage, config: PagerDutyChannelConfig) -> dict[str, Any]:
    routing_key = config.routing_key.get_secret_value()
    base = {"routing_key": routing_key, "dedup_key": alert.dedup_key}
    if render.is_follow_up(alert):
        return base | {"event_action": alert.action}
    details: dict[str, Any] = {
        "incident_id": alert.incident_id,
        "tier": alert.tier,
        "reason": escape.line(alert.reason, 300),
        "explanation": escape.plain(alert.explanation, 2000),
        "teams": list(alert.teams),
        "drill": alert.drill,
    }
    if alert.digest:
        details["incidents"] = [
            {"id": i.incident_id, "tier": i.tier, "title": escape.line(i.title, 200)}
            for i in alert.digest
        ]
    if alert.evidence:
        details["evidence"] = [
            {
                "author": escape.line(ev.author or "unknown", 100),
                "followers": ev.followers,
                "text": escape.plain(ev.text, 500),
                "url": escape.safe_url(ev.url),
            }
            for ev in alert.evidence
        ]
    return base | {
        "event_action": "trigger",
        "payload": {
            "summary": escape.line(render.headline(alert), SUMMARY_MAX),
            "source": config.source,
            "severity": config.severity.get(alert.tier, "critical"),
            "timestamp": alert.opened_at.isoformat(),
            "component": alert.watch_id[:255],
            "group": "crisiswatch",
            "class": f"tier {alert.tier}",
            "custom_details": details,
        },
        "client": "crisiswatch",
        "links": [{"href": link.url, "text": link.label[:100]} for link in render.links(alert)],
    }


class PagerDutyNotifier:
    kind = "pagerduty"
    rate_limits: ClassVar[tuple[RateLimit, ...]] = (RateLimit(count=120, per_seconds=60),)

    def __init__(self, name: str, config: PagerDutyChannelConfig, http: httpx.AsyncClient) -> None:
        self.name = name
        self._config = config
        key = config.routing_key.get_secret_value()
        self._client = HookClient(
            name, config.url, config.timeout, http, [key], url_is_secret=False
        )

    async def send(self, alert: AlertMessage) -> None:
        await self._client.post_json(event(alert, self._config))
