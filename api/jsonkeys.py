"""JSON bodies may not give a key twice.

Python's JSON reader keeps the last of a key given twice, silently:
``POST /incidents/7/merge`` with ``{"into": 99999, "into": 2}`` merged incident 7 into
incident 2 (irreversibly) while a reader of the request, a proxy's log or a review of it,
saw ``99999`` first. RFC 8259 leaves such an object's meaning to the reader, and readers
disagree (some keep the first), so the API refuses it: a 422 naming the key and where it
is, before the endpoint runs (a router dependency, ``refuse_duplicate_keys``), for every
JSON body of the API's routes, nested objects included.

Only what FastAPI reads as JSON is looked at (no ``Content-Type``, ``application/json``,
``application/*+json``): a form (an ack link's button, a Slack click) is not, and a body
that is not JSON at all is left to the endpoint's own validation.
"""

from __future__ import annotations

import email.message
import json
from typing import Any

from fastapi import HTTPException, Request, status

_NO_BODY = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})


class DuplicateKey(ValueError):
    """A JSON object gives ``key`` twice."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``' ``object_pairs_hook``: the object, unless a key repeats."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise DuplicateKey(key)
        found[key] = value
    return found


def duplicate_key(body: bytes | str) -> str | None:
    """The first key given twice in an object of the JSON document ``body``; None when
    none is, or when ``body`` is not JSON (nor JSON nested too deeply to be read)."""
    try:
        json.loads(body, object_pairs_hook=_pairs)
    except DuplicateKey as exc:
        return exc.key
    except (ValueError, RecursionError):  # not JSON: the endpoint's validation answers
        return None
    return None


def _read_as_json(content_type: str | None) -> bool:
    """Whether FastAPI reads a body of ``content_type`` as JSON (``fastapi.routing``)."""
    if not content_type:
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


async def refuse_duplicate_keys(request: Request) -> None:
    """422 when the request's JSON body gives a key twice in one of its objects."""
    if request.method in _NO_BODY or not _read_as_json(request.headers.get("content-type")):
        return
    body = await request.body()  # cached: the endpoint reads the same bytes
    if not body:
        return
    key = duplicate_key(body)
    if key is not None:
        shown = json.dumps(key, ensure_ascii=True)[:100]  # (a lone surrogate, a NUL: escaped)
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"the JSON body gives the key {shown} twice in one object: which one was "
            "meant cannot be told; send it once",
        )
