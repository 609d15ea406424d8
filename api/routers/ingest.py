"""``POST /ingest/mentions``: HMAC-signed batches of Mentions pushed by other systems.

Every refusal is answered (a 4xx naming what is wrong; 503 with ``Retry-After`` while the
bus cannot take the batch), logged, and counted: a refused item in
``crisiswatch_mentions_rejected{source="webhook"}`` once the answer naming it is sent, a
request refused as a whole in ``crisiswatch_inbound_refused{endpoint="ingest"}``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse

from api.runtime import Runtime
from listener.dedup import InFlight, delivery_key
from listener.service import PublishFailed
from listener.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookAuthError,
    WebhookPayloadError,
    check_encoding,
    parse_batch,
    refused_by_bus,
    response_body,
    verify_signature,
)

router = APIRouter(prefix="/ingest", tags=["ingest"])
log = logging.getLogger(__name__)


@router.post(
    "/mentions",
    responses={
        200: {"description": "processed; per-item results and errors in the body"},
        400: {"description": "the body is not JSON"},
        401: {"description": "missing, stale or wrong signature"},
        404: {"description": "webhook ingestion is not enabled"},
        413: {"description": "body or batch too large"},
        415: {"description": "a Content-Encoding (send the body uncompressed)"},
        422: {"description": "not a batch of mentions, or every item invalid"},
        503: {"description": "the bus cannot take the batch now: retry after Retry-After"},
    },
)
async def ingest_mentions(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    cfg = runtime.settings.listener.webhook
    if not cfg.enabled or cfg.secret is None or runtime.listener is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail="webhook ingestion is disabled: set listener.webhook.enabled and "
            "listener.webhook.secret",
        )
    body = await request.body()  # at most max_body_bytes: api.bodylimit answers 413 beyond
    now = runtime.clock.now()
    try:
        verify_signature(
            cfg.secret,
            request.headers.get(TIMESTAMP_HEADER),
            request.headers.get(SIGNATURE_HEADER),
            body,
            now,
            max_skew_seconds=cfg.max_skew_seconds,
        )
    except WebhookAuthError as exc:
        raise _refused(runtime, status.HTTP_401_UNAUTHORIZED, "signature", str(exc)) from exc
    try:
        check_encoding(request.headers.get("content-encoding"))
        mentions, errors = parse_batch(
            body, cfg.max_items, max_body_bytes=cfg.max_body_bytes, now=now
        )
    except WebhookPayloadError as exc:
        raise _refused(runtime, exc.status, exc.reason, str(exc)) from exc
    # a mention another request is publishing now waits for that one's outcome: answered
    # "duplicate" at once, its sender would drop it though that publication may fail
    in_flight = _in_flight(request)
    keys = [delivery_key(mention) for mention in mentions]
    if in_flight.holds(keys):
        log.info("webhook: a mention of this batch is being published by another request: waiting")
    try:
        async with in_flight.claim(keys):
            report = await runtime.listener.ingest(mentions)
    except PublishFailed as exc:  # answered 503 with Retry-After (api.app); nothing kept
        _refused(runtime, status.HTTP_503_SERVICE_UNAVAILABLE, "bus", str(exc))
        raise
    # a mention the bus refused for its size is refused alone (it never can be taken:
    # answered 503, its batch was sent again for ever); the rest is published
    parsed = len(errors) + len(mentions)
    errors = refused_by_bus(report, errors)
    if errors:  # answered to the sender, and counted and logged for the operator
        for error in errors:
            runtime.metrics.mentions_rejected.labels("webhook", error.reason).inc()
        log.warning(
            "webhook: %d of %d item(s) refused (first: item %d: %s)",
            len(errors),
            parsed,
            errors[0].index,
            errors[0].message[:200],
        )
    content: dict[str, Any] = response_body(report, errors)
    if errors and len(errors) == parsed:  # every item refused
        return JSONResponse(content, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    return JSONResponse(content)


def _refused(runtime: Runtime, code: int, reason: str, detail: str) -> HTTPException:
    """Count and log a request refused as a whole; the exception that answers it."""
    runtime.metrics.inbound_refused.labels("ingest", reason).inc()
    log.warning("webhook: request refused, %d (%s): %s", code, reason, detail[:300])
    return HTTPException(code, detail=detail)


def _in_flight(request: Request) -> InFlight:
    """The application's record of the mentions being published by webhook requests."""
    state = request.app.state
    found = getattr(state, "ingest_in_flight", None)
    if not isinstance(found, InFlight):
        found = state.ingest_in_flight = InFlight()
    return found
