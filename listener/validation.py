"""Short, clear descriptions of why a payload is not a valid Mention.

Never echoes the input (mention text is written by strangers and may be large or hostile):
only the field path and pydantic's message.
"""

from __future__ import annotations

from pydantic import ValidationError

_SHOWN = 3


def describe_errors(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    parts = []
    for err in errors[:_SHOWN]:
        loc = ".".join(str(p) for p in err["loc"]) or "(item)"
        parts.append(f"{loc}: {err['msg']}")
    more = f" (+{len(errors) - _SHOWN} more)" if len(errors) > _SHOWN else ""
    return "; ".join(parts) + more


def is_json_error(exc: ValidationError) -> bool:
    errors = exc.errors(include_url=False, include_input=False)
    return bool(errors) and errors[0]["type"] == "json_invalid"
