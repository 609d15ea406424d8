"""Signed inbound requests act at most once: each one's signature is remembered, in the
database, until its timestamp has left the window in which it would be accepted.

A signed request (Slack's ``X-Slack-Signature``) carries its timestamp, and one whose
timestamp is too far from the clock is refused; within that window a captured request
could be sent again and act again (an "Acknowledge" click replayed after the incident was
reopened acknowledged it anew). ``first_use`` records the request's digest (SHA-256 of the
endpoint and the signature: the signature already covers timestamp and body) and says
whether it was new. The table is shared by every API replica and survives restarts;
expired rows are pruned on each write, so it holds at most one window's worth of requests.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, cast

from sqlalchemy import String, delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UtcDateTime, unit_of_work


class SeenRequest(Base):
    """A signed request already taken (``digest``), forgotten after ``expires_at``."""

    __tablename__ = "seen_requests"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(32))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


def request_digest(endpoint: str, signature: str) -> str:
    return hashlib.sha256(f"{endpoint}:{signature}".encode()).hexdigest()


async def first_use(
    sessions: async_sessionmaker[AsyncSession],
    endpoint: str,
    signature: str,
    *,
    now: datetime,
    expires_at: datetime,
) -> bool:
    """Remember the request signed ``signature`` until ``expires_at`` (committed at once,
    whatever the request then does); False when it was already remembered: a replay."""
    async with unit_of_work(sessions) as session:
        await session.execute(
            delete(SeenRequest)
            .where(SeenRequest.expires_at < now)
            .execution_options(synchronize_session=False)
        )
        dialect = session.get_bind().dialect.name
        insert: Any = pg_insert if dialect == "postgresql" else sqlite_insert
        result = await session.execute(
            insert(SeenRequest)
            .values(
                digest=request_digest(endpoint, signature),
                endpoint=endpoint[:32],
                expires_at=expires_at,
            )
            .on_conflict_do_nothing(index_elements=["digest"])
        )
        return int(cast(CursorResult[Any], result).rowcount) == 1


__all__ = ["SeenRequest", "first_use", "request_digest"]
