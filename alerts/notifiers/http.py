"""What every HTTP notifier shares: posting, and classifying the outcome.

* 2xx: delivered.
* 408, 425, 429, 5xx, timeouts, connection errors: ``DeliveryError(retryable=True)``
  (``retry_after`` from a ``Retry-After`` header given in seconds).
* any other status (3xx included: a webhook that redirects is misconfigured), a URL that
  httpx refuses: ``DeliveryError(retryable=False)``.

Error messages name the channel, never its URL; response snippets are redacted of the
channel's secrets, because a receiver might echo what it got.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

import httpx

from alerts.notifiers.base import DeliveryError
from alerts.notifiers.escape import clean

RETRYABLE_STATUSES = frozenset({408, 425, 429})
MAX_RETRY_AFTER = 3600.0


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES or status >= 500


def secret_parts(url: str) -> list[str]:
    """The pieces of a secret URL worth redacting: the URL, its path, its long segments."""
    parts = urlsplit(url)
    out = [url, parts.path, parts.query]
    out += [seg for seg in parts.path.split("/") if len(seg) >= 8]
    return [p for p in out if p and p != "/"]


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    if not value.isdigit():
        return None  # HTTP-date form: fall back to our own backoff
    return min(float(value), MAX_RETRY_AFTER)


def check_response(channel: str, response: httpx.Response, secrets: Iterable[str] = ()) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    body = " ".join(clean(response.text, 200).split())
    detail = f": {redact(body, secrets)}" if body else ""
    retryable = is_retryable_status(status)
    raise DeliveryError(
        f"channel {channel}: HTTP {status}{detail}",
        retryable=retryable,
        retry_after=_retry_after(response) if retryable else None,
    )


async def post(
    client: httpx.AsyncClient,
    *,
    channel: str,
    url: str,
    content: bytes,
    headers: Mapping[str, str],
    send_timeout: float,
    secrets: Iterable[str] = (),
) -> httpx.Response:
    """POST and classify; every failure becomes a ``DeliveryError`` without secrets.

    Exceptions are raised ``from None``: httpx errors carry the request (and its URL).
    """
    try:
        response = await client.post(
            url, content=content, headers=dict(headers), timeout=send_timeout
        )
    except httpx.TimeoutException:
        raise DeliveryError(
            f"channel {channel}: no answer within {send_timeout:g}s", retryable=True
        ) from None
    except httpx.RequestError as exc:
        raise DeliveryError(
            f"channel {channel}: request failed ({type(exc).__name__})", retryable=True
        ) from None
    except httpx.InvalidURL:
        raise DeliveryError(f"channel {channel}: invalid URL", retryable=False) from None
    check_response(channel, response, secrets)
    return response
