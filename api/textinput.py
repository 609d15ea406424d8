"""Text a request may not carry: NUL characters, anywhere the API stores or queries text.

PostgreSQL's text type cannot hold NUL (U+0000): a query parameter or a JSON string with
one reached the database and came back as a driver error, a 500. SQLite stores it, so the
same request answered differently by database. Both now get a 422 naming where the NUL
is, before the endpoint runs (a router dependency). The ingest webhook is not behind it:
mention text from platforms has its NUL replaced by U+FFFD (``core.events.Text``), not
refused.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import HTTPException, Request

NUL = "\x00"


def _nul_path(value: Any, where: str) -> str | None:
    """Where in a decoded JSON value a string holds a NUL (keys included), else None."""
    if isinstance(value, str):
        return where if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _nul_path(key, where) or _nul_path(item, f"{where}.{key}")
            if found:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _nul_path(item, f"{where}[{i}]")
            if found:
                return found
    return None


def _refuse(where: str) -> HTTPException:
    return HTTPException(
        status_code=422,
        detail=f"{where} holds a NUL character (\\u0000), which cannot be stored: remove it",
    )


async def refuse_nul(request: Request) -> None:
    """422 when a path or query parameter, or a string in a JSON body, holds a NUL."""
    if NUL in request.url.path or "%00" in request.url.path:
        raise _refuse("the path")
    for name, value in request.query_params.multi_items():
        if NUL in name or NUL in value:
            raise _refuse(f"query parameter {name.replace(NUL, '')!r}")
    if request.method in ("GET", "HEAD", "DELETE", "OPTIONS"):
        return
    body = await request.body()  # cached: the endpoint reads the same bytes
    if b"\\u0000" not in body and b"\x00" not in body:
        # a JSON string carries NUL only escaped (``\\u`` is lowercase); a UTF-16 or UTF-32
        # body (``json.loads`` reads them) spells the escape with zero bytes between
        return
    try:
        decoded = json.loads(body)
    except (ValueError, RecursionError):  # nested too deep for the decoder: not JSON either
        return  # not JSON: the endpoint's own validation answers
    try:
        where = _nul_path(decoded, "body")
    except RecursionError:
        raise HTTPException(status_code=422, detail="the body is nested too deeply") from None
    if where:
        raise _refuse(where)
