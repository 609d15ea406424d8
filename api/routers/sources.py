"""``GET /sources``: what each kind of source needs and covers, and the health of the
sources this process runs (state, last event, lag, errors)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from api.auth import Principal, require
from api.runtime import Runtime
from listener.sources.catalogue import CATALOGUE

router = APIRouter(tags=["sources"])


@router.get("/sources")
async def list_sources(
    request: Request, _: Annotated[Principal, Depends(require("viewer"))]
) -> dict[str, Any]:
    runtime: Runtime = request.app.state.runtime
    running: list[dict[str, object]] = []
    if runtime.listener is not None:
        for source in runtime.listener.sources:
            health = getattr(source, "health", None)
            if health is not None:
                running.append(health.as_dict())
            else:
                running.append({"name": source.name, "kind": source.name, "state": "running"})
    return {"running": running, "catalogue": [entry.as_dict() for entry in CATALOGUE]}
