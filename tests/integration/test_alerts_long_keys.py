"""Signals whose ids and texts reach the limits the signal contract allows still alert,
on SQLite and PostgreSQL (which enforces column lengths): nothing the detector may send
fails the insert (the bus would retry such a signal forever)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts.config import AlertsConfig
from alerts.incidents import MAX_ID
from alerts.models import Delivery, Incident
from alerts.notifiers.base import AlertMessage
from alerts.service import AlertService
from core.bus.memory import MemoryBus
from core.clock import ManualClock
from core.events import Evidence, Signal, WatchMatch
from core.metrics import Metrics
from tests.notifier_fakes import RecordingConsole
from tests.support import tier_signal

Sessions = async_sessionmaker[AsyncSession]
pytestmark = pytest.mark.postgres


def config(**overrides: Any) -> AlertsConfig:
    data: dict[str, Any] = {
        "channels": {"cs": {"type": "console"}},
        "teams": {"customer_service": {"channels": ["cs"]}},
        "routes": {"teams": ["customer_service"], "group_wait": "PT0S"},
    }
    data.update(overrides)
    return AlertsConfig.model_validate(data)


async def alert(sessions: Sessions, clock: ManualClock, cfg: AlertsConfig, signal: Signal) -> int:
    """Handle ``signal``; how many alerts went out."""
    log: list[AlertMessage] = []
    async with httpx.AsyncClient() as http:
        metrics = Metrics()
        service = AlertService(MemoryBus(metrics=metrics), sessions, cfg, http, clock, metrics)
        service.notifiers["cs"] = RecordingConsole(log)
        try:
            await service.handle_signals([signal])
            await service.sent()
            await service.tick()
        finally:
            service.jobs.close()
    return len(log)


def evidence(clock: ManualClock, hosts: int) -> tuple[Evidence, ...]:
    return tuple(
        Evidence(
            id=f"mastodon-instance-number-{i:03d}.example.social:1",
            created_at=clock.now(),
            label="negative",
        )
        for i in range(hosts)
    )


async def test_a_digest_group_of_every_key_fits_its_column(
    any_sessions: Sessions, clock: ManualClock
) -> None:
    """``group_by`` on all four keys, a story id of the longest a signal may carry and a
    dozen sources: the group key passes 512 characters; it is cut to a readable head and a
    hash of the whole, and the alert goes out."""
    cfg = config(
        routes={
            "teams": ["customer_service"],
            "group_by": ["watch", "story", "tier", "source"],
            "group_wait": "PT0S",
        }
    )
    watch = "w" * 100
    story = (watch + ":" + "s" * MAX_ID)[:MAX_ID]
    signal = tier_signal(clock.now(), signal_id="sig#1.1", story_id=story, tier=2, watch=watch)
    signal = signal.model_copy(update={"evidence": evidence(clock, 12)})
    assert await alert(any_sessions, clock, cfg, signal) == 1
    async with any_sessions() as session:
        groups = list(await session.scalars(select(Delivery.digest_group)))
    assert len(groups) == 1 and groups[0] is not None
    column = Delivery.__table__.c.digest_group.type
    assert isinstance(column, String) and len(groups[0]) == column.length == 512
    assert groups[0].startswith(f"routes|watch={watch}|story={story[:50]}")


async def test_the_title_of_a_long_brand_fits_its_column(
    any_sessions: Sessions, clock: ManualClock
) -> None:
    """A watch's brand is free text of any length (the watch config does not bound it):
    the incident stores its first 255 characters, and so does the title."""
    signal = tier_signal(clock.now(), signal_id="sig#1.1", story_id="acme:s1", tier=3)
    signal = signal.model_copy(update={"watch": WatchMatch(id="acme", brand="B" * 400)})
    assert await alert(any_sessions, clock, config(), signal) == 1
    async with any_sessions() as session:
        incident = await session.scalar(select(Incident))
    assert incident is not None
    assert incident.brand == "B" * 255
    assert incident.title.startswith("B" * 255) and len(incident.title) <= 300
