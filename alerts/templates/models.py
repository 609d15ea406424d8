"""Response templates' tables: templates, their versions, and who used which version where.

A template is the stable identity (kind, language, tiers); its text lives in numbered
versions that go draft -> in_review -> approved -> retired (``alerts.templates.workflow``).
A usage row records every statement rendered from an approved version for an incident.
Usages keep the incident's id without a foreign key, so the record survives incident
merges and clean-ups. The schema is created by ``core/migrations/versions/0005_templates.py``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Final

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, UtcDateTime

HOLDING: Final = "holding_statement"
APOLOGY: Final = "apology"
CLARIFICATION: Final = "fact_clarification"
RECTIFICATION: Final = "rectification"
PRIVATE_REPLY: Final = "private_reply"
KINDS: Final = (HOLDING, APOLOGY, CLARIFICATION, RECTIFICATION, PRIVATE_REPLY)

DRAFT: Final = "draft"
IN_REVIEW: Final = "in_review"
APPROVED: Final = "approved"
RETIRED: Final = "retired"
VERSION_STATUSES: Final = (DRAFT, IN_REVIEW, APPROVED, RETIRED)

FORMATS: Final = ("text", "markdown", "html")


class ResponseTemplate(Base):
    __tablename__ = "response_templates"
    __table_args__ = (
        CheckConstraint("min_tier <= max_tier", name="tiers"),
        CheckConstraint(
            "kind IN ('holding_statement', 'apology', 'fact_clarification', "
            "'rectification', 'private_reply')",
            name="kind",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    lang: Mapped[str] = mapped_column(String(16))
    min_tier: Mapped[int] = mapped_column(Integer)
    max_tier: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16), default="text")
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    versions: Mapped[list[TemplateVersion]] = relationship(
        back_populates="template", lazy="raise", order_by="TemplateVersion.number"
    )


class TemplateVersion(Base):
    __tablename__ = "template_versions"
    __table_args__ = (
        UniqueConstraint("template_id", "number"),
        CheckConstraint("status IN ('draft', 'in_review', 'approved', 'retired')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    template_id: Mapped[int] = mapped_column(
        ForeignKey("response_templates.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=DRAFT)
    body: Mapped[str] = mapped_column(Text)
    variables: Mapped[list[str]] = mapped_column(JSON, default=list)
    note: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(255))
    updated_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    submitted_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    submitted_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    reviewed_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    reviewed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    review_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    retired_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    retired_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)

    template: Mapped[ResponseTemplate] = relationship(back_populates="versions", lazy="raise")

    @property
    def etag(self) -> str:
        """The version as read (its status, text and note), as an HTTP entity tag: an edit
        or review sent with ``If-Match`` is refused when it changed since."""
        parts = (str(self.template_id), str(self.number), self.status, self.body, self.note)
        digest = hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
        return f'"{digest[:32]}"'


class TemplateUsage(Base):
    """Who rendered which approved version for which incident, and what it said."""

    __tablename__ = "template_usages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(Integer, index=True)
    template_id: Mapped[int] = mapped_column(
        ForeignKey("response_templates.id", ondelete="CASCADE"), index=True
    )
    version_id: Mapped[int] = mapped_column(ForeignKey("template_versions.id", ondelete="CASCADE"))
    version_number: Mapped[int] = mapped_column(Integer)
    used_by: Mapped[str] = mapped_column(String(255))
    used_at: Mapped[datetime] = mapped_column(UtcDateTime)
    variables: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    text: Mapped[str] = mapped_column(Text)
