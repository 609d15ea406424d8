"""The HMAC-SHA256 request signature crisiswatch uses both ways: inbound webhooks
(``POST /ingest/mentions``) and outbound webhook alerts.

    X-Crisiswatch-Timestamp: <unix seconds>
    X-Crisiswatch-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{raw body}")>

Signing the timestamp with the body lets a receiver refuse old (replayed) requests.
"""

from __future__ import annotations

import hashlib
import hmac

TIMESTAMP_HEADER = "X-Crisiswatch-Timestamp"
SIGNATURE_HEADER = "X-Crisiswatch-Signature"
SCHEME = "sha256"


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def signature(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Crisiswatch-Signature`` value: ``sha256=<hex>``."""
    mac = hmac.new(_key(secret), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def matches(secret: str | bytes, timestamp: str, body: bytes, given: str) -> bool:
    """Whether ``given`` is the signature of ``body`` at ``timestamp`` (constant time)."""
    expected = signature(secret, timestamp, body).encode()
    return hmac.compare_digest(expected, given.strip().lower().encode("ascii", "replace"))
