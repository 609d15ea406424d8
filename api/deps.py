"""Request-scoped dependencies."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import HTTPException, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.models import Incident
from alerts.workflow.service import incident_row
from api.auth import Principal, ensure_visible
from api.runtime import Runtime
from core.db import unit_of_work


async def db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One unit of work per request: commit on success, roll back on error."""
    runtime: Runtime = request.app.state.runtime
    if runtime.sessions is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="database not ready")
    async with unit_of_work(runtime.sessions) as session:
        yield session


async def viewable_incident(session: AsyncSession, who: Principal, incident_id: int) -> Incident:
    """The incident's row (``IncidentNotFound``: 404), once ``who`` may see its watch (403
    otherwise): read before anything of its lists is."""
    incident = await incident_row(session, incident_id)
    ensure_visible(who, incident.watch_id, f"incident {incident_id}")
    return incident
