"""Request-scoped dependencies."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import HTTPException, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from api.runtime import Runtime
from core.db import unit_of_work


async def db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One unit of work per request: commit on success, roll back on error."""
    runtime: Runtime = request.app.state.runtime
    if runtime.sessions is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="database not ready")
    async with unit_of_work(runtime.sessions) as session:
        yield session
