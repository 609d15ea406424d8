"""FastAPI app factory. The lifespan owns the Runtime (and so every resource)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from alerts.incidents import IncidentNotFound, InvalidTransition
from api.routers import health, incidents, ingest, sources
from api.runtime import Role, Runtime

log = logging.getLogger(__name__)


def create_app(runtime: Runtime) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="crisiswatch",
        version="0.1.0",
        description="Social listening and tiered crisis alerts: incidents, acks, ingestion.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.keyring = runtime.keyring
    app.include_router(health.router)
    if Role.API in runtime.roles:
        app.include_router(incidents.router)
    if Role.LISTENER in runtime.roles:
        app.include_router(ingest.router)
        app.include_router(sources.router)

    @app.exception_handler(IncidentNotFound)
    async def not_found(request: Request, exc: IncidentNotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(InvalidTransition)
    async def conflict(request: Request, exc: InvalidTransition) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": str(exc)})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            status_code=500,
            content={"detail": "internal error; it has been logged"},
        )

    return app
