"""Goal: Schemathesis against the OpenAPI schema finds no 5xx on any generated request.

The embedded API (SQLite in ``tmp_path``, a key for every role) is seeded with incidents and
templates, then Schemathesis loads ``/openapi.json`` from the ASGI app in-process and sends
schema-conforming and schema-violating requests to every operation, as admin (who passes every
role check) and as viewer (who is refused most mutations). Only ``not_a_server_error`` is
checked: the goal is "a clear 4xx, never a 500", not that every response matches the schema.
Bounded and derandomized, so the run is the same each time.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.errors import InvalidSchema
from schemathesis.core.result import Err, Ok
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.schemas import APIOperation

from core.clock import ManualClock
from tests.access_support import key_headers, make_template, open_incident, role_api, role_app

Operation = APIOperation[Any, Any, Any, Any]
EXAMPLES = {"admin": 25, "viewer": 8}
FUZZ_SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: the failure names its request
    suppress_health_check=list(HealthCheck),
)


async def _seed(tmp_path: Path, clock: ManualClock) -> None:
    """Rows for the generated ids to hit: small ids exist, so handlers run past their 404s."""
    async with role_api(tmp_path, clock) as (_, runtime):
        for until in ("approved", "in_review", "draft", "retired"):
            await make_template(runtime, clock, until=until)
        for tier in (1, 2, 3):
            await open_incident(runtime, clock, tier=tier)
        await open_incident(runtime, clock, drill=True)


def _fuzz(operation: Operation, role: str, seen: Counter[int]) -> str | None:
    """Run one operation's generated cases; the first 5xx as a message, or None."""
    strategy = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @settings(FUZZ_SETTINGS, max_examples=EXAMPLES[role])
    @given(case=strategy)
    def run(case: schemathesis.Case[Operation]) -> None:
        response = case.call_and_validate(headers=key_headers(role), checks=[not_a_server_error])
        seen[response.status_code] += 1

    try:
        run()
    except Exception as exc:  # a failed check, or the app raising through the transport
        notes = "\n".join(getattr(exc, "__notes__", []))  # Schemathesis adds a curl line
        return f"{role} {operation.label}: {type(exc).__name__}: {exc}\n{notes}"
    return None


def _ok(result: Ok[Operation] | Err[InvalidSchema]) -> Operation:
    if isinstance(result, Err):
        raise result.err()  # an operation Schemathesis cannot read is a broken schema
    return result.ok()


def test_no_5xx_on_any_generated_request(tmp_path: Path, clock: ManualClock) -> None:
    asyncio.run(_seed(tmp_path, clock))
    _, app = role_app(tmp_path, clock)  # the same database file, started by Schemathesis
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [_ok(result) for result in schema.get_all_operations()]
        assert len(operations) >= 40, [op.label for op in operations]  # the schema was read
        seen: Counter[int] = Counter()
        failures = [
            failure
            for role in EXAMPLES
            for operation in operations
            if (failure := _fuzz(operation, role, seen)) is not None
        ]
    finally:
        shutdown_lifespans()
    assert not failures, "\n\n".join(failures)
    assert {200, 403, 404, 422} <= set(seen), seen  # the requests reached the handlers
