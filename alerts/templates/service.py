"""Templates: create, edit, review, suggest for an incident, use (render and record).

Nothing here commits: the caller's unit of work does. Functions that change something
return what the audit log needs (``snapshot`` of the version before and after).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import exists, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from alerts import incidents
from alerts.models import Incident
from alerts.templates import pool
from alerts.templates import render as renderer
from alerts.templates.models import (
    APPROVED,
    DRAFT,
    FORMATS,
    KINDS,
    RETIRED,
    VERSION_STATUSES,
    ResponseTemplate,
    TemplateUsage,
    TemplateVersion,
)
from alerts.templates.workflow import EDIT_AS_NEW_DRAFT, EDIT_IN_PLACE, next_status
from alerts.timeline import add_event
from core.metrics import Metrics

log = logging.getLogger(__name__)

IncidentNotFound = incidents.IncidentNotFound
RenderBusy = pool.RenderBusy


def _valid_name(name: str) -> bool:
    """A name a body can use: Jinja takes Python identifiers, Chinese ones (``产品``) too."""
    return name.isidentifier() and len(name) <= renderer.MAX_VARIABLE_NAME


class TemplateNotFound(LookupError):
    pass


class TemplateConflict(ValueError):
    """The change contradicts the template's state (the API answers 409)."""


class ReviewRefused(PermissionError):
    """The reviewer may not approve this version (four eyes; the API answers 403)."""


class BadVariables(ValueError):
    """Variables missing, badly named or reserved (the API answers 422). Extra ones the
    body does not use are accepted and ignored: a misspelt one leaves the real one missing."""


def snapshot(version: TemplateVersion) -> dict[str, Any]:
    return {
        "template_id": version.template_id,
        "version": version.number,
        "status": version.status,
        "body": version.body,
        "note": version.note,
    }


async def create_template(
    session: AsyncSession,
    *,
    name: str,
    kind: str,
    lang: str,
    min_tier: int,
    max_tier: int,
    fmt: str,
    body: str,
    description: str = "",
    note: str = "",
    actor: str,
    now: datetime,
    metrics: Metrics | None = None,
) -> ResponseTemplate:
    """A new template with its first version, a draft."""
    if kind not in KINDS or fmt not in FORMATS:
        raise ValueError(f"kind must be one of {KINDS}, format one of {FORMATS}")
    if min_tier > max_tier:
        raise BadVariables("min_tier must not be above max_tier")
    variables = await _check(body, fmt, metrics)
    if await session.scalar(select(exists().where(ResponseTemplate.name == name))):
        raise TemplateConflict(f"a template named {name!r} already exists")
    template = ResponseTemplate(
        name=name,
        kind=kind,
        lang=lang,
        min_tier=min_tier,
        max_tier=max_tier,
        format=fmt,
        description=description,
        created_by=actor,
        created_at=now,
    )
    session.add(template)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent create with the same name
        raise TemplateConflict(f"a template named {name!r} already exists") from exc
    session.add(_new_version(template.id, 1, body, variables, note, actor, now))
    await session.flush()
    return await get_template(session, template.id)


def _new_version(
    template_id: int, number: int, body: str, variables: list[str], note: str, actor: str,
    now: datetime,
) -> TemplateVersion:  # fmt: skip
    return TemplateVersion(
        template_id=template_id,
        number=number,
        status=DRAFT,
        body=body,
        variables=variables,
        note=note,
        created_by=actor,
        updated_by=actor,
        created_at=now,
        updated_at=now,
    )


def _same_language(lang: str) -> Any:
    """A template for ``lang``: its tag, any case, or one a subtag apart (``zh`` takes
    ``zh-CN`` and ``zh-CN`` takes ``zh``), as watch queries read ``lang:zh``. ``lang`` is
    letters and hyphens (the API's pattern), so it needs no LIKE escaping."""
    wanted = lang.lower()
    stored = func.lower(ResponseTemplate.lang)
    broader = [p for p in (wanted.split("-", 1)[0],) if p != wanted]
    return or_(
        stored == wanted,
        stored.like(f"{wanted}-%"),
        *(stored == p for p in broader),
    )


async def list_templates(
    session: AsyncSession,
    *,
    kind: str | None = None,
    lang: str | None = None,
    tier: int | None = None,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[ResponseTemplate], int]:
    """A page of templates (versions loaded), by name; ``status``: has a version in it."""
    if status is not None and status not in VERSION_STATUSES:
        raise ValueError(f"unknown status {status!r}")
    conditions: list[Any] = []
    if kind is not None:
        conditions.append(ResponseTemplate.kind == kind)
    if lang is not None:
        conditions.append(_same_language(lang))
    if tier is not None:
        conditions += [ResponseTemplate.min_tier <= tier, ResponseTemplate.max_tier >= tier]
    if status is not None:
        conditions.append(
            exists().where(
                TemplateVersion.template_id == ResponseTemplate.id,
                TemplateVersion.status == status,
            )
        )
    total = await session.scalar(
        select(func.count()).select_from(ResponseTemplate).where(*conditions)
    )
    items = await session.scalars(
        select(ResponseTemplate)
        .where(*conditions)
        .options(selectinload(ResponseTemplate.versions))
        .order_by(ResponseTemplate.name, ResponseTemplate.id)
        .limit(limit)
        .offset(offset)
    )
    return list(items), int(total or 0)


async def get_template(
    session: AsyncSession, template_id: int, *, lock: bool = False
) -> ResponseTemplate:
    """The template with its versions; ``lock``: row-locked until the unit of work ends, so
    two reviews or edits of one template never interleave (PostgreSQL locks the row;
    SQLite, without row locks, takes its write lock before the read: ``core.db``)."""
    query = (
        select(ResponseTemplate)
        .where(ResponseTemplate.id == template_id)
        .options(selectinload(ResponseTemplate.versions))
        .execution_options(populate_existing=True)
    )
    template = await session.scalar(query.with_for_update() if lock else query)
    if template is None:
        raise TemplateNotFound(f"template {template_id} does not exist")
    return template


async def get_version(session: AsyncSession, template_id: int, number: int) -> TemplateVersion:
    version = await session.scalar(
        select(TemplateVersion).where(
            TemplateVersion.template_id == template_id, TemplateVersion.number == number
        )
    )
    if version is None:
        await get_template(session, template_id)  # 404 names the template if that is missing
        raise TemplateNotFound(f"template {template_id} has no version {number}")
    return version


def _check_read(version: TemplateVersion, if_match: str | None) -> None:
    """``TemplateConflict`` when ``if_match`` (the ``If-Match`` the caller sent: entity
    tags, comma-separated, or ``*``) does not name the version as it is now: it changed
    since the caller read it (another edit, a reject and resubmit), and the change would
    overwrite words they never saw, or approve a text they did not review."""
    if if_match is None:
        return
    tags = [t.strip().removeprefix("W/") for t in if_match.split(",")]
    if "*" in tags or version.etag in tags:
        return
    raise TemplateConflict(
        f"version {version.number} of template {version.template_id} changed since you read "
        f"it (If-Match {if_match[:80]!r}; now {version.etag}, {version.status}, last edited "
        f"by {version.updated_by!r}): reload it and check the text again"
    )


def current_approved(template: ResponseTemplate) -> TemplateVersion | None:
    return next((v for v in template.versions if v.status == APPROVED), None)


async def edit_version(
    session: AsyncSession,
    template_id: int,
    number: int,
    *,
    body: str,
    note: str | None,
    actor: str,
    now: datetime,
    if_match: str | None = None,
    metrics: Metrics | None = None,
) -> tuple[TemplateVersion, dict[str, Any]]:
    """Edit a draft in place, or start a new draft from an approved/retired version.

    Returns the draft and the snapshot of the version edited (before the change).
    ``if_match``: the version's ``etag`` as the caller read it (``_check_read``).
    """
    template = await get_template(session, template_id, lock=True)
    version = await get_version(session, template_id, number)
    _check_read(version, if_match)
    before = snapshot(version)
    variables = await _check(body, template.format, metrics)
    if version.status in EDIT_IN_PLACE:
        version.body, version.variables = body, variables
        version.note = version.note if note is None else note
        version.updated_by, version.updated_at = actor, now
        await session.flush()
        return version, before
    if version.status not in EDIT_AS_NEW_DRAFT:
        raise TemplateConflict(
            f"version {number} is {version.status}; reject it back to draft before editing"
        )
    pending = [v for v in template.versions if v.status not in (APPROVED, RETIRED)]
    if pending:
        raise TemplateConflict(
            f"template {template_id} already has version {pending[0].number} "
            f"({pending[0].status}); edit that one"
        )
    newest = max(v.number for v in template.versions)
    draft = _new_version(template_id, newest + 1, body, variables, note or "", actor, now)
    session.add(draft)
    try:
        await session.flush()
    except IntegrityError as exc:  # someone else made that version number a moment ago
        raise TemplateConflict(f"template {template_id} changed meanwhile; reload it") from exc
    return draft, before


async def transition(
    session: AsyncSession,
    template_id: int,
    number: int,
    action: str,
    *,
    actor: str,
    now: datetime,
    note: str | None = None,
    if_match: str | None = None,
) -> tuple[TemplateVersion, dict[str, Any], list[TemplateVersion]]:
    """Apply ``action`` (submit, approve, reject, retire).

    Returns the version, its snapshot before, and other versions retired by an approval.
    ``if_match``: the version's ``etag`` as the caller read it (``_check_read``).
    """
    template = await get_template(session, template_id, lock=True)
    version = await get_version(session, template_id, number)
    _check_read(version, if_match)
    before = snapshot(version)
    target = next_status(action, version.status, number)
    if action == "approve" and actor in (version.created_by, version.updated_by):
        raise ReviewRefused(
            f"{actor!r} wrote version {number}; another legal reviewer must approve it"
        )
    retired: list[TemplateVersion] = []
    if action == "approve":
        for other in template.versions:
            if other.status == APPROVED and other.id != version.id:
                other.status, other.retired_by, other.retired_at = RETIRED, actor, now
                retired.append(other)
    version.status = target
    if action == "submit":
        version.submitted_by, version.submitted_at = actor, now
    elif action in ("approve", "reject"):
        version.reviewed_by, version.reviewed_at, version.review_note = actor, now, note
    elif action == "retire":
        version.retired_by, version.retired_at = actor, now
    await session.flush()
    return version, before, retired


async def load_incident(session: AsyncSession, incident_id: int, *, lock: bool = False) -> Incident:
    """The incident (``IncidentNotFound``); ``lock``: row-locked for the unit of work, so
    a use waits for a merge of the incident under way and then sees it."""
    if lock:
        return await incidents.load_for_change(session, incident_id)
    incident = await session.get(Incident, incident_id)  # its row: no timeline, evidence
    if incident is None:
        raise IncidentNotFound(incident_id)
    return incident


def incident_values(incident: Incident) -> dict[str, Any]:
    return {
        "id": incident.id,
        "title": incident.title,
        "tier": incident.tier,
        "status": incident.status,
        "watch": incident.watch_id,
        "brand": incident.brand,
        "opened_at": incident.opened_at.strftime("%Y-%m-%d %H:%M UTC"),
        "explanation": incident.explanation,
        "drill": incident.drill,
    }


SAMPLE_INCIDENT: dict[str, Any] = {
    "id": 0,
    "title": "(sample) complaints about a product fault",
    "tier": 2,
    "status": "open",
    "watch": "sample",
    "brand": "Sample Brand",
    "opened_at": "2026-01-01 09:00 UTC",
    "explanation": "(sample) 40 negative posts in 10 min from 25 authors",
    "drill": False,
}


def _values(
    version: TemplateVersion, incident: Mapping[str, Any], variables: Mapping[str, str]
) -> dict[str, Any]:
    bad = [k for k in variables if not _valid_name(k)]
    if bad:
        raise BadVariables(f"invalid variable names (letters, digits, _; no spaces): {bad}")
    provided = sorted(renderer.PROVIDED.intersection(variables))
    if provided:  # the approved text names the incident's brand, never the caller's
        raise BadVariables(f"{', '.join(provided)}: filled from the incident, not given")
    # the brand is the configuration's (the watch's): its own name, never defanged
    brand = renderer.Trusted(incident["brand"])
    facts = {**incident, "brand": brand}
    values: dict[str, Any] = {**variables, "brand": brand, "incident": facts}
    missing = [v for v in version.variables if v not in values]
    if missing:
        raise BadVariables(
            f"the template needs these variables: {', '.join(missing)} (send them in 'variables')"
        )
    return values


async def _render(
    body: str,
    fmt: str,
    values: dict[str, Any],
    operation: Literal["preview", "use"],
    metrics: Metrics | None,
) -> str:
    """``body`` rendered off the event loop (``pool``), from plain values computed here on
    the loop; ``RenderBusy`` (logged, counted) when every render slot stayed taken."""
    with _counted_refusal(operation, metrics):
        return await pool.shared().render(body, fmt, values)


async def _check(body: str, fmt: str, metrics: Metrics | None) -> list[str]:
    """``renderer.check`` off the event loop, in the render pool: parsing and compiling a
    long body took 150-250 ms of the loop (20,000 characters)."""
    with _counted_refusal("save", metrics):
        return await pool.shared().run(renderer.check, body, fmt)


@contextmanager
def _counted_refusal(
    operation: Literal["preview", "use", "save"], metrics: Metrics | None
) -> Iterator[None]:
    try:
        yield
    except RenderBusy as exc:
        log.warning("templates: a %s was refused: %s", operation, exc)
        if metrics is not None:
            metrics.template_renders_refused.labels(operation).inc()
        raise


async def preview(
    session: AsyncSession,
    template_id: int,
    number: int | None,
    incident: Incident | None,
    variables: Mapping[str, str],
    *,
    metrics: Metrics | None = None,
) -> tuple[ResponseTemplate, TemplateVersion, str]:
    """Render any version (drafts too, for review) without recording a use."""
    template = await get_template(session, template_id)
    if number is None:
        version = current_approved(template) or template.versions[-1]
    else:
        version = await get_version(session, template_id, number)
    facts = incident_values(incident) if incident is not None else SAMPLE_INCIDENT
    values = _values(version, facts, variables)
    text = await _render(version.body, template.format, values, "preview", metrics)
    return template, version, _drill_marked(text, incident)


DRILL_MARK = "[DRILL - NOT FOR PUBLICATION] "


def _drill_marked(text: str, incident: Incident | None) -> str:
    """A statement for a drill incident says so first, so nobody publishes it."""
    return DRILL_MARK + text if incident is not None and incident.drill else text


async def use_template(
    session: AsyncSession,
    incident: Incident,
    template_id: int,
    number: int | None,
    variables: Mapping[str, str],
    *,
    actor: str,
    now: datetime,
    metrics: Metrics | None = None,
) -> TemplateUsage:
    """Render an approved version for ``incident`` and record who used it.

    The template is read under its lock (as reviews take it), so a use racing an approval
    or a retirement sees the version's status after it, never a version retired meanwhile.

    An incident merged into another is refused (``TemplateConflict``): the statement would
    be recorded on a closed incident nobody works, away from the survivor's timeline,
    report and drill measures.

    The render runs off the event loop (``pool``) while those locks are held: a wait for
    a slot of at most ``pool.RENDER_WAIT_SECONDS`` and a render of at most
    ``render.RENDER_SECONDS``, within SQLite's 5 s busy timeout for the writers behind."""
    if incident.merged_into_id is not None:
        into = incident.merged_into_id
        raise TemplateConflict(
            f"incident {incident.id} was merged into incident {into}: use the template on "
            f"incident {into}, where the story is worked and recorded"
        )
    template = await get_template(session, template_id, lock=True)
    if number is None:
        version = current_approved(template)
        if version is None:
            raise TemplateConflict(f"template {template_id} has no approved version to use")
    else:
        version = await get_version(session, template_id, number)
        if version.status != APPROVED:
            raise TemplateConflict(
                f"only approved versions can be used; version {number} is {version.status}"
            )
    if not template.min_tier <= incident.tier <= template.max_tier:
        raise TemplateConflict(
            f"template {template_id} is for tiers {template.min_tier}-{template.max_tier}; "
            f"incident {incident.id} is tier {incident.tier}"
        )
    values = _values(version, incident_values(incident), variables)
    text = await _render(version.body, template.format, values, "use", metrics)
    text = _drill_marked(text, incident)
    usage = TemplateUsage(
        incident_id=incident.id,
        template_id=template.id,
        version_id=version.id,
        version_number=version.number,
        used_by=actor,
        used_at=now,
        variables=dict(variables),
        text=text,
    )
    session.add(usage)
    await session.flush()
    add_event(
        session,
        incident.id,
        "template_used",
        now,
        actor=actor,
        detail={
            "usage": usage.id,
            "template_id": template.id,
            "name": template.name,
            "kind": template.kind,
            "lang": template.lang,
            "version": version.number,
            # who approved the text used, and when: the report's reader (legal) sees it
            # beside the use, not only in the versions API and the audit log
            "approved_by": version.reviewed_by,
            "approved_at": version.reviewed_at.isoformat() if version.reviewed_at else None,
        },
    )
    return usage


async def suggest(
    session: AsyncSession, tier: int, *, kind: str | None = None, lang: str | None = None
) -> list[tuple[ResponseTemplate, TemplateVersion]]:
    """Approved templates fitting ``tier`` (and kind/language), with their approved version."""
    items, _ = await list_templates(
        session, kind=kind, lang=lang, tier=tier, status=APPROVED, limit=500
    )
    out = []
    for template in items:
        version = current_approved(template)
        if version is not None:
            out.append((template, version))
    return out


async def _merged_in(session: AsyncSession, incident_id: int) -> list[int]:
    """The incident and every incident merged into it, directly or through a chain."""
    found, frontier = [incident_id], [incident_id]
    while frontier:
        frontier = list(
            await session.scalars(
                select(Incident.id).where(
                    Incident.merged_into_id.in_(frontier), Incident.id.not_in(found)
                )
            )
        )
        found += frontier
    return found


async def list_usages(
    session: AsyncSession, incident_id: int, *, limit: int = 50, offset: int = 0
) -> tuple[list[TemplateUsage], int]:
    """The statements used for the incident and for the incidents merged into it (whose
    timeline, ``template_used`` events included, moved to it), newest first."""
    condition = TemplateUsage.incident_id.in_(await _merged_in(session, incident_id))
    total = await session.scalar(select(func.count()).select_from(TemplateUsage).where(condition))
    items = await session.scalars(
        select(TemplateUsage)
        .where(condition)
        .order_by(TemplateUsage.used_at.desc(), TemplateUsage.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(items), int(total or 0)
