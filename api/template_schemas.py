"""Request and response bodies of the templates, responses and audit APIs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from alerts.templates.render import MAX_VARIABLE_NAME

Kind = Literal[
    "holding_statement", "apology", "fact_clarification", "rectification", "private_reply"
]
Format = Literal["text", "markdown", "html"]
VersionStatus = Literal["draft", "in_review", "approved", "retired"]

_BODY_EXAMPLE = (
    "{{ brand }} is aware of posts about {{ product }}. We are looking into it and will "
    "share verified information by {{ next_update }}."
)
Variables = dict[
    Annotated[str, StringConstraints(min_length=1, max_length=MAX_VARIABLE_NAME)],
    Annotated[str, StringConstraints(max_length=4000)],
]


def _variables(description: str) -> Any:
    return Field(
        default_factory=dict,
        max_length=50,
        description=description,
        examples=[{"product": "X2 phone", "next_update": "18:00 today"}],
    )


LANG_TAG = r"^[A-Za-z-]+$"
"""A language tag as templates are filed under it (``en``, ``zh-CN``); matched with
any case and a subtag apart (``alerts.templates.service``)."""


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VersionOut(_Out):
    number: int
    status: VersionStatus
    body: str
    variables: list[str] = Field(
        description="every variable the body uses; brand and incident among them are filled "
        "from the incident (a use may not give them), the others a use must give"
    )
    note: str
    created_by: str
    created_at: datetime
    updated_by: str
    updated_at: datetime
    submitted_by: str | None
    submitted_at: datetime | None
    reviewed_by: str | None
    reviewed_at: datetime | None
    review_note: str | None
    retired_by: str | None
    retired_at: datetime | None
    etag: str = Field(
        description="the version as read: send it back as If-Match with an edit or a review "
        "action, and a version changed since (an edit, a reject and resubmit) answers 409"
    )


class TemplateOut(_Out):
    id: int
    name: str
    kind: Kind
    lang: str
    min_tier: int
    max_tier: int
    format: Format
    description: str
    created_by: str
    created_at: datetime
    approved_version: int | None = Field(description="the version in use, if any")
    latest_version: int
    latest_status: VersionStatus


class TemplateDetail(TemplateOut):
    versions: list[VersionOut]


class TemplateIn(_In):
    name: str = Field(
        min_length=1, max_length=200, pattern=r"^[\w.-]+$", examples=["holding-statement-en"]
    )
    kind: Kind
    lang: str = Field(min_length=2, max_length=16, pattern=LANG_TAG, examples=["en"])
    min_tier: int = Field(ge=0, le=3, examples=[2])
    max_tier: int = Field(ge=0, le=3, examples=[3])
    format: Format = Field("text", description="how inserted values are escaped")
    description: str = Field("", max_length=2000)
    body: str = Field(min_length=1, max_length=20_000, examples=[_BODY_EXAMPLE])
    note: str = Field("", max_length=2000, description="for the reviewer")


class VersionEditIn(_In):
    body: str = Field(min_length=1, max_length=20_000, examples=[_BODY_EXAMPLE])
    note: str | None = Field(None, max_length=2000)


class ReviewIn(_In):
    note: str | None = Field(None, max_length=2000, examples=["checked against the recall facts"])


class PreviewIn(_In):
    version: int | None = Field(
        None, ge=1, le=100_000, description="default: the approved version, else the newest"
    )
    incident_id: int | None = Field(
        None, ge=1, le=2**31 - 1, description="default: a sample incident"
    )
    variables: Variables = _variables("values for the template's variables (escaped)")


class UseIn(_In):
    template_id: int = Field(ge=1, le=2**31 - 1)
    version: int | None = Field(
        None, ge=1, le=100_000, description="default: the approved version; must be approved"
    )
    variables: Variables = _variables("values for the template's variables (escaped)")


class RenderedOut(BaseModel):
    template_id: int
    version: int
    status: str
    format: str
    text: str = Field(description="the statement, every inserted value escaped for the format")


class UsageOut(_Out):
    id: int
    incident_id: int
    template_id: int
    version_number: int
    used_by: str
    used_at: datetime
    variables: dict[str, str]
    text: str


class SuggestionOut(BaseModel):
    template: TemplateOut
    version: VersionOut


class AuditOut(_Out):
    id: int
    at: datetime
    actor: str
    role: str
    action: str
    target_type: str
    target_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    outcome: str = Field(description="ok: a change made; forbidden (403), conflict (409): refused")
    detail: str | None = Field(description="why an attempt was refused")


class ErrorOut(BaseModel):
    detail: str = Field(examples=["cannot approve version 2: it is draft, approve needs in_review"])


class ValidationIssueOut(BaseModel):
    """One problem FastAPI found in a request (its own 422)."""

    loc: list[str | int] = Field(examples=[["query", "limit"]])
    msg: str
    type: str


class UnprocessableOut(BaseModel):
    """A 422: FastAPI's list of problems for a request its declared types refuse, or one
    sentence where the API refuses it itself (an unknown or repeated query parameter, a
    NUL, a value the service refuses)."""

    detail: str | list[ValidationIssueOut] = Field(
        examples=["unknown query parameter 'stauts'; this route takes: limit, offset, status"]
    )


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


UNPROCESSABLE: dict[str, Any] = {
    "model": UnprocessableOut,
    "description": "the request's parameters or body are refused: a list of problems, or a "
    "sentence saying what is wrong",
}


def errors(not_found: str, conflict: str | None = None) -> dict[int | str, dict[str, Any]]:
    """The refusals of an API router that takes keys, for its OpenAPI schema: ``not_found``
    and ``conflict`` say what its 404 and (when it answers one) 409 are about."""
    found: dict[int | str, dict[str, Any]] = {
        401: _error("no key, or an unknown key"),
        403: _error("the key's role or watch scope does not allow this"),
        404: _error(not_found),
        422: UNPROCESSABLE,
        429: _error("too many failed authentications from this address (see Retry-After)"),
    }
    if conflict is not None:
        found[409] = _error(conflict)
    return dict(sorted(found.items(), key=lambda item: int(item[0])))


ERRORS = errors(
    "no such template, version or incident",
    "the template's or version's state does not allow this",
)
