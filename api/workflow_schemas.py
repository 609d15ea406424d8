"""Bodies of the incident workflow API (``api.routers.workflow``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from alerts.config import IncidentRoleName
from api.schemas import IncidentOut, TimelineEventOut

TaskStatus = Literal["done", "skipped"]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


NotBlank = AfterValidator(_not_blank)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class RoleIn(_In):
    person: Annotated[str, NotBlank] = Field(min_length=1, max_length=255, examples=["alice"])


class RoleOut(_Out):
    role: IncidentRoleName
    person: str
    assigned_by: str
    assigned_at: datetime


class NoteIn(_In):
    text: Annotated[str, NotBlank] = Field(
        min_length=1, max_length=4000, examples=["Spoke to the author; refund offered."]
    )


class TaskUpdateIn(_In):
    status: TaskStatus = Field(examples=["done"])
    note: str | None = Field(None, max_length=4000)


class TaskOut(_Out):
    id: int
    key: str
    title: str
    tier: int
    team: str
    owner_role: str | None
    status: str
    created_at: datetime
    due_at: datetime
    next_reminder_at: datetime | None
    reminders_sent: int
    finished_at: datetime | None
    finished_by: str | None
    note: str | None
    outcome: str = Field(
        "pending", description="met, missed, overdue, pending, skipped or cancelled"
    )


class MergeIn(_In):
    # strict: a merge cannot be undone, so true or "1" is refused, not read as incident 1
    into: int = Field(ge=1, le=2**31 - 1, strict=True, description="the incident that survives")
    note: str | None = Field(None, max_length=4000)


class MergeOut(BaseModel):
    merged: IncidentOut
    survivor: IncidentOut


class TimelineItemOut(TimelineEventOut):
    """A timeline event as ``GET /incidents/{id}/timeline`` pages it: the fields (and the
    ``of`` that fills them) of the events ``GET /incidents/{id}`` embeds."""


class TierChangeOut(_Out):
    at: datetime
    from_tier: int
    tier: int
    signal_id: str | None
    actor: str


class MentionOut(_Out):
    mention_id: str
    url: str | None
    text: str
    author: str | None
    followers: int | None
    created_at: datetime
    label: str


class HeatPointOut(_Out):
    at: datetime
    tier: int
    story_id: str
    heat: dict[str, Any]


class EvidenceSummaryOut(BaseModel):
    mentions: list[MentionOut]
    total_mentions: int
    sentiment_mix: dict[str, int]
    heat_curve: list[HeatPointOut]
