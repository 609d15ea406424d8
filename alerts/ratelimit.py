"""Per-channel send limits, from each notifier class's ``rate_limits``.

A sliding-window log per limit (not a refilling bucket): it guarantees at most ``count``
messages in *any* window of ``per_seconds``, which is how DingTalk and WeCom count
(20 a minute; a refilling bucket can let 2x through across a window edge). A 429 with
``Retry-After`` blocks the channel until then (at least the platform's penalty).

The outbox asks ``available`` before it claims a channel's rows: what does not fit is
merged into one digest message, never dropped (see ``alerts.outbox``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from datetime import datetime, timedelta

from alerts.notifiers.base import Notifier, RateLimit


class ChannelLimiter:
    def __init__(self, limits: tuple[RateLimit, ...]) -> None:
        self.limits = limits
        self._sent: deque[datetime] = deque()
        self._longest = timedelta(seconds=max((lim.per_seconds for lim in limits), default=0))
        self.blocked_until: datetime | None = None

    def _trim(self, now: datetime) -> None:
        while self._sent and self._sent[0] <= now - self._longest:
            self._sent.popleft()

    def available(self, now: datetime) -> int:
        """How many messages may go now."""
        if self.blocked_until is not None and now < self.blocked_until:
            return 0
        if not self.limits:
            return 1_000_000
        self._trim(now)
        free = []
        for lim in self.limits:
            since = now - timedelta(seconds=lim.per_seconds)
            used = sum(1 for t in self._sent if t > since)
            free.append(max(lim.count - used, 0))
        return min(free)

    def next_free(self, now: datetime) -> datetime:
        """When at least one message may go again."""
        candidates = [now]
        if self.blocked_until is not None and now < self.blocked_until:
            candidates.append(self.blocked_until)
        self._trim(now)
        for lim in self.limits:
            window = timedelta(seconds=lim.per_seconds)
            inside = [t for t in self._sent if t > now - window]
            if len(inside) >= lim.count:
                # the oldest message that must leave the window before one more fits
                candidates.append(inside[len(inside) - lim.count] + window)
        return max(candidates)

    def take(self, now: datetime, n: int = 1) -> None:
        self._sent.extend([now] * n)

    @property
    def window(self) -> timedelta:
        """The longest window of the limits (how far back sends still count)."""
        return self._longest

    def seed(self, sent: list[datetime]) -> None:
        """Messages sent before this process started (from the outbox), oldest first."""
        self._sent = deque(sorted([*sent, *self._sent]))

    def block(self, until: datetime) -> None:
        if self.blocked_until is None or until > self.blocked_until:
            self.blocked_until = until

    def penalty(self) -> timedelta:
        return timedelta(seconds=max((lim.penalty_seconds for lim in self.limits), default=0))


class RateLimiter:
    """One ``ChannelLimiter`` per channel, built from its notifier's ``rate_limits``."""

    def __init__(self, notifiers: Mapping[str, Notifier]) -> None:
        self._channels = {
            name: ChannelLimiter(tuple(getattr(n, "rate_limits", ())))
            for name, n in notifiers.items()
        }
        # Held by the outbox around a whole claim (``alerts.outbox._claim``): two delivery
        # rounds of one alerter (the send after a signal, the tick's) each read
        # ``available`` and awaited the database before ``take``; on PostgreSQL (SKIP
        # LOCKED: different rows) both could fill the same free slots, 2x the limit.
        # Serialised, a claim plans against the slots the other took. Nothing that holds it
        # waits on it again, nor on anything that needs it. asyncio.Lock binds to a loop on
        # first contention, not here: a limiter is built without a running loop.
        self.claiming = asyncio.Lock()

    def names(self) -> list[str]:
        return list(self._channels)

    def channel(self, name: str) -> ChannelLimiter:
        limiter = self._channels.get(name)
        if limiter is None:
            limiter = self._channels[name] = ChannelLimiter(())
        return limiter
