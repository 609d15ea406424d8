"""Short, clear descriptions of why a payload is not a valid Mention.

Never echoes the input (mention text is written by strangers and may be large or hostile):
only the field path, pydantic's message, and what to send instead where pydantic's words
would not tell a sender (an id's regular expression, a string's length in "items").
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

_SHOWN = 3

_ID_HINT = (
    'must be a string "<source>:<native id>", 3 to 512 characters without spaces or control '
    'characters (such as "weibo:4875123")'
)
_ID_ERRORS = frozenset(
    {"string_type", "string_pattern_mismatch", "string_too_short", "string_too_long"}
)
_TIME_FIELDS = frozenset({"created_at", "edited_at"})
_TIME_HINT = (
    "send ISO 8601 with an offset (2026-01-05T09:00:00Z, 2026-01-05T17:00:00+08:00) or unix "
    "seconds or milliseconds"
)


def _message(err: Any) -> str:
    loc = err["loc"]
    kind: str = err["type"]
    msg: str = err["msg"]
    if loc == ("id",) and kind in _ID_ERRORS:
        return _ID_HINT
    ctx = err.get("ctx") or {}
    if kind == "too_long" and "actual_length" in ctx and "max_length" in ctx:
        # pydantic says "items" for a string constrained after a validator (the text)
        return f"at most {ctx['max_length']} characters (not {ctx['actual_length']})"
    if loc and loc[-1] in _TIME_FIELDS and (kind.startswith("datetime") or "timezone" in msg):
        return f"{msg}; {_TIME_HINT}"
    return msg


def describe_errors(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    parts = []
    for err in errors[:_SHOWN]:
        loc = ".".join(str(p) for p in err["loc"]) or "(item)"
        parts.append(f"{loc}: {_message(err)}")
    more = f" (+{len(errors) - _SHOWN} more)" if len(errors) > _SHOWN else ""
    return "; ".join(parts) + more


def is_json_error(exc: ValidationError) -> bool:
    errors = exc.errors(include_url=False, include_input=False)
    return bool(errors) and errors[0]["type"] == "json_invalid"
