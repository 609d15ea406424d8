"""Generic webhook channel: the alert as signed JSON.

Request: ``POST <url>`` with the JSON body ``{"type": "crisiswatch.alert", "version": 1,
"alert": {...}}`` and the headers

* ``X-Crisiswatch-Timestamp``: Unix seconds when it was signed;
* ``X-Crisiswatch-Signature``: ``sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>``;
* ``X-Crisiswatch-Idempotency-Key``: the same on every retry of one delivery (delivery is
  at-least-once: receivers drop repeats by this key). A header value is ASCII: a key with
  other characters (a channel named in Chinese) goes percent-encoded as UTF-8, as do ``%``
  and whitespace (``header_key``); ``alert.idempotency_key`` in the body is the key as is.

Language (the channel's ``language``: ``en`` or ``zh``): the machine fields (ids, ``tier``,
``action``, ``drill``, keys, URLs, ``ack_hint``, ``evidence[].label``, the structured
``why`` and the ``heat`` numbers) are the same in every language; the texts meant for
people follow the channel's language, in the chat channels' wording
(``alerts.notifiers.i18n``): ``summary``, ``status``, ``explanation`` and, in ``alert``,
``title``, ``reason``, ``explanation``, ``links[].label`` and the digest items' ``title``
and ``reason``. An English channel's texts are those it always had. A receiver that acts
on why a message was sent reads ``why.code``, never the ``reason`` text. Names (brand,
teams, actor, authors, posts) are shown as written.

Receivers verify the signature over the raw body and reject old timestamps (replays);
``verify_signature`` is the reference implementation. Text fields are cleaned of control
characters, @-all pings and live links; receivers still escape for their own medium.

Links: ``alert.links`` (and a digest item's ``url``) are for people: "Open incident" opens
the incident console (``alerts.incident_path``, ``/console/#incident=<id>`` by default),
which asks for an API key. It used to be the JSON API's ``/incidents/<id>``, which a
browser without a key gets as 401: a receiver that fetches the incident reads
``alert.api_url`` (a digest item's ``api_url``), always the API's URL.

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
    "why": {"code": str, ...}|null,  # the reason, structured: its code (new, upgrade,
                             # escalation, reminder, sla_missed, ...: reasons.py) and only
                             # the fields that code uses (tier, from_tier, level, seconds, ...)
    "heat": {"mentions": int, "mentions_window": int, ...}|null,  # the explanation's numbers
    "evidence": [{"author": str|null, "followers": int|null, "text": str,
                  "url": str|null, "label": str}],
    "links": [{"label": str, "url": str}],  # for people: "Open incident" opens the
                             # incident console (alerts.incident_path), not the JSON API
    "api_url": str|null,     # the incident in the JSON API (GET <api_url> with an API key):
                             # what a machine fetches; null without alerts.public_url (and
                             # in alerts queued before it was added)
    "ack_hint": str, "drill": bool,
    "opened_at": ISO-8601 UTC, "idempotency_key": str,
    "action": "trigger"|"acknowledge"|"resolve", "actor": str|null,
    "mentions": [{"name": str, "email": str|null, "phone": str|null,
                  "chat_ids": {channel type: id}}],
    "ack_url": str|null,     # signed single-use acknowledge link (a confirm page)
    "digest": [{"incident_id": int, "tier": int, "title": str, "reason": str,
                "url": str|null,   # the item's "Open incident" link (for people)
                "api_url": str|null,  # the item's incident in the JSON API (machines)
                "action": "trigger"|"acknowledge"|"resolve",
                "page": int, "idempotency_key": str, "why": {...}|null}]
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
from urllib.parse import quote

import httpx

from alerts.channels import WebhookChannelConfig
from alerts.notifiers import escape, render
from alerts.notifiers.base import AlertHeat, AlertMessage, RateLimit
from alerts.notifiers.http import post, secret_parts
from alerts.notifiers.i18n import phrases
from alerts.notifiers.reasons import Reason
from core import signing
from core.clock import Clock

TIMESTAMP_HEADER = signing.TIMESTAMP_HEADER
SIGNATURE_HEADER = signing.SIGNATURE_HEADER
IDEMPOTENCY_HEADER = "X-Crisiswatch-Idempotency-Key"


# every printable ASCII character but "%" stays as it is: keys of ASCII names are unchanged
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


def header_key(key: str) -> str:
    """``key`` as a header value: printable ASCII, the rest percent-encoded (UTF-8). httpx
    refuses a non-ASCII header value (``UnicodeEncodeError``: the delivery failed on every
    attempt) and HTTP one with a line break."""
    return quote(key, safe=_HEADER_SAFE)


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


def _why(why: Reason | None) -> dict[str, object] | None:
    """The structured reason: its code and the fields that code uses (texts cleaned)."""
    if why is None:
        return None
    data = why.model_dump(mode="json", exclude_none=True)
    return {k: escape.line(v, 300) if isinstance(v, str) else v for k, v in data.items()}


def _heat(heat: AlertHeat | None) -> dict[str, object] | None:
    """The numbers behind the explanation (the complaint cues as found, cleaned)."""
    if heat is None:
        return None
    data = heat.model_dump(mode="json")
    data["complaint_cues"] = [escape.line(cue, 100) for cue in heat.complaint_cues]
    return data


def payload(alert: AlertMessage, language: str = "en") -> dict[str, object]:
    """The body: the texts for people in ``language`` (``phrases``), the rest as it is."""
    ph = phrases(language)
    data = alert.model_dump(mode="json", exclude={"why", "heat"})
    data["title"] = escape.line(ph.title(alert.title), 300)
    data["reason"] = escape.line(ph.reason(alert), 300)
    data["brand"] = escape.line(data["brand"], 300)
    # our own text (our API's URL): cleaned, on one line, not defanged (a receiver reading
    # "POST hxxps[:]//cw[.]acme[.]example/incidents/3/ack" could not act on it)
    data["ack_hint"] = escape.one_line(escape.clean(data["ack_hint"], 300))
    data["teams"] = [escape.line(team, 100) for team in alert.teams]
    data["mentions"] = [
        {**c.model_dump(mode="json"), "name": escape.line(c.name, 100)} for c in alert.mentions
    ]
    data["explanation"] = escape.plain(ph.explanation(alert), 2000)
    data["links"] = [
        {**link.model_dump(mode="json"), "label": ph.link_label(link.label)} for link in alert.links
    ]
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
            "title": escape.line(ph.title(item.title), 300),
            "reason": escape.line(ph.item_reason(item), 300),
            "url": escape.safe_url(item.url),
            "api_url": escape.safe_url(item.api_url),
            "why": _why(item.why),
        }
        for item in alert.digest
    ]
    data["ack_url"] = escape.safe_url(alert.ack_url)
    data["api_url"] = escape.safe_url(alert.api_url)
    data["why"] = _why(alert.why)
    data["heat"] = _heat(alert.heat)
    return {
        "type": "crisiswatch.alert",
        "version": 1,
        "language": ph.language,
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
            IDEMPOTENCY_HEADER: header_key(alert.idempotency_key),
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
