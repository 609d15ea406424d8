"""Generic webhook channel: the alert as signed JSON.

Request: ``POST <url>`` with the JSON body ``{"type": "crisiswatch.alert", "version": 1,
"alert": {...}}`` and the headers

* ``X-Crisiswatch-Timestamp``: Unix seconds when it was signed;
* ``X-Crisiswatch-Signature``: ``sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>``;
* ``X-Crisiswatch-Idempotency-Key``: the same on every retry of one delivery (delivery is
  at-least-once: receivers drop repeats by this key).

``alert`` is the machine-readable part: the same, in English, whatever the channel's
``language``; only ``language``, ``summary``, ``status`` and ``explanation`` follow it.

Receivers verify the signature over the raw body and reject old timestamps (replays);
``verify_signature`` is the reference implementation. Text fields are cleaned of control
characters, @-all pings and live links; receivers still escape for their own medium.

Body schema (version 1; fields are only ever added):

```
{
  "type": "crisiswatch.alert", "version": 1,
  "language": "en"|"zh",     # the channel's language: that of summary, status, explanation
  "summary": str,            # one line: "[DRILL] Tier 3 #42: ..." / "Acknowledged by ..."
                             # (zh: "【演练】三级 #42：..." / "已由 alice 确认：...")
  "status": str,             # why this message: the reason, or "acknowledged by alice"
  "explanation": str,        # the explanation in the channel's language
  "alert": {
    "incident_id": int, "tier": 1|2|3, "title": str, "explanation": str,
    "watch_id": str, "brand": str, "reason": str, "teams": [str],
    "evidence": [{"author": str|null, "followers": int|null, "text": str,
                  "url": str|null, "label": str}],
    "links": [{"label": str, "url": str}], "ack_hint": str, "drill": bool,
    "opened_at": ISO-8601 UTC, "idempotency_key": str,
    "action": "trigger"|"acknowledge"|"resolve", "actor": str|null,
    "mentions": [{"name": str, "email": str|null, "phone": str|null,
                  "chat_ids": {channel type: id}}],
    "ack_url": str|null,     # signed single-use acknowledge link (a confirm page)
    "digest": [{"incident_id": int, "tier": int, "title": str, "reason": str,
                "url": str|null, "action": "trigger"|"acknowledge"|"resolve",
                "page": int, "idempotency_key": str}]
               # non-empty: several incidents merged in one message. A digest sent again
               # (at-least-once) may hold other items, so its own key differs: drop
               # repeated items by their idempotency_key
  }
}
```
"""

from __future__ import annotations

import json
from typing import ClassVar

import httpx

from alerts.channels import WebhookChannelConfig
from alerts.notifiers import escape, render
from alerts.notifiers.base import AlertMessage, RateLimit
from alerts.notifiers.http import post, secret_parts
from alerts.notifiers.i18n import phrases
from core import signing
from core.clock import Clock

TIMESTAMP_HEADER = signing.TIMESTAMP_HEADER
SIGNATURE_HEADER = signing.SIGNATURE_HEADER
IDEMPOTENCY_HEADER = "X-Crisiswatch-Idempotency-Key"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return signing.signature(secret, timestamp, body)


def verify_signature(
    secret: str, timestamp: str, body: bytes, signature: str, *, now: float, tolerance: float = 300
) -> bool:
    """True when ``signature`` is ours and ``timestamp`` is within ``tolerance`` s of ``now``."""
    try:
        age = abs(now - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance and signing.matches(secret, timestamp, body, signature)


def payload(alert: AlertMessage, language: str = "en") -> dict[str, object]:
    # ``why`` and ``heat`` feed the channels' languages; not (yet) part of the schema
    data = alert.model_dump(mode="json", exclude={"why", "heat"})
    for field in ("title", "reason", "brand", "ack_hint"):
        data[field] = escape.line(data[field], 300)
    data["teams"] = [escape.line(team, 100) for team in alert.teams]
    data["mentions"] = [
        {**c.model_dump(mode="json"), "name": escape.line(c.name, 100)} for c in alert.mentions
    ]
    data["explanation"] = escape.plain(alert.explanation, 2000)
    data["evidence"] = [
        {
            **ev.model_dump(mode="json"),
            "author": escape.line(ev.author, 100) if ev.author else None,
            "text": escape.plain(ev.text, 1000),
            "url": escape.safe_url(ev.url),
        }
        for ev in alert.evidence
    ]
    data["digest"] = [
        {
            **item.model_dump(mode="json", exclude={"why"}),
            "title": escape.line(item.title, 300),
            "reason": escape.line(item.reason, 300),
            "url": escape.safe_url(item.url),
        }
        for item in alert.digest
    ]
    data["ack_url"] = escape.safe_url(alert.ack_url)
    return {
        "type": "crisiswatch.alert",
        "version": 1,
        "language": phrases(language).language,
        "summary": escape.line(render.headline(alert, language=language), 300),
        "status": escape.line(render.status(alert, language=language), 300),
        "explanation": escape.plain(render.explanation(alert, language), 2000),
        "alert": data,
    }


class WebhookNotifier:
    kind = "webhook"
    rate_limits: ClassVar[tuple[RateLimit, ...]] = ()

    def __init__(
        self, name: str, config: WebhookChannelConfig, http: httpx.AsyncClient, clock: Clock
    ) -> None:
        self.name = name
        self._url = config.url.get_secret_value()
        self._secret = config.secret.get_secret_value()
        self._timeout = config.timeout
        self.language = config.language
        self._http = http
        self._clock = clock
        self._secrets = [*secret_parts(self._url), self._secret]

    async def send(self, alert: AlertMessage) -> None:
        body = json.dumps(
            payload(alert, self.language), separators=(",", ":"), ensure_ascii=False
        ).encode()
        timestamp = str(int(self._clock.now().timestamp()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            IDEMPOTENCY_HEADER: alert.idempotency_key,
        }
        await post(
            self._http,
            channel=self.name,
            url=self._url,
            content=body,
            headers=headers,
            send_timeout=self._timeout,
            secrets=self._secrets,
        )
