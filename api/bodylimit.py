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
"""

from __future__ import annotations

import json
from collections.abc import Callable

from fastapi import HTTPException, status
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def too_large(limit: int, size: str | None = None) -> str:
    told = f"body is {size} bytes" if size else "body is too large"
    return f"{told}; at most {limit} bytes per request"


class BodyLimit:
    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, too_large(limit, str(declared)))
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=too_large(limit))
            return message

        await self.app(scope, counted, send)


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
