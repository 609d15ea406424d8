"""What every HTTP notifier shares: posting, and classifying the outcome.

* 2xx: delivered.
* 408, 425, 429, 5xx, timeouts, connection errors: ``DeliveryError(retryable=True)``
  (``retry_after`` from a ``Retry-After`` header given in seconds).
* any other status (3xx included: a webhook that redirects is misconfigured), a URL that
  httpx refuses: ``DeliveryError(retryable=False)``.

Platforms that answer ``{code, message}`` (``check_code``) may do so with an error status too
(Feishu throttles with HTTP 400 and code 9499): their code is read whatever the status.

Error messages name the channel, never its URL; response snippets are redacted of the
channel's secrets, because a receiver might echo what it got.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar
from urllib.parse import parse_qsl, quote, urlsplit

import httpx

from alerts.notifiers.base import DeliveryError
from alerts.notifiers.escape import clean

P = TypeVar("P")

RETRYABLE_STATUSES = frozenset({408, 425, 429})
MAX_RETRY_AFTER = 3600.0


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES or status >= 500


def secret_parts(url: str) -> list[str]:
    """The pieces of a secret URL worth redacting: the URL, its path, its long segments,
    its query and the long values in it (WeCom's ``key``, DingTalk's ``access_token``: a
    receiver that echoes the credential alone must not leak it)."""
    parts = urlsplit(url)
    out = [url, parts.path, parts.query]
    out += [seg for seg in parts.path.split("/") if len(seg) >= 8]
    values = [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
    out += [v for value in values for v in {value, quote(value, safe="")} if len(value) >= 8]
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
    check_status: bool = True,
) -> httpx.Response:
    """POST and classify; every failure becomes a ``DeliveryError`` without secrets.
    ``check_status=False``: an answer with an error status is returned, for the caller to
    read (``check_code`` does, and classifies it).

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
    if check_status:
        check_response(channel, response, secrets)
    return response


def encode_json(payload: object) -> bytes:
    """The JSON body as sent (UTF-8, not ASCII-escaped: the chat platforms count bytes)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def fit_body(build: Callable[[int], P], text_max_bytes: int, body_max_bytes: int) -> P:
    """``build(n)`` for the largest text limit ``n <= text_max_bytes`` whose JSON body is at
    most ``body_max_bytes``: JSON escaping lengthens text (a quote or a line break takes
    two bytes), so a text within its own limit can still make a body the platform refuses.
    """
    payload = build(text_max_bytes)
    budget = text_max_bytes
    while (over := len(encode_json(payload)) - body_max_bytes) > 0 and budget > 0:
        budget = max(budget - over, 0)
        payload = build(budget)
    return payload


async def post_json(
    client: httpx.AsyncClient,
    *,
    channel: str,
    url: str,
    payload: object,
    send_timeout: float,
    secrets: Iterable[str] = (),
    headers: Mapping[str, str] | None = None,
    check_status: bool = True,
) -> httpx.Response:
    """``post`` a JSON body (``encode_json``)."""
    return await post(
        client,
        channel=channel,
        url=url,
        content=encode_json(payload),
        headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})},
        send_timeout=send_timeout,
        secrets=secrets,
        check_status=check_status,
    )


def check_code(
    channel: str,
    response: httpx.Response,
    *,
    code_field: str,
    message_field: str,
    retryable: Mapping[int, float | None],
    secrets: Iterable[str] = (),
    retryable_if: Callable[[int, str], bool] | None = None,
) -> None:
    """Platforms that answer ``{code, message}``: code 0 (with a 2xx status) is success.

    ``retryable`` maps the codes worth trying again to their ``retry_after`` (None: our
    backoff); ``retryable_if(code, message)`` says so of codes that only their message
    tells apart; every other code is permanent (bad signature, bad payload, robot
    removed) unless the HTTP status itself is retryable (429, 5xx). An error status
    without a code is classified as ``check_response`` does.
    """
    status = response.status_code
    try:
        data = response.json()
    except ValueError:
        data = None
    code = data.get(code_field) if isinstance(data, dict) else None
    if not 200 <= status < 300 and not code:
        check_response(channel, response, secrets)
    if not isinstance(data, dict):
        raise DeliveryError(
            f"channel {channel}: HTTP {status} with an answer that is not JSON",
            retryable=False,
        )
    if code == 0 or code is None:
        return
    text = " ".join(clean(str(data.get(message_field, "")), 200).split())
    known = isinstance(code, int) and code in retryable
    by_status = is_retryable_status(status)
    said = isinstance(code, int) and retryable_if is not None and retryable_if(code, text)
    retry = known or by_status or said
    after = retryable.get(code) if known else (_retry_after(response) if by_status else None)
    http = "" if 200 <= status < 300 else f"HTTP {status}, "
    raise DeliveryError(
        f"channel {channel}: {http}{code_field} {code}: {redact(text, secrets)}",
        retryable=retry,
        retry_after=after,
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
        check_status: bool = True,
    ) -> httpx.Response:
        return await post_json(
            self._http,
            channel=self.channel,
            url=str(url or self.url),
            payload=payload,
            send_timeout=self.send_timeout,
            secrets=self.secrets,
            headers=headers,
            check_status=check_status,
        )

    def check_code(
        self,
        response: httpx.Response,
        *,
        code_field: str,
        message_field: str,
        retryable: Mapping[int, float | None],
        retryable_if: Callable[[int, str], bool] | None = None,
    ) -> None:
        check_code(
            self.channel,
            response,
            code_field=code_field,
            message_field=message_field,
            retryable=retryable,
            secrets=self.secrets,
            retryable_if=retryable_if,
        )


def truncate_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes, on a character boundary."""
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    if max_bytes < len("…".encode()):  # no room to say it was cut
        return data[: max(max_bytes, 0)].decode(errors="ignore")
    return data[: max_bytes - 3].decode(errors="ignore") + "…"
