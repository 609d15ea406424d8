"""Ack links: ``GET /ack/{token}`` shows a confirm page, ``POST /ack/{token}`` acknowledges.

The token is the credential (see ``alerts.acklinks``), so no API key is asked for. Every
answer is a small HTML page: text is escaped, nothing is loaded from elsewhere (a strict
Content-Security-Policy), the page is never cached and never leaks the URL as a referrer.
A forged token gets 403, an expired or used one 410, a resolved, closed or merged incident
409 (the confirm page offers no button then; a merge names the incident it kept, which the
link never acknowledges: it was minted for the merged one).
"""

from __future__ import annotations

import html
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncSession

from alerts import acklinks
from alerts import incidents as service
from alerts.models import FINISHED, Incident
from api import audit
from api.auth import Principal
from api.deps import db_session
from api.runtime import Runtime

router = APIRouter(route_class=audit.AuditedRoute, prefix="/ack", tags=["ack"])

Session = Annotated[AsyncSession, Depends(db_session, scope="function")]

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'",
}
_STYLE = "body{font-family:sans-serif;max-width:36em;margin:3em auto;padding:0 1em}"


def page(status: int, title: str, *paragraphs: str, form: bool = False) -> HTMLResponse:
    """An HTML page; ``title`` and ``paragraphs`` are plain text (escaped here)."""
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    if form:
        body += '<form method="post"><button type="submit">Acknowledge</button></form>'
    document = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} - crisiswatch</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(document, status_code=status, headers=_HEADERS)


def _error(runtime: Runtime, exc: acklinks.AckLinkError) -> HTMLResponse:
    runtime.metrics.inbound_refused.labels("ack", exc.reason).inc()
    return page(exc.status, exc.title, exc.detail)


def _nothing_to_acknowledge(incident: Incident) -> HTMLResponse:
    """The 409 page of a resolved, closed or merged incident."""
    if incident.merged_into_id is not None:
        why = (
            f"Incident {incident.id} was merged into incident {incident.merged_into_id}; "
            "acknowledge that one in the API."
        )
    else:
        why = f"Incident {incident.id} is {incident.status}; there is nothing to acknowledge."
    return page(409, "Nothing to acknowledge", why)


@router.get("/{token}", response_class=HTMLResponse)
async def confirm(token: str, request: Request, session: Session) -> HTMLResponse:
    runtime: Runtime = request.app.state.runtime
    try:
        row = await acklinks.look_up(
            session, runtime.settings.ack_links, token, runtime.clock.now()
        )
    except acklinks.AckLinkError as exc:
        return _error(runtime, exc)
    incident = await session.get(Incident, row.incident_id)
    if incident is None:
        return page(404, "Incident not found", f"Incident {row.incident_id} no longer exists.")
    if incident.status in FINISHED:  # a button that could only fail: none
        return _nothing_to_acknowledge(incident)
    drill = "[DRILL] " if incident.drill else ""
    return page(
        200,
        f"Acknowledge incident #{incident.id}?",
        f"{drill}Tier {incident.tier}: {incident.title}",
        f"Status: {incident.status}.",
        f"You will acknowledge it as {row.recipient}; escalation stops.",
        form=True,
    )


@router.post("/{token}", response_class=HTMLResponse)
@audit.audited("incident.acknowledge", "incident")
async def acknowledge(token: str, request: Request, session: Session) -> HTMLResponse:
    runtime: Runtime = request.app.state.runtime
    incident_id: int | None = None
    who: Principal | None = None  # the link's recipient, once the token is good
    try:
        row = await acklinks.redeem(session, runtime.settings.ack_links, token, runtime.clock.now())
        incident_id = row.incident_id
        who = Principal(acklinks.actor(row), "ack_link")
        before = await audit.incident_state(session, row.incident_id)
        incident = await service.acknowledge(
            session, row.incident_id, who.name, runtime.clock, metrics=runtime.metrics
        )
        await audit.record_incident_change(
            session, who, "incident.acknowledge", incident.id, before, at=runtime.clock.now()
        )
    except acklinks.AckLinkError as exc:
        await session.rollback()
        return _error(runtime, exc)
    except service.IncidentNotFound as exc:
        await session.rollback()
        return page(404, "Incident not found", str(exc))
    except service.InvalidTransition as exc:
        await session.rollback()  # the link stays unused
        if who is not None and incident_id is not None and runtime.sessions is not None:
            await audit.record_refusal(
                runtime.sessions, who, "incident.acknowledge", "incident", incident_id,
                outcome="conflict", detail=str(exc), at=runtime.clock.now(),
            )  # fmt: skip
        finished = await session.get(Incident, incident_id) if incident_id is not None else None
        if finished is None:
            return page(409, "Nothing to acknowledge", str(exc))
        return _nothing_to_acknowledge(finished)
    return page(
        200,
        f"Incident #{incident.id} acknowledged",
        f"Acknowledged by {incident.acked_by}. Escalation has stopped.",
    )
