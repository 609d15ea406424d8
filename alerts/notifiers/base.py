"""The notifier contract: one small class per channel type behind ``Notifier``.

A notifier turns an ``AlertMessage`` into one message on its channel. It raises
``DeliveryError`` when the message did not get through, saying whether trying again may
help; the outbox decides when. Messages of a ``DeliveryError`` are stored and logged, so
they never contain secrets (webhook URLs, signing keys).
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal, Protocol, runtime_checkable

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from alerts.notifiers.reasons import Reason
from core.events import HeatFeatures


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


class Contact(BaseModel):
    """A person to @-mention in the alert (the on-call person of an escalation step).

    ``chat_ids`` maps a channel type (``slack``, ``dingtalk``, ``wecom``, ``feishu``,
    ``teams``) to the person's id there; ``phone`` is used where a channel mentions by mobile
    number (DingTalk ``atMobiles``, WeCom ``mentioned_mobile_list``).
    """

    model_config = ConfigDict(frozen=True)

    name: str
    email: str | None = None
    phone: str | None = None
    chat_ids: dict[str, str] = Field(default_factory=dict)

    def __hash__(self) -> int:
        # frozen, but ``chat_ids`` is a dict: the generated hash would raise TypeError
        return hash((self.name, self.email, self.phone, tuple(sorted(self.chat_ids.items()))))


def incident_key(incident_id: int, page: int = 0) -> str:
    """The key of one incident page: ``crisiswatch-incident-<id>`` for page 0, then
    ``crisiswatch-incident-<id>-<page>`` (``AlertMessage.dedup_key``)."""
    base = f"crisiswatch-incident-{incident_id}"
    return f"{base}-{page}" if page else base


def lenient(value: object, handler: ValidatorFunctionWrapHandler) -> object:
    """``why`` and ``heat`` only feed the wording in another language: one that cannot be
    read (a reason code of a newer release, in a payload an older alerter sends) is None,
    and the message goes with its English text rather than failing as an invalid payload."""
    try:
        return handler(value)
    except ValidationError:
        return None


class AlertHeat(HeatFeatures):
    """The heat behind an incident's explanation (``Signal.heat``) and the kind of signal
    that measured it: what a channel in another language renders the explanation from."""

    kind: Literal["story", "surge"] = "story"


class DigestItem(BaseModel):
    """One incident inside a digest message (several alerts merged under a rate limit)."""

    model_config = ConfigDict(frozen=True)

    incident_id: int
    tier: int = Field(ge=1, le=3)
    title: str
    reason: str = ""
    url: str | None = Field(None, description="the item's 'Open incident' link (for people)")
    api_url: str | None = Field(
        None, description="the incident in the JSON API (for machines; its alert's api_url)"
    )
    action: Literal["trigger", "acknowledge", "resolve"] = "trigger"
    page: int = Field(0, ge=0, description="the incident page of this item's alert")
    idempotency_key: str = Field(
        "",
        description="the key of this item's own delivery: the same in every digest that "
        "carries it (a digest sent again after a crash may hold other items, so its own "
        "key differs; receivers dedupe items on this one)",
    )
    why: Reason | None = Field(None, description="``reason``, structured (its alert's ``why``)")

    @field_validator("why", mode="wrap")
    @classmethod
    def _why(cls, value: object, handler: ValidatorFunctionWrapHandler) -> object:
        return lenient(value, handler)

    @property
    def dedup_key(self) -> str:
        """The ``AlertMessage.dedup_key`` of this item's alert (its incident page)."""
        return incident_key(self.incident_id, self.page)


class RateLimit(BaseModel):
    """At most ``count`` messages per ``per_seconds`` on one channel (the platform's limit)."""

    model_config = ConfigDict(frozen=True)

    count: int = Field(ge=1)
    per_seconds: float = Field(gt=0)
    penalty_seconds: float = Field(
        0, ge=0, description="how long the platform blocks a sender that exceeds the limit"
    )


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
    links: tuple[Link, ...] = Field(
        (), description="for people: 'Open incident' (alerts.incident_path, the console)"
    )
    api_url: str | None = Field(
        None,
        description="the incident in the JSON API (GET with an API key), for machines (the "
        "webhook's alert.api_url); None without a public_url, or in payloads stored before it",
    )
    ack_hint: str = ""
    drill: bool = False
    opened_at: datetime
    idempotency_key: str = Field(
        "", description="the same for every attempt of one delivery (receivers dedupe on it)"
    )
    action: Literal["trigger", "acknowledge", "resolve"] = Field(
        "trigger",
        description="trigger = a new or escalated alert; acknowledge/resolve = a follow-up "
        "mirrored to every channel that got the alert (PagerDuty maps it to its event_action)",
    )
    actor: str | None = Field(None, description="who acknowledged/resolved (follow-ups)")
    mentions: tuple[Contact, ...] = Field(
        (), description="people to @-mention (the on-call person of the escalation step)"
    )
    ack_url: str | None = Field(
        None, description="signed, expiring, single-use acknowledge link (a confirm page)"
    )
    digest: tuple[DigestItem, ...] = Field(
        (),
        description="non-empty: this message merges several incidents (rate-limited burst); "
        "incident_id/tier/title then describe the digest as a whole",
    )

    page: int = Field(
        0,
        ge=0,
        description="the incident's page generation: a new one starts when an upgrade "
        "reopens an incident somebody had acknowledged or resolved, or raises one whose "
        "page a keyed channel holds (see dedup_key)",
    )

    why: Reason | None = Field(
        None,
        description="``reason``, structured: what channels in another language render "
        "(None in payloads stored before it: ``reason`` is shown as it is)",
    )
    heat: AlertHeat | None = Field(
        None,
        description="the heat behind ``explanation`` (the incident's, when the alert was "
        "queued): channels in another language render the explanation from it (None: "
        "they show ``explanation``)",
    )

    @field_validator("why", "heat", mode="wrap")
    @classmethod
    def _lenient(cls, value: object, handler: ValidatorFunctionWrapHandler) -> object:
        return lenient(value, handler)

    @property
    def dedup_key(self) -> str:
        """The key of the incident's current page on channels that keep one alert per key
        (PagerDuty ``dedup_key``): ``crisiswatch-incident-<id>`` for page 0, then
        ``crisiswatch-incident-<id>-<page>``. A new page is a new key because PagerDuty
        folds a trigger into the alert it holds open (triggered or acknowledged) under the
        same key, at that alert's severity: the upgrade would page nobody anew."""
        return incident_key(self.incident_id, self.page)

    @property
    def thread_key(self) -> str:
        """Stable for the incident's whole life, whatever its page (mail threading)."""
        return incident_key(self.incident_id)


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
    rate_limits: ClassVar[tuple[RateLimit, ...]]
    """The platform's published sending limits for one channel of this type (may be empty)."""

    async def send(self, alert: AlertMessage) -> None:
        """Deliver ``alert`` once; raise ``DeliveryError`` when it did not get through."""
        ...
