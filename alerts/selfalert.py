"""Alerts about crisiswatch itself: a channel that fails for good opens an incident.

The incident's watch is ``crisiswatch`` and its story ``channel:<name>``, so routes can
send it to the people who run crisiswatch (``match: {watch: [crisiswatch]}``); it goes
through the routing tree, escalation and SLA like any other. One incident per channel
outage: while the channel's incident is unfinished (open, acknowledged, mitigating), a
further failure only adds to its timeline; once it was resolved or closed, the next
failure is a new outage and opens a new incident (story ``channel:<name>#<n>``, n = 2,
3, ...), alerted like the first. A channel name too long for the incidents' ids (255
characters, with the signal id's prefix and time) is shortened in them (``channel_token``:
its head and a hash); the explanation names it in full.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.config import SELF_WATCH, AlertsConfig
from alerts.incidents import apply_signal
from alerts.models import FINISHED, Incident
from alerts.outbox import OnFailed
from core.events import HeatFeatures, Signal, WatchMatch
from core.metrics import Metrics

log = logging.getLogger(__name__)

WATCH = SELF_WATCH
MAX_TOKEN = 180
"""The longest channel name used as is in the self-alert's story and signal id: with
``channel:`` and ``#<n>`` (story), or the prefix and an ISO time (signal id), they stay
within the incidents' 255 characters (``incidents.MAX_ID``)."""


def channel_token(channel: str) -> str:
    """The channel's name in the self-alert's ids: as is, or, over ``MAX_TOKEN``
    characters, its head and a hash of the whole (two long names sharing a head differ)."""
    if len(channel) <= MAX_TOKEN:
        return channel
    digest = hashlib.sha256(channel.encode()).hexdigest()[:12]
    return f"{channel[: MAX_TOKEN - len(digest) - 1]}~{digest}"


class _At:
    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:  # pragma: no cover - never used
        raise NotImplementedError


async def outage_story(session: AsyncSession, channel: str) -> tuple[str, bool]:
    """(story of the channel's current outage, whether its incident is still unfinished):
    the story of its latest incident while that is unfinished, else a new one."""
    base = f"channel:{channel_token(channel)}"
    found = (
        await session.execute(
            select(Incident.story_id, Incident.status).where(
                Incident.watch_id == WATCH,
                or_(
                    Incident.story_id == base,
                    Incident.story_id.startswith(f"{base}#", autoescape=True),
                ),
            )
        )
    ).all()
    lives: dict[int, str] = {}
    for story_id, status in found:
        tail = story_id[len(base) + 1 :]
        if story_id == base:
            lives[1] = status
        elif tail.isascii() and tail.isdigit():
            lives[int(tail)] = status
    if not lives:
        return base, False
    last = max(lives)
    if lives[last] not in FINISHED:
        return (base if last == 1 else f"{base}#{last}"), True
    return f"{base}#{last + 1}", False


def channel_failure_handler(
    config: AlertsConfig, metrics: Metrics | None = None
) -> OnFailed | None:
    """The outbox's ``on_failed``; ``metrics`` counts the incident like any other
    (``crisiswatch_incidents_opened_total``, ``crisiswatch_alerts_suppressed_total``)."""
    if not config.self_alert.enabled:
        return None

    async def channel_failed(
        session: AsyncSession, channel: str, error: str, now: datetime
    ) -> None:
        story_id, ongoing = await outage_story(session, channel)
        signal = Signal(
            id=f"{WATCH}:channel-failed:{channel_token(channel)}:{now.isoformat()}",
            story_id=story_id,
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
        incident = await apply_signal(session, signal, config, _At(now), metrics=metrics)
        if incident is None:  # this very failure was applied already
            return
        if ongoing:
            log.error(
                "channel %s fails for good again: noted on its open incident %d",
                channel,
                incident.id,
            )
        else:
            log.error("channel %s fails for good: incident %d raised", channel, incident.id)

    return channel_failed
