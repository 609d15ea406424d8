"""The alerts stage: Signals in, incidents and alerts out.

``register`` subscribes to "signals" (group "alerter"): each signal is applied in its own
unit of work (``incidents.apply_signal``; a story's last Signal that names the story it
was merged into: ``storymerge.apply_story_merge``), idempotent on the signal id. Alerts are written
to the outbox in that same transaction; with ``deliver_on_signal`` they are sent right
after it commits, otherwise by the next tick.

``tick`` = deliver what is due, run the escalation steps that are due (APScheduler jobs
in a persistent store, ``alerts.jobs``), check the SLA clocks (a breach runs the next
step at once), queue the playbook task reminders that are due, alert the incidents that
silences which have ended had muted (once per silence) and those that incidents which
have ended had inhibited (once per ended incident), deliver what that queued, and refresh
the gauges. Each step runs on its own: one that raises is logged and counted
(``crisiswatch_alert_tick_errors_total{step}``) and the others still run, so a delivery
bug cannot stop escalations, SLA checks and reminders. Within a step, each item runs on
its own too (an incident's escalation step, an SLA breach's step, its SLA check, a task's
reminder, each incident of a silence's or an ended incident's release): one that raises
is rolled back alone, logged with its id, counted
(``crisiswatch_alert_item_errors_total{step}``) and tried again after a backoff
(``escalation.Retries``; a failed escalation step is moved later in the job store and on
its row, a failed reminder on its task's row), and the step goes on with the others, so
one bad incident cannot hold up every other incident's escalation. ``start`` runs it every
``tick_interval`` with APScheduler (one at a time, missed runs coalesced); ``stop`` lets a
running tick finish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts import escalation, inhibition, silences, sla
from alerts.config import AlertsConfig
from alerts.incidents import (
    InvalidSignal,
    Release,
    apply_signal,
    open_counts,
    release_inhibition,
    release_silence,
)
from alerts.jobs import StepJobs
from alerts.notifiers.base import Notifier
from alerts.notifiers.reasons import Reason
from alerts.notifiers.registry import build_notifiers
from alerts.outbox import AckLink, deliver_due, pending_count, retrying, seed_limiter
from alerts.ratelimit import RateLimiter
from alerts.selfalert import channel_failure_handler
from alerts.storymerge import apply_story_merge
from alerts.workflow import tasks
from core.bus.base import Bus, PermanentError, RetryPolicy
from core.clock import Clock
from core.db import database_unavailable, unit_of_work
from core.events import TOPIC_SIGNALS, Signal
from core.metrics import Metrics, drill_label

log = logging.getLogger(__name__)

GROUP = "alerter"
UNTIL_IT_WORKS = 1_000_000_000  # attempts: in effect, retry until the database is back


ITEM_STEPS = (
    escalation.ITEM,
    sla.ITEM,
    tasks.ITEM,
    "release_silences",
    "release_inhibitions",
)
"""The tick steps whose items fail on their own (``crisiswatch_alert_item_errors_total``)."""

TICK_STEPS = (
    "deliver",
    "escalate",
    "check_slas",
    "remind_tasks",
    "release_silences",
    "release_inhibitions",
    "deliver_again",
    "refresh_gauges",
)


@dataclass(frozen=True)
class TickReport:
    attempted: int
    escalated: int
    failed: tuple[str, ...] = field(default=())
    """The steps that raised (logged and counted; the others ran)."""


class AlertService:
    def __init__(
        self,
        bus: Bus,
        sessions: async_sessionmaker[AsyncSession],
        config: AlertsConfig,
        http: httpx.AsyncClient,
        clock: Clock,
        metrics: Metrics,
        *,
        ack_link: AckLink | None = None,
        jobs: StepJobs | None = None,
    ) -> None:
        """``ack_link(incident_id, channel)`` returns a signed ack URL for a message (the
        hook for ack-link tokens; None leaves ``ack_url`` empty). ``jobs``: the escalation
        job store (default: APScheduler's SQLAlchemy store in the alerts database)."""
        self.bus = bus
        self.sessions = sessions
        self.config = config
        self.clock = clock
        self.metrics = metrics
        # Built now so that a channel that cannot be built stops start-up.
        self.notifiers: dict[str, Notifier] = build_notifiers(config, http, clock)
        self.limiter = RateLimiter(self.notifiers)
        self.ack_link = ack_link
        self.on_failed = channel_failure_handler(config, metrics)
        engine = sessions.kw["bind"]
        self.jobs = jobs or StepJobs(engine.url.render_as_string(hide_password=False))
        self._scheduler: Any = None
        self._running: asyncio.Task[TickReport] | None = None
        self._sending: asyncio.Task[None] | None = None
        self._stopping = False
        self._again = False
        self._retry_labels: set[str] = set(config.channels)  # gauges reset to 0 when done
        for name in TICK_STEPS:  # every step's series exists at 0 from the start
            metrics.alert_tick_errors.labels(name)
        for name in ITEM_STEPS:
            metrics.alert_item_errors.labels(name)
        self.retries = escalation.Retries()

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
        for signal in signals:
            try:
                async with unit_of_work(self.sessions) as session:
                    if signal.merged_into is not None:
                        incident = await apply_story_merge(
                            session, signal, self.clock, metrics=self.metrics
                        )
                    else:
                        incident = await apply_signal(
                            session, signal, self.config, self.clock, metrics=self.metrics
                        )
                    step = escalation.scheduled(incident) if incident is not None else None
            except InvalidSignal as exc:
                raise PermanentError(str(exc)) from exc
            if incident is None:
                continue
            if self.config.deliver_on_signal:
                self._deliver_soon()  # each signal's alerts go while the next is applied
            if step is not None:
                await self._schedule(step)
            log.info(
                "signal %s: incident %d is tier %d (%s)",
                signal.id,
                incident.id,
                incident.tier,
                incident.status,
            )

    def _deliver_soon(self) -> None:
        """Send the new alerts now, beside the signal consumer: a slow channel must not
        hold up the next signals. One such task at a time; alerts queued while it runs
        make it go round once more (they do not wait for the tick)."""
        if self._stopping:
            return
        if self._sending is not None and not self._sending.done():
            self._again = True
            return
        self._sending = asyncio.create_task(self._deliver_logged(), name="alerts:deliver")

    async def sent(self) -> None:
        """Wait for the sending started by the last signals (tests, shutdown)."""
        while self._sending is not None and not self._sending.done():
            await self._sending

    async def _deliver_logged(self) -> None:
        while True:
            self._again = False
            try:
                await self.deliver()
            except Exception:
                # The alerts are safe in the outbox; the next tick sends them.
                log.exception("sending alerts right after a signal failed; the tick will retry")
                return
            if not self._again or self._stopping:
                return

    async def resume(self) -> None:
        """After a restart: the rate limits count what was sent before it."""
        async with self.sessions() as session:
            seeded = await seed_limiter(session, self.limiter, self.clock.now())
        if seeded:
            log.info("alerts: %d recent message(s) count against channel rate limits", seeded)

    async def _schedule(self, step: escalation.Scheduled) -> None:
        try:
            await self.jobs.schedule(step.incident_id, step.token, step.at)
        except Exception:
            # The incident row still says when; the tick's overdue check runs it anyway.
            log.exception("could not store the escalation step of incident %d", step.incident_id)

    async def deliver(self) -> int:
        return await deliver_due(
            self.sessions,
            self.notifiers,
            self.config,
            self.clock,
            self.metrics,
            limiter=self.limiter,
            ack_link=self.ack_link,
            on_failed=self.on_failed,
        )

    async def escalate(self) -> int:
        """Run the escalation steps that are due; returns how many ran. A step that fails
        is moved later (``escalation.attempt``) and the others go on."""
        ran = 0
        for job in await self.jobs.due(self.clock.now()):
            done = await self._escalate_one(job.incident_id, job.token)
            await self.jobs.done(job.id)  # after the commit: a crash before re-runs a no-op
            if done.retry_at is not None:  # same id: add it again once the old one is gone
                await self._schedule(
                    escalation.Scheduled(job.incident_id, job.token, done.retry_at)
                )
            ran += done.ran
        # Due by the row but not run from the store (a job lost in a crash): run it too.
        ran += await escalation.escalate_due(
            self.sessions,
            self.config,
            self.clock,
            self.metrics,
            schedule=self._schedule,
            retries=self.retries,
        )
        return ran

    async def _escalate_one(
        self, incident_id: int, token: str, why: Reason | None = None
    ) -> escalation.Attempt:
        return await escalation.attempt(
            self.sessions,
            incident_id,
            token,
            self.config,
            self.clock,
            self.metrics,
            self.retries,
            why=why,
            schedule=self._schedule,
        )

    async def check_slas(self) -> int:
        """Record SLA warnings/breaches; a breach runs the next escalation step now, when
        the incident's escalation is running (not when inhibition stopped it). Each
        incident's check on its own (``sla.check``: one that fails is retried after a
        backoff). The breaches are committed first: one whose step fails is logged and
        counted, the others' steps still run (its own step stays scheduled)."""
        async with unit_of_work(self.sessions) as session:
            breaches = await sla.check(
                session, self.config, self.clock.now(), self.metrics, retries=self.retries
            )
        for breach in breaches:
            log.error("incident %d (tier %d): SLA deadline missed", breach.incident_id, breach.tier)
            if not breach.escalate:
                continue
            why = Reason(code="sla_missed", tier=breach.tier)
            await self._escalate_one(breach.incident_id, breach.token, why)
        return len(breaches)

    async def release_silences(self) -> int:
        """Alert the open, unacknowledged incidents muted by silences that have ended (once
        per silence, ``incidents.release_silence``); returns how many were alerted."""
        now = self.clock.now()
        async with self.sessions() as session:
            ended = await silences.ended(session, now)
        alerted = 0
        for silence_id in ended:
            released = await self._release(
                "release_silences",
                f"silence {silence_id}",
                partial(
                    release_silence,
                    silence_id=silence_id,
                    config=self.config,
                    now=now,
                    metrics=self.metrics,
                ),
            )
            if released is None:
                continue
            alerted += released
            log.info("silence %d ended: %d incident(s) alerted", silence_id, released)
        return alerted

    async def release_inhibitions(self) -> int:
        """Alert the open, unacknowledged incidents inhibited by incidents that have ended
        (once per ended incident, ``incidents.release_inhibition``); returns how many were
        alerted."""
        now = self.clock.now()
        async with self.sessions() as session:
            ended = await inhibition.ended(session, self.config.inhibit)
        alerted = 0
        for incident_id in ended:
            released = await self._release(
                "release_inhibitions",
                f"ended incident {incident_id}",
                partial(
                    release_inhibition,
                    inhibitor_id=incident_id,
                    config=self.config,
                    now=now,
                    metrics=self.metrics,
                ),
            )
            if released:
                alerted += released
                log.info(
                    "incident %d ended: %d inhibited incident(s) alerted", incident_id, released
                )
        return alerted

    async def _release(
        self,
        step: str,
        what: str,
        release: Callable[[AsyncSession], Awaitable[Release | None]],
    ) -> int | None:
        """Run one release in its own transaction, then schedule the escalation of the
        incidents it alerted; how many (None: released before, not to release, or it
        failed). One that raises is rolled back, logged and counted, and tried again after
        a backoff (``self.retries``): the other releases of the step go on. Within it each
        incident is alerted on its own (``incidents.Release``): those that failed are
        counted each, the others are alerted, and it is tried again after the backoff for
        those (the release stays unreleased until they are)."""
        key = (step, what)
        now = self.clock.now()
        if self.retries.waiting(key, now):
            return None
        try:
            async with unit_of_work(self.sessions) as session:
                released = await release(session)
                alerted = [] if released is None else released.alerted
                steps = [escalation.scheduled(incident) for incident in alerted]
        except Exception as exc:
            if database_unavailable(exc):
                raise
            self.metrics.alert_item_errors.labels(step).inc()
            retry_at = self.retries.failed(key, now)
            log.exception(
                "alerts tick: %s: the release of %s failed; retried at %s, the others go on",
                step,
                what,
                retry_at.isoformat(),
            )
            return None
        if released is not None and released.failed:
            self.metrics.alert_item_errors.labels(step).inc(len(released.failed))
            retry_at = self.retries.failed(key, now)
            log.error(
                "alerts tick: %s: %s released, but alerting incident(s) %s failed (logged "
                "above); retried at %s",
                step,
                what,
                ", ".join(map(str, released.failed)),
                retry_at.isoformat(),
            )
        else:
            self.retries.succeeded(key)
        for scheduled in steps:
            if scheduled is not None:
                await self._schedule(scheduled)
        return None if released is None else len(alerted)

    async def remind_tasks(self) -> int:
        """Queue the playbook task reminders that are due (``alerts.workflow.tasks``), each
        on its own (one that fails is retried after a backoff)."""
        async with unit_of_work(self.sessions) as session:
            return await tasks.remind_due(
                session, self.config, self.clock.now(), self.metrics, retries=self.retries
            )

    async def tick(self) -> TickReport:
        """One round: deliver due alerts, run due escalation steps and SLA checks, queue
        due task reminders, alert what ended silences had muted and what ended incidents
        had inhibited, deliver what they queued."""
        failed: list[str] = []
        down: list[str] = []  # the step that found the database unavailable

        async def step(name: str, run: Callable[[], Awaitable[int | None]]) -> int:
            if down:
                return 0  # the database is down: the other steps would only fail too
            try:
                return await run() or 0
            except Exception as exc:
                self.metrics.alert_tick_errors.labels(name).inc()
                failed.append(name)
                if database_unavailable(exc):
                    down.append(name)
                    log.error(
                        "alerts tick: %s failed, the database is unavailable (%s: %s); "
                        "the rest of this tick is skipped, the next one retries",
                        name,
                        type(exc).__name__,
                        str(exc).splitlines()[0] if str(exc) else "",
                    )
                    return 0
                # one step's failure must not stop the others (escalations, SLA clocks)
                log.exception("alerts tick: %s failed; the other steps go on", name)
                return 0

        attempted = await step("deliver", self.deliver)
        escalated = await step("escalate", self.escalate)
        breached = await step("check_slas", self.check_slas)
        reminded = await step("remind_tasks", self.remind_tasks)
        released = await step("release_silences", self.release_silences)
        released += await step("release_inhibitions", self.release_inhibitions)
        if escalated or breached or reminded or released:
            attempted += await step("deliver_again", self.deliver)
        await step("refresh_gauges", self.refresh_gauges)
        return TickReport(attempted=attempted, escalated=escalated, failed=tuple(failed))

    async def refresh_gauges(self) -> None:
        async with self.sessions() as session:
            counts = await open_counts(session)
            pending = await pending_count(session)
            failing = await retrying(session)
        for (tier, drill), count in counts.items():
            self.metrics.incidents_open.labels(str(tier), drill_label(drill)).set(count)
        self.metrics.outbox_pending.set(pending)
        now = self.clock.now()
        self._retry_labels |= set(failing)
        for channel in self._retry_labels:
            stuck = failing.get(channel)
            age = (now - stuck.oldest_failed_at).total_seconds() if stuck else 0.0
            self.metrics.deliveries_retrying.labels(channel).set(stuck.count if stuck else 0)
            self.metrics.delivery_retrying_seconds.labels(channel).set(max(age, 0.0))

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
        await self.jobs.start()
        await self.resume()
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
        self.jobs.close()
