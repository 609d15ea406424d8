"""Ack links: signed, expiring, single-use tokens for channels without callbacks.

DingTalk, WeCom, Teams Workflows and email cannot call us back when someone clicks, so
their alerts carry a link: ``<public_url>/ack/<token>``. ``GET`` shows a small confirm page
(link scanners and chat unfurlers only ever GET, so they cannot acknowledge); ``POST``
acknowledges the incident as the person the link was minted for.

A token is ``<id>.<expires>.<signature>``:

* ``id``: 128 random bits, the primary key of its ``ack_tokens`` row;
* ``expires``: Unix seconds;
* ``signature``: base64url HMAC-SHA256 (``ack_links.secret``) over ``ack:v1:<id>:<expires>``.

A forged or mangled token is refused before the database is read; an expired one by its
own timestamp; a used one because its row has ``used_at`` set. Redeeming sets ``used_at``
with a conditional UPDATE (``WHERE used_at IS NULL``), so two clicks racing each other
acknowledge once. ``mint_ack_url`` is what the alert pipeline calls for each recipient.

An error of a token with a good signature names the channel of its row (``channel``), so
the pages can speak that channel's language; a forged token names none.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from pydantic import ConfigDict, Field, SecretStr, field_validator
from sqlalchemy import ForeignKey, String, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import Clock
from core.db import Base, UtcDateTime, unit_of_work
from core.settings import Secret, Section

VERSION = "v1"
MAX_TOKEN = 200


class AckLinkConfig(Section):
    """``ack_links``: without a secret, alerts carry no ack links."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    secret: Secret | None = Field(
        None, description="HMAC key of the tokens (at least 32 characters); unset = no links"
    )
    ttl: timedelta = Field(timedelta(hours=24), description="how long a link stays valid")
    path: str = Field("/ack/{token}", description="API path of the confirm page")

    @field_validator("secret")
    @classmethod
    def _long(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("ack_links.secret must be at least 32 characters (not shown)")
        return value

    @field_validator("ttl")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=1) <= value <= timedelta(days=30):
            raise ValueError("ack_links.ttl must be between 1 minute and 30 days")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or value.count("{token}") != 1:
            raise ValueError("ack_links.path must start with / and hold {token} once")
        return value

    @property
    def enabled(self) -> bool:
        return self.secret is not None


class AckToken(Base):
    """One minted ack link. ``used_at`` set = spent."""

    __tablename__ = "ack_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    recipient: Mapped[str] = mapped_column(String(255))
    channel: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    used_by: Mapped[str | None] = mapped_column(String(255), nullable=True)


class AckLinkError(Exception):
    """The token cannot acknowledge anything; ``status`` is the HTTP answer (4xx)."""

    def __init__(
        self, status: int, title: str, detail: str, reason: str, channel: str | None = None
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        """for metrics: off, forged, expired, used"""
        self.status = status
        self.title = title
        self.detail = detail
        self.channel = channel
        """the channel the link was sent to (its row's); None when not known (forged, off)"""


def _signature(secret: str, token_id: str, expires: int) -> str:
    mac = hmac.new(secret.encode(), f"ack:{VERSION}:{token_id}:{expires}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def _secret(config: AckLinkConfig) -> str:
    if config.secret is None:
        raise AckLinkError(404, "Ack links are off", "This server does not issue ack links.", "off")
    return config.secret.get_secret_value()


def encode(config: AckLinkConfig, token_id: str, expires_at: datetime) -> str:
    expires = int(expires_at.timestamp())
    return f"{token_id}.{expires}.{_signature(_secret(config), token_id, expires)}"


def _used(channel: str | None = None) -> AckLinkError:
    return AckLinkError(
        410, "Link already used", "This acknowledge link has already been used.", "used", channel
    )


def _expired(channel: str | None = None) -> AckLinkError:
    return AckLinkError(
        410,
        "Link expired",
        "This acknowledge link has expired. Acknowledge in the API.",
        "expired",
        channel,
    )


@dataclass(frozen=True)
class ParsedToken:
    id: str
    expires_at: datetime


def _forged() -> AckLinkError:
    return AckLinkError(
        403,
        "Invalid link",
        "This acknowledge link is not valid. Use the link from the alert.",
        "forged",
    )


def parse(config: AckLinkConfig, token: str, now: datetime) -> ParsedToken:
    """Check form, signature and expiry (no database); raises ``AckLinkError``."""
    parsed = _verify(config, token)
    if now >= parsed.expires_at:
        raise _expired()
    return parsed


def _verify(config: AckLinkConfig, token: str) -> ParsedToken:
    """Check form and signature (no database); raises ``AckLinkError``."""
    secret = _secret(config)
    # ASCII only: compare_digest raises TypeError on a non-ASCII str (a mangled link was a 500)
    parts = token.split(".") if len(token) <= MAX_TOKEN and token.isascii() else []
    if (
        len(parts) != 3
        or not (parts[1].isascii() and parts[1].isdigit())
        or not parts[0]
        or len(parts[0]) > 32
    ):
        raise _forged()
    token_id, expires_text, signature = parts
    expires = int(expires_text)
    if not hmac.compare_digest(_signature(secret, token_id, expires), signature):
        raise _forged()
    return ParsedToken(token_id, datetime.fromtimestamp(expires, UTC))


async def mint(
    session: AsyncSession,
    config: AckLinkConfig,
    *,
    incident_id: int,
    recipient: str,
    channel: str,
    now: datetime,
) -> str:
    """Store a fresh token for (incident, recipient, channel); returns the token string."""
    token_id = secrets.token_urlsafe(16)
    expires_at = now + config.ttl
    session.add(
        AckToken(
            id=token_id,
            incident_id=incident_id,
            recipient=recipient[:255],
            channel=channel[:255],
            created_at=now,
            expires_at=expires_at,
        )
    )
    return encode(config, token_id, expires_at)


async def mint_ack_url(
    session: AsyncSession,
    config: AckLinkConfig,
    public_url: str,
    *,
    incident_id: int,
    recipient: str,
    channel: str,
    now: datetime,
) -> str | None:
    """The ack URL to put in ``AlertMessage.ack_url``, or None when ack links are off."""
    if not config.enabled:
        return None
    token = await mint(
        session, config, incident_id=incident_id, recipient=recipient, channel=channel, now=now
    )
    return public_url.rstrip("/") + config.path.format(token=token)


def link_maker(
    sessions: async_sessionmaker[AsyncSession],
    config: AckLinkConfig,
    public_url: str | None,
    clock: Clock,
) -> Callable[[int, str], Awaitable[str | None]] | None:
    """The alerter's ``ack_link(incident_id, channel)``: mints one token per message sent.

    None when links are off (no secret) or there is no public URL to point them at.
    """
    if not config.enabled or not public_url:
        return None
    base = public_url

    async def make(incident_id: int, channel: str) -> str | None:
        async with unit_of_work(sessions) as session:
            return await mint_ack_url(
                session,
                config,
                base,
                incident_id=incident_id,
                recipient=channel,
                channel=channel,
                now=clock.now(),
            )

    return make


async def look_up(
    session: AsyncSession, config: AckLinkConfig, token: str, now: datetime
) -> AckToken:
    """The token's row if it may still be used (the confirm page); raises ``AckLinkError``.

    A forged token is refused before the database is read; an expired one is read only to
    name its channel in the error (it is refused even when its row is gone).
    """
    parsed = _verify(config, token)
    row = await session.scalar(select(AckToken).where(AckToken.id == parsed.id))
    if now >= parsed.expires_at:
        raise _expired(row.channel if row is not None else None)
    if row is None:
        raise _forged()
    if row.used_at is not None:
        raise _used(row.channel)
    return row


async def redeem(
    session: AsyncSession, config: AckLinkConfig, token: str, now: datetime
) -> AckToken:
    """Spend the token (once, even under concurrent clicks); raises ``AckLinkError``."""
    row = await look_up(session, config, token, now)
    result = await session.execute(
        update(AckToken)
        .where(AckToken.id == row.id, AckToken.used_at.is_(None))
        .values(used_at=now, used_by=actor(row))
        .execution_options(synchronize_session=False)
    )
    if int(cast(CursorResult[Any], result).rowcount) != 1:
        raise _used(row.channel)
    return row


def actor(row: AckToken) -> str:
    """Who acknowledges through ``row`` (``Incident.acked_by``, the audit log, ``used_by``)."""
    return f"{row.recipient} (via {row.channel} link)"[:255]


async def acknowledged_through(
    session: AsyncSession, incident_id: int, acked_by: str | None
) -> AckToken | None:
    """The link of ``incident_id`` that acknowledged it as ``acked_by``, if a link did.

    An actor is recognised by the row that stored it (``used_by``), never parsed, so that a
    page can name the recipient and channel in its own words; None for anyone else (an API
    key's name, ``slack:<user>``) and when nobody is named.
    """
    if not acked_by:
        return None
    return await session.scalar(
        select(AckToken)
        .where(AckToken.incident_id == incident_id, AckToken.used_by == acked_by)
        .limit(1)
    )


__all__ = [
    "AckLinkConfig",
    "AckLinkError",
    "AckToken",
    "acknowledged_through",
    "actor",
    "look_up",
    "mint",
    "mint_ack_url",
    "parse",
    "redeem",
]
