"""``POST /ingest/mentions``: the pure logic (the API layer wraps it in a route).

Authentication is an HMAC-SHA256 signature over the timestamp and the raw body, as
Stripe and Slack do it::

    X-Crisiswatch-Timestamp: 1767603600
    X-Crisiswatch-Signature: sha256=<hex of HMAC-SHA256(secret, f"{timestamp}.{body}")>

A timestamp more than ``max_skew_seconds`` away from the server clock is refused, so a
captured request cannot be replayed later (within the window, a replayed batch is
dropped by the mention-id dedup). Signatures are compared in constant time.

The body is ``{"mentions": [...]}`` (or a bare JSON array) of Mentions in the wire format.
A body that is not JSON or has the wrong shape is a ``WebhookPayloadError`` (the whole
request is refused with ``status``); a bad item, or one the bus refuses for its size
(``refused_by_bus``), is an ``ItemError`` and the good items are kept. Error messages
never contain the secret, the expected signature or the input.
The body is taken as sent: a declared ``Content-Encoding`` (gzip, ...), or a body that is
gzip data without one, is refused (415). A JSON object that gives a key twice is refused
(400): the decoder would keep the last value without a word.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import SecretStr, ValidationError

from core import signing
from core.events import Mention, storable
from listener.report import IngestReport
from listener.sources.live import EARLIEST
from listener.validation import describe_errors

TIMESTAMP_HEADER = signing.TIMESTAMP_HEADER
SIGNATURE_HEADER = signing.SIGNATURE_HEADER
SCHEME = signing.SCHEME

# fields that are the listener's to set, never the sender's
_LISTENER_FIELDS = ("received_at", "watch")
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
_GZIP_MAGIC = b"\x1f\x8b"


class _KeyTwice(ValueError):
    """A JSON object names a key twice: the decoder would keep the last value silently."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _KeyTwice(key)
        found[key] = value
    return found


class WebhookAuthError(Exception):
    """The request is not authentic (answer 401). The message is safe to return."""


class WebhookPayloadError(Exception):
    """The whole body is unusable. ``status``: 400 (not JSON), 413 (too big), 415 (a
    content encoding), 422 (shape); ``reason`` labels ``crisiswatch_inbound_refused``."""

    def __init__(self, message: str, status: int = 422, reason: str = "shape") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class ItemError:
    index: int  # position in the batch
    id: str | None  # the item's id when it had a usable one
    message: str
    # for ``crisiswatch_mentions_rejected``: invalid, not_object, future, too_old, too_large
    reason: str = "invalid"


def _plain(secret: SecretStr | str | bytes) -> str | bytes:
    return secret.get_secret_value() if isinstance(secret, SecretStr) else secret


def sign(secret: SecretStr | str | bytes, timestamp: int | str, body: bytes) -> str:
    """The ``X-Crisiswatch-Signature`` value for ``body`` sent at ``timestamp``."""
    return signing.signature(_plain(secret), str(timestamp), body)


def signed_headers(secret: SecretStr | str | bytes, body: bytes, now: datetime) -> dict[str, str]:
    """Both headers, for clients and tests."""
    timestamp = str(int(now.timestamp()))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(secret, timestamp, body)}


def verify_signature(
    secret: SecretStr | str | bytes,
    timestamp_header: str | None,
    signature_header: str | None,
    body: bytes,
    now: datetime,
    *,
    max_skew_seconds: float = 300,
) -> None:
    """Raise ``WebhookAuthError`` unless the request was signed with ``secret`` recently."""
    if not timestamp_header:
        raise WebhookAuthError(f"missing {TIMESTAMP_HEADER} header (unix seconds)")
    if not signature_header:
        raise WebhookAuthError(f"missing {SIGNATURE_HEADER} header ({SCHEME}=<hex>)")
    timestamp = timestamp_header.strip()
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise WebhookAuthError(f"{TIMESTAMP_HEADER} must be unix seconds (an integer)")
    skew = abs(now.timestamp() - int(timestamp))
    if skew > max_skew_seconds:
        raise WebhookAuthError(
            f"{TIMESTAMP_HEADER} is {skew:.0f} s away from the server clock (at most "
            f"{max_skew_seconds:.0f} s allowed): a stale or replayed request, or a wrong clock"
        )
    scheme, sep, given = signature_header.strip().partition("=")
    if not sep or scheme.strip().lower() != SCHEME or not given:
        raise WebhookAuthError(f"{SIGNATURE_HEADER} must look like {SCHEME}=<hex digest>")
    if not _HEX_DIGEST.fullmatch(given.strip()):  # base64 (openssl -binary | base64), a prefix
        raise WebhookAuthError(
            f"{SIGNATURE_HEADER} must be {SCHEME}= and the 64 hex digits of the HMAC-SHA256 "
            "(not base64)"
        )
    if not signing.matches(_plain(secret), timestamp, body, f"{SCHEME}={given.strip()}"):
        raise WebhookAuthError(
            f'{SIGNATURE_HEADER} does not match: sign f"{{timestamp}}.{{raw body}}" with '
            "HMAC-SHA256 and the shared secret"
        )


def check_encoding(content_encoding: str | None) -> None:
    """Refuse (415) a body declared compressed: it would be read as JSON and answered "not
    valid JSON" (a gzip body: "can't decode byte 0x8b"), pointing at the wrong fault."""
    codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
    declared = [c for c in codings if c and c != "identity"]
    if declared:
        raise WebhookPayloadError(
            f"Content-Encoding {', '.join(declared)[:50]} is not supported: send the JSON body "
            "uncompressed (and sign those bytes)",
            status=415,
            reason="encoding",
        )


def parse_batch(
    body: bytes,
    max_items: int = 1000,
    *,
    max_body_bytes: int | None = None,
    now: datetime | None = None,
    max_future_seconds: float = 300,
) -> tuple[list[Mention], list[ItemError]]:
    """The valid mentions of ``body`` and an error for each invalid item.

    With ``now``, an item created more than ``max_future_seconds`` in the future is an
    error (it would drag the detector's event time forward); so is one created before
    ``EARLIEST`` (2000: a sender's "no date", 0 or 1970, would make its story decades old).
    """
    if max_body_bytes is not None and len(body) > max_body_bytes:
        raise WebhookPayloadError(
            f"body is {len(body)} bytes; at most {max_body_bytes} per request",
            status=413,
            reason="too_large",
        )
    if body.startswith(_GZIP_MAGIC):  # else answered "can't decode byte 0x8b": not the fault
        raise WebhookPayloadError(
            "body is gzip-compressed: send the JSON body uncompressed (and sign those bytes)",
            status=415,
            reason="encoding",
        )
    try:
        # a key given twice is refused: with the last one kept, '{"mentions": [...],
        # "mentions": []}' was answered 200 with its mentions dropped without a word
        data: Any = json.loads(body, object_pairs_hook=_unique_keys)
    except _KeyTwice as exc:
        key = storable(exc.key[:64])  # echoed: a lone surrogate would make it unwritable
        raise WebhookPayloadError(
            f'body is not valid JSON for us: key "{key}" given twice in one object '
            "(which value is meant is ambiguous): send each key once",
            status=400,
            reason="not_json",
        ) from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, deep nesting
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise WebhookPayloadError(
            f"body is not valid JSON: {reason}", status=400, reason="not_json"
        ) from None
    items = data.get("mentions") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise WebhookPayloadError('body must be {"mentions": [...]} or a JSON array of mentions')
    if len(items) > max_items:
        raise WebhookPayloadError(
            f"{len(items)} mentions in one request; at most {max_items}",
            status=413,
            reason="too_many",
        )
    latest = now + timedelta(seconds=max_future_seconds) if now is not None else None
    mentions: list[Mention] = []
    errors: list[ItemError] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append(
                ItemError(index, None, "each mention must be a JSON object", "not_object")
            )
            continue
        raw_id = item.get("id")
        # echoed in the answer: a lone surrogate in it made the answer unwritable (a 500
        # after the batch's good items were published)
        item_id = storable(raw_id[:512]) if isinstance(raw_id, str) else None
        if item.get("drill", False) is not False:
            # a drill is the service's (POST /drills): a sender's would open a real crisis
            # as a drill incident, muted and marked not for publication
            errors.append(
                ItemError(
                    index,
                    item_id,
                    "drill: crisiswatch marks its own drills (POST /drills); a mention sent "
                    "here is never one: leave the field out",
                )
            )
            continue
        fields = {k: v for k, v in item.items() if k not in _LISTENER_FIELDS}
        try:
            mention = Mention.model_validate(fields)
        except ValidationError as exc:
            errors.append(ItemError(index, item_id, describe_errors(exc)))
            continue
        if latest is not None and mention.created_at > latest:
            errors.append(
                ItemError(index, item_id, "created_at is in the future (check the clock)", "future")
            )
            continue
        if mention.created_at < EARLIEST:
            errors.append(
                ItemError(
                    index,
                    item_id,
                    f"created_at is before {EARLIEST.year}: not a real date (a missing one?)",
                    "too_old",
                )
            )
            continue
        mentions.append(mention)
    return mentions, errors


def refused_by_bus(report: IngestReport, errors: list[ItemError]) -> list[ItemError]:
    """``errors`` (from ``parse_batch``) and an error for each mention of ``report`` that
    the bus refused (``too_large``), in the body's order. The mentions ingested are the
    items without an error of ``parse_batch``, in order: that gives each its index."""
    refused = [item for item in report.items if item.outcome == "too_large"]
    if not refused:
        return errors
    invalid = {error.index for error in errors}
    total = len(errors) + len(report.items)
    positions = [index for index in range(total) if index not in invalid]
    added = [
        ItemError(positions[item.index], item.id, item.reason, "too_large") for item in refused
    ]
    return sorted([*errors, *added], key=lambda error: error.index)


def response_body(report: IngestReport, errors: list[ItemError]) -> dict[str, Any]:
    """The JSON answer: counts, what happened to each mention, and the refused items."""
    return {
        "accepted": report.accepted,
        "duplicates": report.duplicates,
        "unmatched": report.unmatched,
        "published": report.published,
        "rejected": len(errors),
        "results": [
            {"id": item.id, "outcome": item.outcome, "watches": list(item.watches)}
            for item in report.items
        ],
        "errors": [{"index": e.index, "id": e.id, "message": e.message} for e in errors],
    }
