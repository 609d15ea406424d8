"""Alerts about crisiswatch itself: a channel that fails for good opens an incident.

The incident's watch is ``crisiswatch`` and its story ``channel:<name>``, so routes can
send it to the people who run crisiswatch (``match: {watch: [crisiswatch]}``); it goes
through the routing tree, escalation and SLA like any other. One incident per channel: a
second failure only adds to its timeline.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from alerts.config import AlertsConfig
from alerts.incidents import apply_signal
from alerts.outbox import OnFailed
from core.events import HeatFeatures, Signal, WatchMatch

log = logging.getLogger(__name__)

WATCH = "crisiswatch"


class _At:
    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:  # pragma: no cover - never used
        raise NotImplementedError


def channel_failure_handler(config: AlertsConfig) -> OnFailed | None:
    if not config.self_alert.enabled:
        return None

    async def channel_failed(
        session: AsyncSession, channel: str, error: str, now: datetime
    ) -> None:
        signal = Signal(
            id=f"{WATCH}:channel-failed:{channel}:{now.isoformat()}",
            story_id=f"channel:{channel}",
            story_root="",
            watch=WatchMatch(id=WATCH, brand=WATCH),
            tier=config.self_alert.tier,
            previous_tier=0,
            spread=0,
            heat=HeatFeatures(
                mentions=0,
                mentions_window=0,
                window_minutes=0,
                unique_authors=0,
                reach=0,
                negative_share=0.0,
            ),
            explanation=f"crisiswatch could not deliver alerts on channel {channel}: {error}",
            at=now,
        )
        incident = await apply_signal(session, signal, config, _At(now))
        if incident is not None:
            log.error("channel %s fails for good: incident %d raised", channel, incident.id)

    return channel_failed
