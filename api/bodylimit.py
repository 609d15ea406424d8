"""A cap on request bodies, enforced while they arrive (an ASGI middleware).

Starlette reads a body whole into memory on the first ``request.body()``, and nothing
before the endpoint looks at its size: a client could send gigabytes, with or without a
``Content-Length`` (chunked), before any signature or key was checked. This middleware
answers 413 at once for a declared length over the cap, and counts the bytes of every
body as the application reads them: past the cap the read fails with a 413
``HTTPException``, which the application's exception handling turns into the response
(the endpoint never sees the body). The rest of the body is not read.

Caps (``limit_for``): the webhook's ``listener.webhook.max_body_bytes`` for signed
ingestion, ``api.max_body_bytes`` for every other route.

Every refusal is counted, ``crisiswatch_inbound_refused_total{endpoint, reason="too_large"}``
(``endpoint``: the route family, ``endpoint_of``, never the raw path), and logged: the
first at once, then at most one line per ``LOG_INTERVAL_S`` with how many were refused
meanwhile, by endpoint (a flood of large bodies is not a flood of log lines).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable

from fastapi import HTTPException, status
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.metrics import Metrics

log = logging.getLogger(__name__)

LOG_INTERVAL_S = 60.0
"""At most one log line of refused bodies per this many seconds."""


def too_large(limit: int, size: str | None = None) -> str:
    told = f"body is {size} bytes" if size else "body is too large"
    return f"{told}; at most {limit} bytes per request"


class RefusalLog:
    """Refused bodies, logged at a rate an operator can read: the first at once, then at
    most one line per ``interval_s`` (on the next refusal after it) with the count of
    those refused meanwhile, by endpoint."""

    def __init__(
        self, interval_s: float = LOG_INTERVAL_S, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s, self.monotonic = interval_s, monotonic
        self._last: float | None = None
        self._pending: Counter[str] = Counter()

    def refused(self, endpoint: str, limit: int, size: str | None, client: str) -> None:
        self._pending[endpoint] += 1
        now = self.monotonic()
        if self._last is not None and now - self._last < self.interval_s:
            return
        counts = ", ".join(f"{e}: {n}" for e, n in sorted(self._pending.items()))
        total = self._pending.total()
        log.warning(
            "413: %d request(s) refused for a body over the cap%s (%s); the last: %s from "
            "%s, %s, at most %d bytes",
            total,
            "" if self._last is None else f" in the last {now - self._last:.0f} s",
            counts,
            endpoint,
            client,
            f"{size} bytes declared" if size else "sent past the cap",
            limit,
        )
        self._last = now
        self._pending.clear()


class BodyLimit:
    def __init__(
        self,
        app: ASGIApp,
        limit_for: Callable[[str], int],
        endpoint_of: Callable[[str], str] = lambda path: "other",
        metrics: Metrics | None = None,
        refusals: RefusalLog | None = None,
    ) -> None:
        self.app = app
        self.limit_for = limit_for
        self.endpoint_of = endpoint_of
        self.metrics = metrics
        self.refusals = refusals or RefusalLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            self._refused(scope, limit, str(declared))
            await _refuse(send, too_large(limit, str(declared)))
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    self._refused(scope, limit, None)
                    raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=too_large(limit))
            return message

        await self.app(scope, counted, send)

    def _refused(self, scope: Scope, limit: int, size: str | None) -> None:
        endpoint = self.endpoint_of(scope.get("path", ""))
        if self.metrics is not None:
            self.metrics.inbound_refused.labels(endpoint, "too_large").inc()
        client = scope.get("client")
        self.refusals.refused(endpoint, limit, size, str(client[0]) if client else "?")


def route_families(paths: Iterable[str]) -> Callable[[str], str]:
    """``endpoint_of`` for an app of routes at ``paths``: a path's first segment when a
    route starts with it (``/incidents/7/ack`` -> ``incidents``), else ``other``: a
    bounded set of label values, whatever paths clients send."""
    known = frozenset(f for f in (_first_segment(p) for p in paths) if f and "{" not in f)
    return lambda path: first if (first := _first_segment(path)) in known else "other"


def _first_segment(path: str) -> str:
    return path.lstrip("/").split("/", 1)[0]


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            plain = text.isascii() and text.isdigit() and len(text) <= 18  # int() refuses 4,300+
            return int(text) if plain else None
    return None


async def _refuse(send: Send, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status.HTTP_413_CONTENT_TOO_LARGE,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),  # the unread body stays unread
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
