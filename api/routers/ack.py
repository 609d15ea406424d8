"""Ack links: ``GET /ack/{token}`` shows a confirm page, ``POST /ack/{token}`` acknowledges.

The token is the credential (see ``alerts.acklinks``), so no API key is asked for. Every
answer is a small HTML page: text is escaped, nothing is loaded from elsewhere (a strict
Content-Security-Policy), the page is never cached and never leaks the URL as a referrer.
A forged token gets 403, an expired or used one 410, a resolved, closed or merged incident
409 (the confirm page offers no button then; a merge names the incident it kept, which the
link never acknowledges: it was minted for the merged one).

Every page speaks the language of the channel the link was sent to (its ``language``:
``en`` or ``zh``, ``alerts.notifiers.i18n``); a link whose channel is no longer configured
gets English. A forged token (or ack links off) names no channel: its page says it in
English, then in Chinese.
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
from alerts.notifiers.i18n import English, phrases
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


_BOTH = (phrases("en"), phrases("zh"))
"""The languages of a page for a token that names no channel."""


def page(
    status: int,
    title: str,
    *paragraphs: str,
    form: bool = False,
    ph: English | None = None,
    chinese: tuple[str, ...] = (),
) -> HTMLResponse:
    """An HTML page in ``ph``'s language (English by default); ``title``, ``paragraphs`` and
    ``chinese`` (paragraphs added in Chinese, on an English page) are plain text (escaped
    here)."""
    ph = ph or phrases("en")
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    body += "".join(f'<p lang="zh-CN">{html.escape(p)}</p>' for p in chinese)
    if form:
        body += f'<form method="post"><button type="submit">{html.escape(ph.ack)}</button></form>'
    document = (
        f'<!DOCTYPE html><html lang="{ph.html_lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} - crisiswatch</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(document, status_code=status, headers=_HEADERS)


def _phrases(runtime: Runtime, channel: str) -> English:
    """The wording of ``channel``'s language; English when it is no longer configured."""
    config = runtime.settings.alerts.channels.get(channel)
    return phrases(config.language if config is not None else "en")


_ERROR_TEXTS = {
    "off": ("ack_off_title", "ack_off"),
    "forged": ("ack_forged_title", "ack_forged"),
    "expired": ("ack_expired_title", "ack_expired"),
    "used": ("ack_used_title", "ack_used"),
}


def _error(runtime: Runtime, exc: acklinks.AckLinkError) -> HTMLResponse:
    runtime.metrics.inbound_refused.labels("ack", exc.reason).inc()
    names = _ERROR_TEXTS.get(exc.reason)
    if names is None:  # a reason without wording: its own English text
        return page(exc.status, exc.title, exc.detail)
    title, detail = names
    if exc.channel is None:  # nothing is known about the link: both languages
        en, zh = _BOTH
        return page(
            exc.status,
            f"{getattr(en, title)} / {getattr(zh, title)}",
            getattr(en, detail),
            chinese=(getattr(zh, detail),),
        )
    ph = _phrases(runtime, exc.channel)
    return page(exc.status, getattr(ph, title), getattr(ph, detail), ph=ph)


def _nothing_to_acknowledge(incident: Incident, ph: English) -> HTMLResponse:
    """The 409 page of a resolved, closed or merged incident."""
    if incident.merged_into_id is not None:
        why = ph.ack_merged(incident.id, incident.merged_into_id)
    else:
        why = ph.ack_finished(incident.id, incident.status)
    return page(409, ph.ack_nothing_title, why, ph=ph)


@router.get("/{token}", response_class=HTMLResponse)
async def confirm(token: str, request: Request, session: Session) -> HTMLResponse:
    runtime: Runtime = request.app.state.runtime
    try:
        row = await acklinks.look_up(
            session, runtime.settings.ack_links, token, runtime.clock.now()
        )
    except acklinks.AckLinkError as exc:
        return _error(runtime, exc)
    ph = _phrases(runtime, row.channel)
    incident = await session.get(Incident, row.incident_id)
    if incident is None:
        return page(404, ph.ack_not_found_title, ph.ack_not_found(row.incident_id), ph=ph)
    if incident.status in FINISHED:  # a button that could only fail: none
        return _nothing_to_acknowledge(incident, ph)
    return page(
        200,
        ph.ack_confirm_title(incident.id),
        ph.ack_summary(incident.drill, incident.tier, incident.title),
        ph.ack_status(incident.status),
        ph.ack_as(row.recipient),
        form=True,
        ph=ph,
    )


@router.post("/{token}", response_class=HTMLResponse)
@audit.audited("incident.acknowledge", "incident")
async def acknowledge(token: str, request: Request, session: Session) -> HTMLResponse:
    runtime: Runtime = request.app.state.runtime
    incident_id: int | None = None
    who: Principal | None = None  # the link's recipient, once the token is good
    ph = phrases("en")  # the link's channel's, once the token is good
    try:
        row = await acklinks.redeem(session, runtime.settings.ack_links, token, runtime.clock.now())
        ph = _phrases(runtime, row.channel)
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
        gone = str(exc) if ph.language == "en" else ph.ack_not_found(exc.incident_id)
        return page(404, ph.ack_not_found_title, gone, ph=ph)
    except service.InvalidTransition as exc:
        await session.rollback()  # the link stays unused
        if who is not None and incident_id is not None and runtime.sessions is not None:
            await audit.record_refusal(
                runtime.sessions, who, "incident.acknowledge", "incident", incident_id,
                outcome="conflict", detail=str(exc), at=runtime.clock.now(),
            )  # fmt: skip
        finished = await session.get(Incident, incident_id) if incident_id is not None else None
        if finished is None:  # gone meanwhile
            why = str(exc) if incident_id is None else ph.ack_not_found(incident_id)
            return page(409, ph.ack_nothing_title, why, ph=ph)
        return _nothing_to_acknowledge(finished, ph)
    return page(
        200,
        ph.ack_done_title(incident.id),
        ph.ack_done(await _actor(session, incident, ph)),
        ph=ph,
    )


async def _actor(session: AsyncSession, incident: Incident, ph: English) -> str | None:
    """Who acknowledged ``incident``, in ``ph``'s words when it was through an ack link
    (this one, or another channel's before it); any other name as it is."""
    by = incident.acked_by
    link = await acklinks.acknowledged_through(session, incident.id, by)
    if by is None or link is None:
        return by
    return ph.ack_link_actor(by, link.recipient, link.channel)
