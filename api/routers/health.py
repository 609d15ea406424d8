"""Liveness, readiness (no key needed) and Prometheus metrics (open, or behind
``api.metrics_token`` when it is set: ``api.auth.check_metrics_token``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.auth import check_metrics_token
from api.runtime import Runtime

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    problems = await runtime.check_ready()
    if problems:
        return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ready", "roles": sorted(runtime.roles)})


async def metrics_access(request: Request) -> None:
    """Every process's ``/metrics``: 401 without ``api.metrics_token`` when one is set."""
    runtime: Runtime = request.app.state.runtime
    await check_metrics_token(request, runtime.settings.api.metrics_token)


@router.get(
    "/metrics",
    dependencies=[Depends(metrics_access)],
    response_class=PlainTextResponse,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}},
        401: {"description": "api.metrics_token is set and the request lacks it"},
    },
)
async def metrics(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)
