"""The notifier contract: one small class per channel type behind ``Notifier``.

A notifier turns an ``AlertMessage`` into one message on its channel. It raises
``DeliveryError`` when the message did not get through, saying whether trying again may
help; the outbox decides when. Messages of a ``DeliveryError`` are stored and logged, so
they never contain secrets (webhook URLs, signing keys).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field


class EvidenceSnippet(BaseModel):
    """A mention shown in an alert. ``text`` and ``author`` are hostile input."""

    model_config = ConfigDict(frozen=True)

    author: str | None = None
    followers: int | None = None
    text: str = ""
    url: str | None = None
    label: str = "negative"


class Link(BaseModel):
    model_config = ConfigDict(frozen=True)

    label: str
    url: str


class AlertMessage(BaseModel):
    """Everything a channel needs to render one alert; stored as the outbox payload."""

    model_config = ConfigDict(frozen=True)

    incident_id: int
    tier: int = Field(ge=1, le=3)
    title: str
    explanation: str
    watch_id: str
    brand: str = ""
    reason: str = Field(
        description='why now: "new", "upgraded to tier 3", "ESCALATION level 2: ..."'
    )
    teams: tuple[str, ...] = ()
    evidence: tuple[EvidenceSnippet, ...] = ()
    links: tuple[Link, ...] = ()
    ack_hint: str = ""
    drill: bool = False
    opened_at: datetime
    idempotency_key: str = Field(
        "", description="the same for every attempt of one delivery (receivers dedupe on it)"
    )


class DeliveryError(Exception):
    """The alert did not get through. ``retryable``: a later attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after

    def __str__(self) -> str:
        kind = "retryable" if self.retryable else "permanent"
        return f"{self.message} ({kind})"


@runtime_checkable
class Notifier(Protocol):
    name: str
    """The channel name in the config (what deliveries and logs refer to)."""
    kind: str
    """The channel type: console, webhook, slack, ..."""

    async def send(self, alert: AlertMessage) -> None:
        """Deliver ``alert`` once; raise ``DeliveryError`` when it did not get through."""
        ...
