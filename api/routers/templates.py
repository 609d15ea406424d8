"""Response templates: list, read, create, edit, review (submit/approve/reject/retire), preview.

Who may do what: anyone with a key reads and previews; customer_service, pr, legal and
admin write and submit; only legal approves or rejects (and never a version they wrote);
legal and admin retire. Every change is written to the audit log. Errors: unknown template
or version 404, a transition the status does not allow 409, a template the sandbox refuses
or missing variables 422, every render slot busy 503 with ``Retry-After`` (``api.app`` maps
the domain errors).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response, status
from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.templates import service
from alerts.templates.models import ResponseTemplate, TemplateVersion
from api import audit
from api.auth import Principal, ensure_visible, require, require_any
from api.deps import db_session
from api.runtime import Runtime
from api.schemas import Page
from api.template_schemas import (
    ERRORS,
    LANG_TAG,
    Kind,
    PreviewIn,
    RenderedOut,
    ReviewIn,
    TemplateDetail,
    TemplateIn,
    TemplateOut,
    VersionEditIn,
    VersionOut,
    VersionStatus,
)

router = APIRouter(
    route_class=audit.AuditedRoute, prefix="/templates", tags=["templates"], responses=ERRORS
)

Session = Annotated[AsyncSession, Depends(db_session, scope="function")]
TemplateId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the template's id")]
Number = Annotated[int, Path(ge=1, le=100_000, description="the version number")]
Author = Annotated[Principal, Depends(require_any("customer_service", "pr", "legal", "admin"))]
Legal = Annotated[Principal, Depends(require_any("legal"))]
Retirer = Annotated[Principal, Depends(require_any("legal", "admin"))]
Viewer = Annotated[Principal, Depends(require("viewer"))]
IfMatch = Annotated[
    str | None,
    Header(
        max_length=1000,
        description="the version's etag as you read it: refused (409) when it changed since",
    ),
]


def template_out(template: ResponseTemplate) -> TemplateOut:
    return TemplateOut.model_validate(_fields(template))


def template_detail(template: ResponseTemplate) -> TemplateDetail:
    return TemplateDetail.model_validate(
        {**_fields(template), "versions": [VersionOut.model_validate(v) for v in template.versions]}
    )


def _fields(template: ResponseTemplate) -> dict[str, object]:
    approved = service.current_approved(template)
    latest = template.versions[-1]
    return {
        **{c: getattr(template, c) for c in TemplateOut.model_fields if hasattr(template, c)},
        "approved_version": approved.number if approved else None,
        "latest_version": latest.number,
        "latest_status": latest.status,
    }


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


@router.get("", response_model=Page[TemplateOut])
async def list_templates(
    session: Session,
    _: Viewer,
    kind: Annotated[Kind | None, Query()] = None,
    lang: Annotated[str | None, Query(max_length=16, pattern=LANG_TAG, examples=["zh"])] = None,
    tier: Annotated[
        int | None, Query(ge=0, le=3, description="templates fitting this tier")
    ] = None,
    status_: Annotated[
        VersionStatus | None, Query(alias="status", description="has a version in this status")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Page[TemplateOut]:
    """Templates by name, filtered by kind, language, tier and version status."""
    items, total = await service.list_templates(
        session, kind=kind, lang=lang, tier=tier, status=status_, limit=limit, offset=offset
    )
    return Page[TemplateOut](
        items=[template_out(t) for t in items], total=total, limit=limit, offset=offset
    )


@router.post("", response_model=TemplateDetail, status_code=status.HTTP_201_CREATED)
@audit.audited("template.create", "template")
async def create_template(
    request: Request, session: Session, who: Author, body: TemplateIn
) -> TemplateDetail:
    """A new template; its first version is a draft that legal must review."""
    now = _runtime(request).clock.now()
    template = await service.create_template(
        session,
        name=body.name,
        kind=body.kind,
        lang=body.lang,
        min_tier=body.min_tier,
        max_tier=body.max_tier,
        fmt=body.format,
        body=body.body,
        description=body.description,
        note=body.note,
        actor=who.name,
        now=now,
        metrics=_runtime(request).metrics,
    )
    out = template_detail(template)
    audit.record(
        session, who, "template.create", "template", template.id, at=now,
        after=out.model_dump(mode="json", exclude={"versions", "created_at"}),
    )  # fmt: skip
    return out


@router.get("/{template_id}", response_model=TemplateDetail)
async def get_template(template_id: TemplateId, session: Session, _: Viewer) -> TemplateDetail:
    """A template with every version, oldest first."""
    return template_detail(await service.get_template(session, template_id))


@router.get("/{template_id}/versions/{number}", response_model=VersionOut)
async def get_version(
    template_id: TemplateId, number: Number, session: Session, _: Viewer, response: Response
) -> VersionOut:
    """One version; its ``etag`` is also the ``ETag`` header (for ``If-Match``)."""
    out = VersionOut.model_validate(await service.get_version(session, template_id, number))
    response.headers["ETag"] = out.etag
    return out


@router.patch("/{template_id}/versions/{number}", response_model=VersionOut)
@audit.audited("template.edit", "template_version", "{template_id}/{number}")
async def edit_version(
    request: Request,
    template_id: TemplateId,
    number: Number,
    session: Session,
    who: Author,
    body: VersionEditIn,
    response: Response,
    if_match: IfMatch = None,
) -> VersionOut:
    """Edit a draft in place; editing an approved or retired version makes a new draft
    (answered with its new number). A version in review is refused (409): reject it first.
    With ``If-Match``, a version changed since it was read is refused (409), not
    overwritten."""
    now = _runtime(request).clock.now()
    version, before = await service.edit_version(
        session, template_id, number, body=body.body, note=body.note, actor=who.name, now=now,
        if_match=if_match, metrics=_runtime(request).metrics,
    )  # fmt: skip
    audit.record(
        session, who, "template.edit", "template_version", f"{template_id}/{version.number}",
        at=now, before=before, after=service.snapshot(version),
    )  # fmt: skip
    out = VersionOut.model_validate(version)
    response.headers["ETag"] = out.etag
    return out


async def _transition(
    request: Request,
    session: AsyncSession,
    who: Principal,
    template_id: int,
    number: int,
    action: str,
    note: str | None,
    if_match: str | None,
) -> VersionOut:
    now = _runtime(request).clock.now()
    if action == "approve":
        await _refuse_an_editor(session, who, template_id, number)
    version, before, retired = await service.transition(
        session, template_id, number, action, actor=who.name, now=now, note=note,
        if_match=if_match,
    )  # fmt: skip
    target = f"{template_id}/{number}"
    audit.record(
        session, who, f"template.{action}", "template_version", target, at=now,
        before=before, after=service.snapshot(version),
    )  # fmt: skip
    for other in retired:
        _audit_auto_retire(session, who, other, now)
    return VersionOut.model_validate(version)


async def _refuse_an_editor(
    session: AsyncSession, who: Principal, template_id: int, number: int
) -> None:
    """Four eyes: nobody approves words they wrote. The version keeps only its author and
    last editor (``service.transition`` checks those); the audit log has every edit. Read
    under the template's lock, which the approval then holds."""
    await service.get_template(session, template_id, lock=True)
    edited = await session.scalar(
        select(
            exists().where(
                audit.AuditEntry.action == "template.edit",
                audit.AuditEntry.target_type == "template_version",
                audit.AuditEntry.target_id == f"{template_id}/{number}",
                audit.AuditEntry.actor == who.name,
                audit.AuditEntry.outcome == "ok",  # an edit refused (409) wrote nothing
            )
        )
    )
    if edited:
        raise service.ReviewRefused(
            f"{who.name!r} edited version {number}; another legal reviewer must approve it"
        )


def _audit_auto_retire(
    session: AsyncSession, who: Principal, version: TemplateVersion, now: datetime
) -> None:
    """An approval retires the version approved before it: that change is audited too."""
    after = service.snapshot(version)
    target = f"{version.template_id}/{version.number}"
    audit.record(
        session, who, "template.retire", "template_version", target, at=now,
        before={**after, "status": "approved"}, after=after,
    )  # fmt: skip


Review = Annotated[ReviewIn | None, Body()]


@router.post("/{template_id}/versions/{number}/submit", response_model=VersionOut)
@audit.audited("template.submit", "template_version", "{template_id}/{number}")
async def submit(
    request: Request,
    template_id: TemplateId,
    number: Number,
    session: Session,
    who: Author,
    body: Review = None,
    if_match: IfMatch = None,
) -> VersionOut:
    """Send a draft to legal review (draft -> in_review)."""
    note = body.note if body else None
    return await _transition(request, session, who, template_id, number, "submit", note, if_match)


@router.post("/{template_id}/versions/{number}/approve", response_model=VersionOut)
@audit.audited("template.approve", "template_version", "{template_id}/{number}")
async def approve(
    request: Request,
    template_id: TemplateId,
    number: Number,
    session: Session,
    who: Legal,
    body: Review = None,
    if_match: IfMatch = None,
) -> VersionOut:
    """Legal approves a version in review (in_review -> approved); the template's previously
    approved version is retired. Only a legal key, and not the version's author (403)."""
    note = body.note if body else None
    return await _transition(request, session, who, template_id, number, "approve", note, if_match)


@router.post("/{template_id}/versions/{number}/reject", response_model=VersionOut)
@audit.audited("template.reject", "template_version", "{template_id}/{number}")
async def reject(
    request: Request,
    template_id: TemplateId,
    number: Number,
    session: Session,
    who: Legal,
    body: Review = None,
    if_match: IfMatch = None,
) -> VersionOut:
    """Legal sends a version in review back to draft, with a note saying why."""
    note = body.note if body else None
    return await _transition(request, session, who, template_id, number, "reject", note, if_match)


@router.post("/{template_id}/versions/{number}/retire", response_model=VersionOut)
@audit.audited("template.retire", "template_version", "{template_id}/{number}")
async def retire(
    request: Request,
    template_id: TemplateId,
    number: Number,
    session: Session,
    who: Retirer,
    body: Review = None,
    if_match: IfMatch = None,
) -> VersionOut:
    """Withdraw an approved version (approved -> retired): it can no longer be used."""
    note = body.note if body else None
    return await _transition(request, session, who, template_id, number, "retire", note, if_match)


@router.post("/{template_id}/preview", response_model=RenderedOut)
async def preview(
    request: Request, template_id: TemplateId, session: Session, who: Viewer, body: PreviewIn
) -> RenderedOut:
    """Render any version (drafts too, for review) with an incident's data or a sample;
    nothing is recorded. Missing variables or a refused template: 422. Every render slot
    busy for the whole wait: 503 with ``Retry-After`` (``alerts.templates.pool``)."""
    incident = None
    if body.incident_id is not None:
        incident = await service.load_incident(session, body.incident_id)
        ensure_visible(who, incident.watch_id, f"incident {incident.id}")
    template, version, text = await service.preview(
        session, template_id, body.version, incident, body.variables,
        metrics=_runtime(request).metrics,
    )  # fmt: skip
    return RenderedOut(
        template_id=template_id,
        version=version.number,
        status=version.status,
        format=template.format,
        text=text,
    )
