"""PagerDuty Events API v2: trigger / acknowledge / resolve one alert per incident.

Followed: PagerDuty developer docs, "Events API v2 Overview" (response codes and retry
logic), "Send an Alert Event" and "Events API Rate Limits"
(github.com/PagerDuty/developer-docs, docs/events-API-v2/01..05):

* ``POST https://events.pagerduty.com/v2/enqueue`` with ``routing_key`` (the 32-character
  integration key), ``event_action`` (``trigger``/``acknowledge``/``resolve``) and a
  ``dedup_key`` (at most 255 characters) that is the same for every event of one incident
  page (``AlertMessage.dedup_key``), so acknowledge and resolve reach the alert that
  trigger opened; a trigger whose key names an open alert (triggered *or acknowledged*)
  is folded into it (the alert keeps the severity it was opened with) and pages nobody,
  hence a new key (a new page: ``alerts.incidents._upgrade``) when an upgrade finds an
  alert of the incident here, or reopens an acknowledged incident;
* a trigger carries ``payload.summary`` (at most 1024 characters), ``payload.source``,
  ``payload.severity`` (critical/error/warning/info), ``payload.timestamp``,
  ``payload.component``/``group``/``class``, ``payload.custom_details``, and ``links``;
  acknowledge and resolve carry only routing_key, dedup_key and event_action;
* 202 accepted; 400 invalid event (do not retry); 429 and 5xx: retry later;
* limit: about 120 events a minute per integration key.

A digest (several incidents in one message) is not one event: it would carry one
incident's key only, so the others' acknowledge and resolve would name keys PagerDuty
never got, and a reopened incident (a new page) would fold into its acknowledged alert.
The outbox never sends one here (``alerts.channels.KEYED_CHANNEL_TYPES``); should one come
anyway, each of its incidents goes as its own event under its own key, in order.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from alerts.channels import PagerDutyChannelConfig
from alerts.notifiers import escape, render
from alerts.notifiers.base import AlertMessage, DigestItem, Link, RateLimit
from alerts.notifiers.http import HookClient
from alerts.notifiers.i18n import OPEN_INCIDENT

SUMMARY_MAX = 1024


def event(alert: AlertMessage, config: PagerDutyChannelConfig) -> dict[str, Any]:
    """One event; a trigger's human text (summary, reason, explanation, link labels) in the
    channel's language, its machine fields (class, component, severity) as they are."""
    language = config.language
    routing_key = config.routing_key.get_secret_value()
    base = {"routing_key": routing_key, "dedup_key": alert.dedup_key}
    if render.is_follow_up(alert):
        return base | {"event_action": alert.action}
    details: dict[str, Any] = {
        "incident_id": alert.incident_id,
        "tier": alert.tier,
        "reason": escape.line(render.status(alert, language=language), 300),
        "explanation": escape.plain(render.explanation(alert, language), 2000),
        "teams": list(alert.teams),
        "drill": alert.drill,
    }
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
            "summary": escape.line(render.headline(alert, language=language), SUMMARY_MAX),
            "source": config.source,
            "severity": config.severity.get(alert.tier, "critical"),
            "timestamp": alert.opened_at.isoformat(),
            "component": alert.watch_id[:255],
            "group": "crisiswatch",
            "class": f"tier {alert.tier}",
            "custom_details": details,
        },
        "client": "crisiswatch",
        "links": [
            {"href": link.url, "text": link.label[:100]} for link in render.links(alert, language)
        ],
    }


def item_alert(digest: AlertMessage, item: DigestItem) -> AlertMessage:
    """One incident of a digest as its own alert: its page, action and key."""
    return AlertMessage(
        incident_id=item.incident_id,
        tier=item.tier,
        title=item.title,
        explanation=item.reason,
        watch_id=digest.watch_id,
        brand=digest.brand,
        reason=item.reason,
        why=item.why,
        teams=digest.teams,
        links=(Link(label=OPEN_INCIDENT, url=item.url),) if item.url else (),
        drill=digest.drill,
        opened_at=digest.opened_at,
        idempotency_key=item.idempotency_key,
        action=item.action,
        actor=digest.actor,
        page=item.page,
    )


def events(alert: AlertMessage, config: PagerDutyChannelConfig) -> list[dict[str, Any]]:
    """The events of one message: one, or one per incident of a digest."""
    if not alert.digest:
        return [event(alert, config)]
    return [event(item_alert(alert, item), config) for item in alert.digest]


class PagerDutyNotifier:
    kind = "pagerduty"
    rate_limits: ClassVar[tuple[RateLimit, ...]] = (RateLimit(count=120, per_seconds=60),)

    def __init__(self, name: str, config: PagerDutyChannelConfig, http: httpx.AsyncClient) -> None:
        self.name = name
        self._config = config
        self.language = config.language
        key = config.routing_key.get_secret_value()
        self._client = HookClient(
            name, config.url, config.timeout, http, [key], url_is_secret=False
        )

    async def send(self, alert: AlertMessage) -> None:
        # in order (a trigger before the resolve of its key); if one fails, the retry sends
        # them all again: a trigger repeated is folded into its alert, a follow-up is a no-op
        for body in events(alert, self._config):
            await self._client.post_json(body)
