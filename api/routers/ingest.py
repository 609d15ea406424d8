"""``POST /ingest/mentions``: HMAC-signed batches of Mentions pushed by other systems."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse

from api.runtime import Runtime
from listener.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookAuthError,
    WebhookPayloadError,
    parse_batch,
    response_body,
    verify_signature,
)

router = APIRouter(prefix="/ingest", tags=["ingest"])
log = logging.getLogger(__name__)


@router.post(
    "/mentions",
    responses={
        200: {"description": "processed; per-item results and errors in the body"},
        401: {"description": "missing, stale or wrong signature"},
        404: {"description": "webhook ingestion is not enabled"},
        413: {"description": "body or batch too large"},
        422: {"description": "not a batch of mentions, or every item invalid"},
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
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=str(exc)) from exc
    try:
        mentions, errors = parse_batch(
            body, cfg.max_items, max_body_bytes=cfg.max_body_bytes, now=now
        )
    except WebhookPayloadError as exc:
        raise HTTPException(exc.status, detail=str(exc)) from exc
    if errors:  # answered to the sender, and counted and logged for the operator
        for error in errors:
            runtime.metrics.mentions_rejected.labels("webhook", error.reason).inc()
        log.warning(
            "webhook: %d of %d item(s) refused (first: item %d: %s)",
            len(errors),
            len(errors) + len(mentions),
            errors[0].index,
            errors[0].message[:200],
        )
    report = await runtime.listener.ingest(mentions)
    content: dict[str, Any] = response_body(report, errors)
    if errors and not mentions:
        return JSONResponse(content, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    return JSONResponse(content)
