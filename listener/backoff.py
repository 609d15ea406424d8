"""Reconnect pacing and HTTP rate limits, shared by every network source.

``Backoff`` gives exponential delays with full jitter ("sleep a random time between half
and all of the current step"), reset after a success. ``check_response`` turns an HTTP
response into either nothing (2xx/304), ``RateLimited`` (429, or 503 with
``Retry-After``: wait that long, then try again), ``SourceFatalError`` (401/403/404: a
credential or a route that retrying will not fix), ``TransientError`` naming where a
redirect (3xx, not followed) points, ``TargetUnavailable`` (the statuses a
caller names as meaning that one target of a multi-target source is gone, private or
blocked: a moved feed, a deleted video, a private subreddit) or ``TransientError`` (5xx
and the rest). ``retry_after`` reads both forms of the header (seconds, HTTP date).
A wait a server asks for is kept within ``MIN_SERVER_WAIT_S`` .. ``MAX_SERVER_WAIT_S``
(``server_wait``): ``Retry-After: 0`` or a date in the past would make a busy loop of
429s, and a wait of years (or one too large for a ``timedelta``) would stop a source
for good.
``json_body`` reads a JSON API's answer: one that is not JSON is ``TransientError``.
Bodies are read bounded (``read_at_most``, ``get_at_most``): a broken or hostile server
could send gigabytes, which must never be held in memory before being refused, or send
them a trickle at a time, which must not hold a poll for hours (``READ_DEADLINE_S``).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Collection
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from listener.sources.base import SourceFatalError


class TransientError(Exception):
    """Worth retrying after a backoff (a dropped connection, a 5xx)."""


class TargetUnavailable(TransientError):
    """One target (a feed, a video, a listing) cannot be read: gone, private or blocked.
    The source's other targets can; retrying this one later may work (a feed back in
    place, a subreddit public again)."""


class RateLimited(TransientError):
    """The server asked us to wait ``delay`` seconds before the next request."""

    def __init__(self, delay: float, message: str) -> None:
        super().__init__(message)
        self.delay = delay


class Backoff:
    def __init__(
        self,
        first: float = 1.0,
        maximum: float = 60.0,
        *,
        factor: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        if first <= 0 or maximum < first or factor < 1:
            raise ValueError("backoff needs 0 < first <= maximum and factor >= 1")
        self.first = first
        self.maximum = maximum
        self.factor = factor
        self.attempts = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """The delay before the next attempt (counts an attempt)."""
        # the exponent bounded: 2.0**1024 overflows (a day of failed reconnects at the cap)
        step = min(self.maximum, self.first * self.factor ** min(self.attempts, 64))
        self.attempts += 1
        return step / 2 + self._rng.random() * step / 2

    def reset(self) -> None:
        self.attempts = 0


MIN_SERVER_WAIT_S = 1.0
MAX_SERVER_WAIT_S = 3600.0


def server_wait(seconds: float | str | None, default: float) -> float:
    """A wait a server asked for (seconds, or their text), within ``MIN_SERVER_WAIT_S`` ..
    ``MAX_SERVER_WAIT_S``; ``default`` (bounded the same way) when it is missing or not a
    finite number."""
    try:
        value = float(seconds) if seconds is not None else default
    except ValueError:
        value = default
    if not math.isfinite(value):
        value = default
    return min(MAX_SERVER_WAIT_S, max(MIN_SERVER_WAIT_S, value))


def retry_after(value: str | None, now: datetime, default: float) -> float:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date),
    within the bounds of ``server_wait``."""
    if not value:
        return server_wait(None, default)
    value = value.strip()
    if value.isascii() and value.isdigit():
        return server_wait(value, default)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return server_wait(None, default)
    if when.tzinfo is None:
        return server_wait(None, default)
    return server_wait((when - now).total_seconds(), default)


_FATAL = {401: "credentials refused", 403: "access forbidden", 404: "not found"}


def check_response(
    response: httpx.Response,
    now: datetime,
    *,
    what: str,
    default_wait: float = 60.0,
    target_statuses: Collection[int] = (),
) -> None:
    """Raise the error ``response`` stands for; return when it is usable (2xx, 304).

    ``what`` names the request in messages (never the URL's query: it may hold a token).
    ``target_statuses``: statuses that mean the target of this request is unavailable
    (``TargetUnavailable``) rather than the source's credential refused.
    """
    status = response.status_code
    if status < 300 or status == 304:
        return
    header = response.headers.get("retry-after")
    if status == 429 or (status == 503 and header):
        delay = retry_after(header, now, default_wait)
        raise RateLimited(delay, f"{what}: HTTP {status}, waiting {delay:.0f} s")
    if status in target_statuses:
        reason = _FATAL.get(status, "unavailable")
        raise TargetUnavailable(f"{what}: HTTP {status} ({reason})")
    if status in _FATAL:
        raise SourceFatalError(f"{what}: HTTP {status} ({_FATAL[status]})")
    if 300 <= status < 400:
        where = redirect_target(response)
        place = f", redirected to {where}" if where else ", redirected"
        raise TransientError(
            f"{what}: HTTP {status}{place} (not followed: check the URL configured)"
        )
    raise TransientError(f"{what}: HTTP {status}")


def redirect_target(response: httpx.Response) -> str | None:
    """Where a redirect (3xx) points, for a message: scheme, host and path, never the
    query (it may hold a token); None when it names no readable place. A source follows
    no redirect of an API (a moved endpoint is the config's to fix, and a redirect may
    drop or leak a credential), so the operator needs the address to put there."""
    location = response.headers.get("location", "").strip()
    if not location:
        return None
    try:
        base = response.request.url
    except RuntimeError:  # a response made here, without its request
        base = httpx.URL("")
    try:
        target = base.join(location)
    except httpx.InvalidURL:
        return None
    host = target.netloc.decode("ascii", "replace")
    return f"{target.scheme}://{host}{target.path}" if host else target.path


def json_body(response: httpx.Response, *, what: str) -> Any:
    """The JSON of a usable ``response``. An answer that is not JSON (an HTML error page
    served with 200, in any charset; a body a decoder refuses: too deep, a number too
    long) is the platform's or a proxy's trouble, for every target at once: it raises
    ``TransientError`` (retried within a poll interval, as a 5xx), never the decoder's
    ``ValueError`` (a target's own error, backed off for up to an hour)."""
    try:
        return response.json()
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError too
        raise TransientError(f"{what}: not JSON") from None


MAX_API_BYTES = 20_000_000
"""The largest answer read from a platform's API (a page of 100 Reddit posts or YouTube
threads, 20 Telegram posts, 1,000 Hacker News hits is a few MB at most)."""


READ_DEADLINE_S = 60.0
"""The longest a body is read for, all of it. The client's timeout bounds each read, not
the whole: a server that sends a few bytes every few seconds (broken, or hostile) held a
poll, and every target polled after it, for as long as it liked (at 10 s a read and a few
bytes each, hours for a few MB). A platform's page arrives in seconds."""


class SlowAnswer(TransientError):
    """A body still arriving after ``READ_DEADLINE_S``: cut, retried as an outage."""


async def read_at_most(
    response: httpx.Response, limit: int, *, deadline_s: float | None = None
) -> bytes | None:
    """The body of a streamed ``response`` (decoded: a gzip bomb is cut too), or None as
    soon as it is over ``limit`` bytes; a declared length over it is not read at all.
    ``SlowAnswer`` when it is still arriving after ``deadline_s`` seconds (default
    ``READ_DEADLINE_S``)."""
    deadline_s = READ_DEADLINE_S if deadline_s is None else deadline_s
    declared = response.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    try:
        async with asyncio.timeout(deadline_s):
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    return None
    except TimeoutError:
        raise SlowAnswer(
            f"an answer still arriving after {deadline_s:.0f} s ({len(body):,} bytes): cut"
        ) from None
    return bytes(body)


_FRAMING = {"content-encoding", "content-length", "transfer-encoding"}


async def get_at_most(
    http: httpx.AsyncClient,
    url: str,
    *,
    what: str,
    limit: int | None = None,
    method: str = "GET",
    **kwargs: Any,
) -> httpx.Response:
    """``http.get(url, **kwargs)`` (or another ``method``) with the body read at most
    ``limit`` bytes (default ``MAX_API_BYTES``): the answer in memory, as ``http.get``
    gives it; one over the limit is ``TransientError`` (the platform's trouble, retried)."""
    limit = MAX_API_BYTES if limit is None else limit
    async with http.stream(method, url, **kwargs) as streamed:
        try:
            body = await read_at_most(streamed, limit)
        except SlowAnswer as exc:
            raise SlowAnswer(f"{what}: {exc}") from None
    if body is None:
        raise TransientError(f"{what}: an answer larger than {limit:,} bytes, not read")
    headers = [(k, v) for k, v in streamed.headers.multi_items() if k.lower() not in _FRAMING]
    return httpx.Response(
        streamed.status_code, headers=headers, content=body, request=streamed.request
    )
