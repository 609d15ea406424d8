"""The alerts stage: Signals in, incidents and alerts out.

``register`` subscribes to "signals" (group "alerter"): each signal is applied in its own
unit of work (``incidents.apply_signal``), idempotent on the signal id. Alerts are written
to the outbox in that same transaction; with ``deliver_on_signal`` they are sent right
after it commits, otherwise by the next tick.

``tick`` = deliver what is due, escalate what is overdue, deliver those escalations, and
refresh the gauges. ``start`` runs it every ``tick_interval`` with APScheduler (one at a
time, missed runs coalesced); ``stop`` lets a running tick finish.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts.config import AlertsConfig
from alerts.escalation import escalate_due
from alerts.incidents import InvalidSignal, apply_signal, open_counts
from alerts.notifiers.base import Notifier
from alerts.notifiers.registry import build_notifiers
from alerts.outbox import deliver_due, pending_count
from core.bus.base import Bus, PermanentError, RetryPolicy
from core.clock import Clock
from core.db import unit_of_work
from core.events import TOPIC_SIGNALS, Signal
from core.metrics import Metrics

log = logging.getLogger(__name__)

GROUP = "alerter"
UNTIL_IT_WORKS = 1_000_000_000  # attempts: in effect, retry until the database is back


@dataclass(frozen=True)
class TickReport:
    attempted: int
    escalated: int


class AlertService:
    def __init__(
        self,
        bus: Bus,
        sessions: async_sessionmaker[AsyncSession],
        config: AlertsConfig,
        http: httpx.AsyncClient,
        clock: Clock,
        metrics: Metrics,
    ) -> None:
        self.bus = bus
        self.sessions = sessions
        self.config = config
        self.clock = clock
        self.metrics = metrics
        # Built now so that a channel that cannot be built stops start-up.
        self.notifiers: dict[str, Notifier] = build_notifiers(config, http, clock)
        self._scheduler: Any = None
        self._running: asyncio.Task[TickReport] | None = None
        self._sending: asyncio.Task[None] | None = None
        self._stopping = False

    def register(self) -> None:
        self.bus.subscribe(
            TOPIC_SIGNALS,
            GROUP,
            self.handle_signals,
            max_batch=20,
            max_wait=0.0,
            # a database outage must not dead-letter signals: retry until it is back
            # (only InvalidSignal, a PermanentError, goes to the dead-letter topic)
            retry=RetryPolicy(max_attempts=UNTIL_IT_WORKS, max_backoff=30.0),
        )

    async def handle_signals(self, signals: list[Signal]) -> None:
        changed = 0
        for signal in signals:
            try:
                async with unit_of_work(self.sessions) as session:
                    incident = await apply_signal(
                        session, signal, self.config, self.clock, metrics=self.metrics
                    )
            except InvalidSignal as exc:
                raise PermanentError(str(exc)) from exc
            if incident is not None:
                changed += 1
                log.info(
                    "signal %s: incident %d is tier %d (%s)",
                    signal.id,
                    incident.id,
                    incident.tier,
                    incident.status,
                )
        if changed and self.config.deliver_on_signal:
            self._deliver_soon()

    def _deliver_soon(self) -> None:
        """Send the new alerts now, beside the signal consumer: a slow channel must not
        hold up the next signals. One such task at a time; the tick catches the rest."""
        if self._stopping or (self._sending is not None and not self._sending.done()):
            return
        self._sending = asyncio.create_task(self._deliver_logged(), name="alerts:deliver")

    async def sent(self) -> None:
        """Wait for the sending started by the last signals (tests, shutdown)."""
        while self._sending is not None and not self._sending.done():
            await self._sending

    async def _deliver_logged(self) -> None:
        try:
            await self.deliver()
        except Exception:
            # The alerts are safe in the outbox; the next tick sends them.
            log.exception("sending alerts right after a signal failed; the tick will retry")

    async def deliver(self) -> int:
        return await deliver_due(
            self.sessions, self.notifiers, self.config, self.clock, self.metrics
        )

    async def tick(self) -> TickReport:
        """One round: deliver due alerts, escalate overdue incidents, deliver those."""
        attempted = await self.deliver()
        escalated = await escalate_due(self.sessions, self.config, self.clock, self.metrics)
        if escalated:
            attempted += await self.deliver()
        await self.refresh_gauges()
        return TickReport(attempted=attempted, escalated=escalated)

    async def refresh_gauges(self) -> None:
        async with self.sessions() as session:
            counts = await open_counts(session)
            pending = await pending_count(session)
        for tier, count in counts.items():
            self.metrics.incidents_open.labels(str(tier)).set(count)
        self.metrics.outbox_pending.set(pending)

    async def _scheduled_tick(self) -> None:
        """The scheduler's job. The tick runs in its own task so that stop() can let it
        finish: APScheduler's asyncio executor cancels running jobs on shutdown."""
        if self._stopping:
            return
        self._running = asyncio.create_task(self.tick(), name="alerts:tick")
        try:
            await asyncio.shield(self._running)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
        except Exception:
            log.exception("alerts tick failed; the next one retries")

    async def start(self) -> None:
        if self._scheduler is not None:
            return
        self._stopping = False
        scheduler = AsyncIOScheduler()
        scheduler.add_job(
            self._scheduled_tick,
            "interval",
            seconds=self.config.tick_interval.total_seconds(),
            id="alerts-tick",
            max_instances=1,
            coalesce=True,
        )
        scheduler.start()
        self._scheduler = scheduler
        log.info(
            "alerts: %d channel(s), tick every %ss",
            len(self.notifiers),
            self.config.tick_interval.total_seconds(),
        )

    async def stop(self) -> None:
        self._stopping = True
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=False)
        sending, self._sending = self._sending, None
        if sending is not None and not sending.done():
            await sending  # logs its own failures
        running, self._running = self._running, None
        if running is not None and not running.done():
            try:
                await running
            except Exception:
                log.exception("the last alerts tick failed")
