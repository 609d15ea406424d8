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

import json
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
    if not (value.isascii() and value.isdigit()):
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


async def post_json(
    client: httpx.AsyncClient,
    *,
    channel: str,
    url: str,
    payload: object,
    send_timeout: float,
    secrets: Iterable[str] = (),
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """``post`` a JSON body (UTF-8, not ASCII-escaped: the chat platforms count bytes)."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return await post(
        client,
        channel=channel,
        url=url,
        content=body,
        headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})},
        send_timeout=send_timeout,
        secrets=secrets,
    )


def check_code(
    channel: str,
    response: httpx.Response,
    *,
    code_field: str,
    message_field: str,
    retryable: Mapping[int, float | None],
    secrets: Iterable[str] = (),
) -> None:
    """Platforms that answer HTTP 200 with ``{code, message}``: code 0 is success.

    ``retryable`` maps the codes worth trying again to their ``retry_after`` (None: our
    backoff); every other code is permanent (bad signature, bad payload, robot removed).
    """
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise DeliveryError(
            f"channel {channel}: HTTP {response.status_code} with an answer that is not JSON",
            retryable=False,
        )
    code = data.get(code_field, 0)
    if code == 0 or code is None:
        return
    text = " ".join(clean(str(data.get(message_field, "")), 200).split())
    raise DeliveryError(
        f"channel {channel}: {code_field} {code}: {redact(text, secrets)}",
        retryable=code in retryable,
        retry_after=retryable.get(code) if isinstance(code, int) else None,
    )


class HookClient:
    """The raw client of a channel reached through one secret URL.

    It knows the URL, the timeout and what to redact from errors; the notifier that owns it
    maps alerts to payloads (and signs them where the platform asks for it).
    """

    def __init__(
        self,
        channel: str,
        url: str,
        send_timeout: float,
        http: httpx.AsyncClient,
        extra_secrets: Iterable[str] = (),
        *,
        url_is_secret: bool = True,
    ) -> None:
        self.channel = channel
        self.url = url
        self.send_timeout = send_timeout
        url_parts = secret_parts(url) if url_is_secret else []
        self.secrets = [*url_parts, *(s for s in extra_secrets if s)]
        self._http = http

    async def post_json(
        self,
        payload: object,
        *,
        url: str | httpx.URL | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        return await post_json(
            self._http,
            channel=self.channel,
            url=str(url or self.url),
            payload=payload,
            send_timeout=self.send_timeout,
            secrets=self.secrets,
            headers=headers,
        )

    def check_code(
        self,
        response: httpx.Response,
        *,
        code_field: str,
        message_field: str,
        retryable: Mapping[int, float | None],
    ) -> None:
        check_code(
            self.channel,
            response,
            code_field=code_field,
            message_field=message_field,
            retryable=retryable,
            secrets=self.secrets,
        )


def truncate_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes, on a character boundary."""
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    return data[: max(max_bytes - 3, 0)].decode(errors="ignore") + "…"
