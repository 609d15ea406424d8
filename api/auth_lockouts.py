"""The failed-authentication lockout kept in the database, so that every API replica counts
the same failures: with the count in each process, N replicas behind a load balancer gave
an address N times the guesses (``api.auth`` describes the lockout itself).

Two tables: ``auth_failures``, one row per failed guess (client bucket, when), and
``auth_lockouts``, one row per locked-out bucket (until when). Only a failure writes (its
row, the pruning of rows past the window, and the lockout when it is the last straw); a
request with a good key reads one ``auth_lockouts`` row by its primary key, and nothing
when this process already knows the bucket is locked. Rows leave the tables once their
window or lockout has passed (pruned on each failure), so both stay bounded by the
failures of one window and the lockouts in force.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import Clock
from core.db import Base, UtcDateTime, unit_of_work

MAX_CLIENT = 128
"""Longest bucket stored (an IPv6 /64 or address with its zone is far shorter)."""


class AuthFailure(Base):
    """One failed authentication (an unknown key, a wrong metrics token) from ``client``."""

    __tablename__ = "auth_failures"
    __table_args__ = (Index("ix_auth_failures_client_at", "client", "at"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    client: Mapped[str] = mapped_column(String(MAX_CLIENT))
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class AuthLockout(Base):
    """``client`` is locked out until ``until``."""

    __tablename__ = "auth_lockouts"

    client: Mapped[str] = mapped_column(String(MAX_CLIENT), primary_key=True)
    until: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


@dataclass
class DbLockouts:
    """``AuthThrottle``'s window and lockout over the shared tables (same semantics)."""

    sessions: async_sessionmaker[AsyncSession]
    clock: Clock
    max_failures: int = 10
    window_s: float = 60.0
    lockout_s: float = 300.0

    async def locked_until(self, client: str) -> datetime | None:
        """When ``client``'s lockout ends, or None when it is not locked out (one read)."""
        async with self.sessions() as session:
            until = await session.scalar(
                select(AuthLockout.until).where(AuthLockout.client == client[:MAX_CLIENT])
            )
        return until if until is not None and until > self.clock.now() else None

    async def retry_after(self, client: str) -> int | None:
        """Seconds until ``client`` may try again, or None when it is not locked out."""
        until = await self.locked_until(client)
        if until is None:
            return None
        return max(1, math.ceil((until - self.clock.now()).total_seconds()))

    async def failed(self, client: str) -> datetime | None:
        """Count a failure; the end of the lockout when it locks ``client`` out."""
        client = client[:MAX_CLIENT]
        now = self.clock.now()
        horizon = now - timedelta(seconds=self.window_s)
        async with unit_of_work(self.sessions) as session:
            await session.execute(delete(AuthFailure).where(AuthFailure.at <= horizon))
            await session.execute(delete(AuthLockout).where(AuthLockout.until <= now))
            session.add(AuthFailure(client=client, at=now))
            await session.flush()
            count = await session.scalar(
                select(func.count())
                .select_from(AuthFailure)
                .where(AuthFailure.client == client, AuthFailure.at > horizon)
            )
            if int(count or 0) < self.max_failures:
                return None
            until = now + timedelta(seconds=self.lockout_s)
            dialect = session.get_bind().dialect.name
            insert: Any = pg_insert if dialect == "postgresql" else sqlite_insert
            statement = insert(AuthLockout).values(client=client, until=until)
            await session.execute(
                statement.on_conflict_do_update(
                    index_elements=["client"], set_={"until": statement.excluded.until}
                )
            )
            await session.execute(delete(AuthFailure).where(AuthFailure.client == client))
            return until


__all__ = ["AuthFailure", "AuthLockout", "DbLockouts"]
