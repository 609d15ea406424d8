"""The Slack app's interactivity endpoint: Ack/Resolve buttons on crisiswatch alerts.

Followed: Slack docs, "Verifying requests from Slack" (``X-Slack-Signature`` is
``v0=<hex HMAC-SHA256(signing secret, f"v0:{X-Slack-Request-Timestamp}:{raw body}")>``;
refuse timestamps more than five minutes away, against replays), "Handling user
interaction" (the request is ``application/x-www-form-urlencoded`` with one field,
``payload``, holding JSON; answer 200 within 3 s) and the ``block_actions`` payload
reference (``type``, ``user`` {id, username, name}, ``actions`` [{action_id, value}]).

Buttons (``alerts.notifiers.slack``): ``crisiswatch_ack`` / ``crisiswatch_resolve`` with the
incident id as value. The Slack user becomes the actor (``slack:<username>``). A signed
request acts at most once: within its five minutes a captured click sent again acted again
(an Ack replayed after the incident was reopened acknowledged it anew), so each one that
acts is remembered first (``api.seen_requests``, shared by every replica) and a second
one is refused, logged and counted (``inbound_refused{endpoint="slack",reason="replay"}``).
Answers: 401 bad, stale or replayed signature, 400 malformed payload, 404 when no signing
secret is set;
an unknown incident 404 and a resolved one 409 (``api.app``). Other interaction types and
actions are acknowledged with an empty 200 (Slack retries anything else).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from alerts import incidents as service
from alerts.notifiers.slack import ACK_ACTION, RESOLVE_ACTION
from api import audit
from api.auth import Principal
from api.deps import db_session
from api.runtime import Runtime
from api.seen_requests import first_use
from core.events import storable

router = APIRouter(route_class=audit.AuditedRoute, prefix="/slack", tags=["slack"])
log = logging.getLogger(__name__)

Session = Annotated[AsyncSession, Depends(db_session, scope="function")]
MAX_BODY = 64 * 1024
VERSION = "v0"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    base = f"{VERSION}:{timestamp}:".encode() + body
    return f"{VERSION}=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verify(
    secret: str, timestamp: str | None, body: bytes, given: str | None, *, now: float, max_age: int
) -> str | None:
    """None when the request is Slack's and fresh; otherwise why not."""
    if not timestamp or not given:
        return "missing X-Slack-Request-Timestamp or X-Slack-Signature"
    plain = timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 18
    if not plain or abs(now - int(timestamp)) > max_age:
        return "stale or invalid X-Slack-Request-Timestamp"
    expected = signature(secret, timestamp, body).encode()
    if not hmac.compare_digest(expected, given.strip().encode("ascii", "replace")):
        return "bad X-Slack-Signature"
    return None


def _bad(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_400_BAD_REQUEST, detail=detail)


def _payload(body: bytes) -> dict[str, Any]:
    try:
        fields = parse_qs(body.decode(), strict_parsing=True)
        data = json.loads(fields["payload"][0])
    except (UnicodeDecodeError, ValueError, KeyError, IndexError):
        raise _bad("expected a form body with a JSON 'payload' field") from None
    except RecursionError:
        raise _bad("the JSON 'payload' is nested too deeply") from None
    if not isinstance(data, dict):
        raise _bad("payload must be a JSON object")
    return data


def _actor(payload: dict[str, Any]) -> str:
    user = payload.get("user")
    if not isinstance(user, dict):
        raise _bad("payload.user is missing")
    name = user.get("username") or user.get("name") or user.get("id")
    if not isinstance(name, str) or not name.strip():
        raise _bad("payload.user has no id or name")
    name = storable(name)  # a lone surrogate cannot be stored nor shown (it was a 500)
    return f"slack:{' '.join(name.split())}"[:255]


async def _first_use(runtime: Runtime, given: str, timestamp: int) -> None:
    """Remember this signed request until its timestamp is out of the window; 401 when it
    was already taken (a replay). Committed before acting: a request whose action then
    fails (404, 409) was used too, and is not to act later."""
    assert runtime.sessions is not None  # db_session answered 503 otherwise
    max_age = runtime.settings.slack_app.max_age
    fresh = await first_use(
        runtime.sessions,
        "slack",
        given.strip(),
        now=runtime.clock.now(),
        expires_at=datetime.fromtimestamp(timestamp + max_age + 1, UTC),
    )
    if not fresh:
        runtime.metrics.inbound_refused.labels("slack", "replay").inc()
        log.warning("slack: a signed request was sent again (timestamp %d): refused", timestamp)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="this signed Slack request was already taken: a replay is refused",
        )


@router.post("/interactions", status_code=200)
@audit.audited("slack.action", "incident")
async def interactions(request: Request, session: Session) -> Response:
    runtime: Runtime = request.app.state.runtime
    config = runtime.settings.slack_app
    if config.signing_secret is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Slack interactivity is not set up")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail="request body too large")
    timestamp = request.headers.get("x-slack-request-timestamp")
    problem = verify(
        config.signing_secret.get_secret_value(),
        timestamp,
        body,
        request.headers.get("x-slack-signature"),
        now=runtime.clock.now().timestamp(),
        max_age=config.max_age,
    )
    if problem is not None:
        runtime.metrics.inbound_refused.labels("slack", "signature").inc()
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=problem)
    assert timestamp is not None  # verify refused a request without one
    payload = _payload(body)
    if payload.get("type") != "block_actions":
        return Response(status_code=200)
    actions = payload.get("actions")
    ours = [
        a
        for a in (actions if isinstance(actions, list) else [])
        if isinstance(a, dict) and a.get("action_id") in (ACK_ACTION, RESOLVE_ACTION)
    ]
    if not ours:
        return Response(status_code=200)
    action = ours[0]
    value = action.get("value")
    if (
        not isinstance(value, str)
        or not (value.isascii() and value.isdigit())
        or not 1 <= int(value) < 2**31
    ):
        raise _bad("the button's value is not an incident id")
    who = Principal(_actor(payload), "slack")
    ack = action["action_id"] == ACK_ACTION
    done = "incident.acknowledge" if ack else "incident.resolve"
    audit.acting(request, who, audit.Attempt(done, "incident", value))  # a 409 is audited
    await _first_use(runtime, request.headers["x-slack-signature"], int(timestamp))
    before = await audit.incident_state(session, int(value))
    change = service.acknowledge if ack else service.resolve
    await change(
        session, int(value), who.name, runtime.clock, metrics=runtime.metrics, note="Slack button"
    )
    await audit.record_incident_change(
        session, who, done, int(value), before, at=runtime.clock.now()
    )
    return Response(status_code=200)
