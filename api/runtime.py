"""Wiring: build the stages a process runs, start them in order, stop them in reverse.

One ``Runtime`` per process. Embedded mode runs every role over the memory bus and SQLite;
distributed mode runs one role per process over Kafka and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from alerts.acklinks import link_maker
from alerts.service import AlertService
from api.auth import KeyRing
from api.dbrevision import check_database_revision
from api.settings import SQLITE_WITH_KAFKA, Settings
from core.bus import Bus
from core.bus.journal import BusJournal
from core.bus.memory import MemoryBus
from core.clock import Clock, SystemClock
from core.db import make_engine, make_sessionmaker, sqlite_file, upgrade_database
from core.metrics import Metrics
from listener.cascade_store import DbCascadeStore
from listener.cursors import DbCursorStore
from listener.dedup import Deduplicator
from listener.service import ListenerService
from sentiment.classifier import Classifier
from sentiment.config import ScorerConfig
from sentiment.detector.service import DetectorService
from sentiment.detector.statestore import StateStore
from sentiment.embedder import Embedder, load_embedder
from sentiment.process import ClassifierProcessError
from sentiment.scorer import ScorerService
from sentiment.transformer import close_classifier, load_classifier

log = logging.getLogger(__name__)

T = TypeVar("T")


class Role(StrEnum):
    LISTENER = "listener"
    SCORER = "scorer"
    DETECTOR = "detector"
    ALERTER = "alerter"
    API = "api"


ALL_ROLES = frozenset(Role)
DB_ROLES = frozenset({Role.ALERTER, Role.API})
BUS_ROLES = frozenset({Role.LISTENER, Role.SCORER, Role.DETECTOR, Role.ALERTER})


def journal_path(settings: Settings) -> Path | None:
    """The memory bus journal's file (``bus.journal``): ``auto`` puts it beside a SQLite
    database file (``var/crisiswatch.db`` -> ``var/crisiswatch.db.bus-journal``); with an
    in-memory SQLite or another database, ``auto`` means no journal."""
    choice = settings.bus.journal
    if choice == "off":
        return None
    if choice != "auto":
        return Path(choice)
    database = sqlite_file(settings.database.url.get_secret_value())
    if database is None:  # a URI filename too: left to an explicit bus.journal
        return None
    return database.with_name(database.name + ".bus-journal")


class StartInterrupted(Exception):
    """The start-up was interrupted (``Runtime.interrupt_start``: SIGTERM or Ctrl-C before
    the process was up); what it had started is stopped."""


CLOSING_S = 10.0
"""Seconds allowed, in a stop's budget, for its last steps (the stages, the classifier's
child process, the HTTP client, the database engine)."""


@dataclass(frozen=True)
class StopBudget:
    """How long a stop (SIGTERM) may take, in seconds, from ``bus.stop_timeout`` (T).

    ``http``: uvicorn finishes the requests in flight (its graceful shutdown). Then the
    runtime's stop spends at most T on the bus: the in-process bus (embedded mode) drains
    for at most ``drain``, and the bus's stop gets what the drain left of T, at least
    ``bus``, for the batch in flight (a Kafka bus: all of T). Then ``CLOSING_S`` for the
    rest. An interrupted start-up waits at most T for a model still loading, then stops
    the same way (no HTTP then). ``worst_case``: keep the orchestrator's grace period
    (``terminationGracePeriodSeconds``, ``stop_grace_period``: 45 s) above it.
    """

    stop_timeout: float
    http: float
    drain: float
    bus: float

    @property
    def worst_case(self) -> float:
        return self.http + self.stop_timeout + CLOSING_S


def stop_budget(stop_timeout: float) -> StopBudget:
    drain = stop_timeout * 2 / 3  # most of it: what is queued in memory is lost otherwise
    return StopBudget(
        stop_timeout=stop_timeout,
        http=max(1, round(stop_timeout)),
        drain=drain,
        bus=stop_timeout - drain,
    )


def make_bus(settings: Settings, metrics: Metrics, journal: BusJournal | None = None) -> Bus:
    if settings.bus.kind == "memory":
        return MemoryBus(
            capacity=settings.bus.capacity,
            metrics=metrics,
            max_dead_letters_per_minute=settings.bus.max_dead_letters_per_minute,
            max_failures_in_a_row=settings.bus.max_failures_in_a_row,
            stop_timeout=settings.bus.stop_timeout,
            journal=journal,
        )
    from core.bus.kafka import KafkaBus

    return KafkaBus(settings.bus, metrics=metrics)


@dataclass
class Runtime:
    settings: Settings
    roles: frozenset[Role] = ALL_ROLES
    clock: Clock = field(default_factory=SystemClock)
    metrics: Metrics = field(default_factory=Metrics)
    classifier: Classifier | None = None
    embedder: Embedder | None = None  # loaded when scorer.embedder is set
    http: httpx.AsyncClient | None = None
    migrate: bool = False
    drain_timeout: float | None = None
    """Seconds the stop drains the in-process bus; None: ``stop_budget``'s share of
    ``bus.stop_timeout``."""
    keyring: KeyRing = field(default_factory=KeyRing)

    bus: Bus | None = None
    engine: AsyncEngine | None = None
    sessions: async_sessionmaker[AsyncSession] | None = None
    listener: ListenerService | None = None
    scorer: ScorerService | None = None
    detector: DetectorService | None = None
    alerter: AlertService | None = None
    ready: bool = False
    _own_http: bool = False
    _own_classifier: bool = False
    _own_embedder: bool = False
    _journal: BusJournal | None = None
    _starting: asyncio.Task[None] | None = None
    _interrupted: bool = False
    _loads: list[tuple[_ThreadLoad[Any], asyncio.Future[Any]]] = field(default_factory=list)
    """Loads (the models) whose start-up was cancelled while their thread ran on."""
    _needs_db: bool = False
    """Whether a role cannot work without the database (the API, the alerter, a detector
    keeping its state there): readiness then checks it. A listener only keeps hints there
    (cursors, the cascade index; writes wait out an outage), so it stays ready and keeps
    taking mentions, by its sources and the webhook, while the database is down."""

    def __post_init__(self) -> None:
        if self.settings.alerts.public_url is None:  # links in alerts point at our API
            alerts = self.settings.alerts.model_copy(
                update={"public_url": self.settings.api.public_url}
            )
            self.settings = self.settings.model_copy(update={"alerts": alerts})
        for api_key in self.settings.api.keys:
            self.keyring.add_digest(api_key.digest(), api_key.name, api_key.role, api_key.watches)

    @property
    def embedded(self) -> bool:
        return self.roles == ALL_ROLES and self.settings.bus.kind == "memory"

    @property
    def start_interrupted(self) -> bool:
        """Whether ``interrupt_start`` interrupted a start-up."""
        return self._interrupted

    async def start(self) -> None:
        """Start the roles; if one fails, what was started is stopped (consumers leave
        their groups, the producer is flushed and closed, engine and HTTP client closed)
        and the error is raised. ``StartInterrupted`` after ``interrupt_start``."""
        if self._interrupted:
            raise StartInterrupted("start-up interrupted before it began: nothing started")
        starting = self._starting = asyncio.create_task(self._start(), name="start-up")
        try:
            await starting
        except BaseException as exc:
            current = asyncio.current_task()
            # (read anew: the start-up awaited, and interrupt_start may have run meanwhile)
            interrupted = self.start_interrupted and not (current and current.cancelling())
            if interrupted:
                log.warning("start-up interrupted: stopping what was started")
            else:
                log.error("start-up failed: stopping what was started")
            try:
                await self._settle_loads()
                await self.stop()
            except Exception:
                log.exception("stopping after the failed start-up failed too")
            if interrupted:
                if not isinstance(exc, asyncio.CancelledError):
                    log.error("the interrupted start-up failed too: %s", exc)
                raise StartInterrupted(
                    "start-up interrupted: what was started is stopped"
                ) from None
            raise
        finally:
            self._starting = None

    def interrupt_start(self) -> bool:
        """Interrupt the start-up in progress (SIGTERM, Ctrl-C): ``start`` then stops what
        was started and raises ``StartInterrupted``; a start not begun yet raises it at
        once. False when there is nothing to interrupt (up already, or interrupted
        already). Call it on the event loop's thread."""
        if self.ready or self._interrupted:
            return False
        self._interrupted = True
        if self._starting is not None:
            self._starting.cancel()
        return True

    async def _start(self) -> None:
        s = self.settings
        log.info("starting roles: %s (bus: %s)", ", ".join(sorted(self.roles)), s.bus.kind)
        # a listener keeps its cascade index (and its live sources' cursors) in the
        # database, so that a repost of a mention taken in before a restart, by a live
        # source or the webhook, still finds its watches after it; a webhook-only listener
        # given no database (database.url not set) keeps the index in memory
        listener_in_db = Role.LISTENER in self.roles and (
            s.listener.sources.live or "url" in s.database.model_fields_set
        )
        # the embedded process journals its bus, so that a kill loses no event in flight;
        # its lock is taken first: a second process on these files touches nothing
        journal_file = journal_path(s) if self.embedded else None
        journal = None
        if journal_file is not None:
            journal = self._journal = BusJournal(
                journal_file, synchronous=s.bus.journal_synchronous
            )
            await journal.open()
        if self.embedded and journal is None:
            log.warning(
                "the in-process bus keeps no journal (%s): events in flight are lost if this "
                "process is killed",
                "bus.journal is off"
                if s.bus.journal == "off"
                else "the database is not a SQLite file: set bus.journal to a file path",
            )
        # a detector on Kafka, or over a journal, keeps each watch's state in the database
        detector_in_db = Role.DETECTOR in self.roles and s.detector.durable_state(
            s.bus.kind, journaled=journal is not None
        )
        self._needs_db = bool(self.roles & DB_ROLES) or detector_in_db
        if self._needs_db or listener_in_db:
            if s.bus.kind == "kafka" and sqlite_file(s.database.url.get_secret_value()):
                log.warning(SQLITE_WITH_KAFKA)
            self.engine = make_engine(
                s.database.url.get_secret_value(),
                echo=s.database.echo,
                pool_size=s.database.pool_size,
            )
            if self.migrate:
                await upgrade_database(self.engine)
            else:  # the distributed roles: `crisiswatch db upgrade` migrated it, or not
                await self._check_database_revision(self.engine)
            self.sessions = make_sessionmaker(self.engine)
        elif Role.LISTENER in self.roles:
            log.warning(
                "listener: no database.url set: its cascade index is kept in memory only "
                "(after a restart, text-less reposts of earlier mentions match on their own "
                "text); set database.url to keep it"
            )
        if self.http is None:
            self.http = httpx.AsyncClient(timeout=httpx.Timeout(10.0), follow_redirects=False)
            self._own_http = True
        if not self.roles & BUS_ROLES:  # the API alone never touches the bus: it must
            self.ready = True  # start and answer acks while the broker is down
            log.info("crisiswatch is up (no bus needed)")
            return
        self.bus = make_bus(s, self.metrics, journal)
        prefetch_fits = s.bus.capacity >= 2 * s.scorer.batch_size
        if s.bus.kind == "memory" and Role.SCORER in self.roles and not prefetch_fits:
            log.warning(
                "bus.capacity (%d) is less than twice scorer.batch_size (%d): the scorer "
                "cannot classify its next batch while it publishes one (slower end to end)",
                s.bus.capacity,
                s.scorer.batch_size,
            )

        if Role.SCORER in self.roles:
            if self.classifier is None:
                log.info("loading the sentiment model (offline)...")
                self.classifier = await self._load_classifier()
                self._own_classifier = True
                log.info(
                    "sentiment model %s %s loaded", self.classifier.name, self.classifier.version
                )
            if self.embedder is None and s.scorer.embedder is not None:
                self.embedder = await self._load("the sentence embedder", load_embedder, s.scorer)
                self._own_embedder = self.embedder is not None
            self.scorer = ScorerService(
                self.bus, self.classifier, s.scorer, self.metrics, self.embedder
            )
            self.scorer.register()
        if Role.DETECTOR in self.roles:
            self.detector = DetectorService(
                self.bus,
                s.detector,
                self.metrics,
                store=StateStore(self.sessions) if detector_in_db and self.sessions else None,
            )
            self.detector.register()
        if Role.ALERTER in self.roles:
            assert self.sessions is not None
            ack_link = link_maker(self.sessions, s.ack_links, s.alerts.public_url, self.clock)
            if s.ack_links.enabled and ack_link is None:
                log.warning("ack_links.secret is set but alerts.public_url is not: no ack links")
            for warning in (
                s.alerts.membership_warnings()
                + s.alerts.escalation_warnings()
                + s.alerts.sla_warnings()
                + s.alerts.route_warnings({w.id for w in s.listener.watches})
            ):
                log.warning("%s", warning)
            self.alerter = AlertService(
                self.bus,
                self.sessions,
                s.alerts,
                self.http,
                self.clock,
                self.metrics,
                ack_link=ack_link,
            )
            self.alerter.register()
        if Role.LISTENER in self.roles:
            for warning in s.listener.idle_warnings():
                log.warning("%s", warning)
            self.listener = ListenerService(
                self.bus,
                s.listener,
                self.clock,
                self.metrics,
                Deduplicator(s.listener.dedup_capacity),
                http=self.http,
                cursors=DbCursorStore(self.sessions, self.clock) if self.sessions else None,
                cascade_store=DbCascadeStore(self.sessions) if self.sessions else None,
            )

        if self.alerter is not None:
            # before the bus, which hands over Signals at once (a backlog after a restart):
            # the alerter's resume() counts what was sent before the restart against the
            # channels' rate limits first, or a backlog's alerts went out beyond them
            await self.alerter.start()
        await self.bus.start()
        if self.scorer is not None:
            await self.scorer.start()
        if self.detector is not None:
            await self.detector.start()
        if self.listener is not None:
            await self.listener.start()  # sources last: consumers are ready for them
        self.ready = True
        log.info("crisiswatch is up")

    async def _check_database_revision(self, engine: AsyncEngine) -> None:
        """Stop the start-up (``DatabaseNotMigrated``, ``MigratedByANewerRelease``) unless
        the database is at this release's schema. A database that does not answer is left to
        each role (the API and the listener start without it, the alerter stops): said in a
        WARNING, the check is skipped."""
        try:
            await check_database_revision(engine)
        except (OSError, sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
            log.warning(
                "could not check the database's schema revision (%s: %s): starting without "
                "the check",
                type(exc).__name__,
                exc,
            )

    async def stop(self) -> None:
        """Stop in order: sources, the bus (drained first when in memory), the stages, the
        classifier, the HTTP client, the engine. A step that fails is logged and the
        others still run (a failing alerter stop left the classifier's child process and
        every database connection open); the first failure is raised at the end."""
        self.ready = False
        log.info("stopping: sources first, then drain the bus, then the rest")
        failures: list[Exception] = []

        async def step(what: str, stop: Callable[[], Awaitable[object]]) -> None:
            try:
                await stop()
            except Exception as exc:
                log.exception("stopping: %s failed; stopping the rest", what)
                failures.append(exc)

        if self.listener is not None:
            await step("the listener", self.listener.stop)
        if isinstance(self.bus, MemoryBus) and self.bus.started:
            # nothing outlives this process's memory: hand what is queued to the stages
            # first; the drain and the bus's stop share bus.stop_timeout (StopBudget)
            budget = stop_budget(self.settings.bus.stop_timeout)
            drain = budget.drain if self.drain_timeout is None else self.drain_timeout
            loop = asyncio.get_running_loop()
            began = loop.time()
            try:
                await asyncio.wait_for(self.bus.join(), drain)
            except TimeoutError:
                log.error("gave up draining the in-process bus after %.1f s", drain)
            left = budget.stop_timeout - (loop.time() - began)
            self.bus.stop_timeout = max(budget.bus, left)
        if self.bus is not None:
            await step("the bus", self.bus.stop)
        if self._journal is not None:
            await step("the bus journal", self._journal.close)  # its file lock, for the next
        for name, service in (
            ("the detector", self.detector),
            ("the scorer", self.scorer),
            ("the alerter", self.alerter),
        ):
            if service is not None:
                await step(name, service.stop)
        if self._own_classifier:  # its child process, where it runs in one
            await step("the classifier", partial(close_classifier, self.classifier))
            self.classifier, self._own_classifier = None, False
        if self._own_embedder:  # its threads
            await step("the sentence embedder", partial(_close_embedder, self.embedder))
            self.embedder, self._own_embedder = None, False
        if self.http is not None and self._own_http:
            await step("the HTTP client", self.http.aclose)
        if self.engine is not None:
            await step("the database engine", self.engine.dispose)
        if failures:
            raise failures[0]
        log.info("crisiswatch stopped")

    async def _load_classifier(self) -> Classifier:
        """The classifier as configured; where auto chose a child process and none can be
        started here (no POSIX semaphores in some sandboxes, a script without a main
        guard), the classifier in this process, with a warning."""
        config = self._scorer_config()
        restarts = self.metrics.classifier_restarts.inc
        try:
            return await self._load("the sentiment model", load_classifier, config, restarts)
        except (ClassifierProcessError, OSError, ImportError, NotImplementedError) as exc:
            if self.settings.scorer.classifier.process is not None or not config.classifier.process:
                raise
            log.warning(
                "the sentiment classifier cannot run in a process of its own here (%s); it "
                "runs in this process's threads instead (slower end to end: the rest of the "
                "pipeline shares the GIL with it)",
                exc,
            )
            inner = config.classifier.model_copy(update={"process": False})
            in_here = config.model_copy(update={"classifier": inner})
            return await self._load("the sentiment model", load_classifier, in_here, restarts)

    async def _load(self, what: str, load: Callable[..., T], *args: Any) -> T:
        """``load(*args)`` in a thread of its own. A cancel (an interrupted start-up)
        cannot stop that thread: the load is kept in ``_loads`` for ``_settle_loads``."""
        work = _ThreadLoad(what, partial(load, *args))
        done = work.start(asyncio.get_running_loop())
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            self._loads.append((work, done))
            raise

    async def _settle_loads(self) -> None:
        """After an interrupted start-up: wait for the loads still running in their threads
        (a model; the classifier's child process), at most ``bus.stop_timeout`` in all, and
        close what they loaded. A load still running then is left to close what it loads
        itself, when it ends (the process exits meanwhile: its thread is a daemon)."""
        loads, self._loads = self._loads, []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.bus.stop_timeout
        for work, done in loads:
            if not done.done():
                log.warning(
                    "waiting up to %.0f s for %s to finish loading, to close it (a load "
                    "in a thread cannot be interrupted)",
                    max(0.0, deadline - loop.time()),
                    work.what,
                )
                await asyncio.wait([done], timeout=max(0.0, deadline - loop.time()))
            if not done.done() and work.abandon():
                killed = work.kill_children()
                log.error(
                    "%s is still loading after %.0f s: left to end in its thread (what it "
                    "loads is closed then)%s",
                    work.what,
                    self.settings.bus.stop_timeout,
                    f"; its child process {', '.join(map(str, killed))} killed" if killed else "",
                )
                continue
            try:
                loaded = await done  # (finished: its result is on its way if not here)
            except Exception as exc:
                log.info("%s failed to load (nothing to close): %s", work.what, exc)
                continue
            await asyncio.to_thread(_close, work.what, loaded)

    def _scorer_config(self) -> ScorerConfig:
        """``scorer.classifier.process`` resolved: auto is a child process where this
        process runs another stage beside the scorer (their Python would share one GIL)."""
        scorer = self.settings.scorer
        if scorer.classifier.process is not None:
            return scorer
        shared = bool(self.roles & BUS_ROLES - {Role.SCORER})
        return scorer.model_copy(
            update={"classifier": scorer.classifier.model_copy(update={"process": shared})}
        )

    async def check_ready(self) -> list[str]:
        """What is not ready, in words (empty when ready)."""
        problems: list[str] = []
        if not self.ready:
            problems.append("starting or stopping")
        if self.engine is not None and self._needs_db:
            try:
                async with self.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            except Exception as exc:
                problems.append(f"database unreachable: {type(exc).__name__}")
        if self.bus is not None:  # a consumer stopped by the dead-letter limit
            problems.extend(halt.describe() for halt in self.bus.halted())
        return problems


async def _close_embedder(embedder: Embedder | None) -> None:
    """Release what a loaded embedder holds (its model's thread pool); off the event loop."""
    close = getattr(embedder, "close", None)
    if callable(close):
        await asyncio.to_thread(close)


def _close(what: str, loaded: object) -> None:
    """Close what a load produced, where it holds something to close (a classifier's
    child process, an embedder's threads)."""
    close = getattr(loaded, "close", None)
    if not callable(close):
        return
    try:
        close()
        log.info("%s closed (its load outlived the start-up)", what)
    except Exception:
        log.exception("closing %s failed", what)


class _ThreadLoad(Generic[T]):
    """One blocking load in a daemon thread (a process's exit never waits for it), its
    result handed to the event loop; a load ``abandon``-ed before it ends closes its
    result itself."""

    def __init__(self, what: str, load: Callable[[], T]) -> None:
        self.what = what
        self._load = load
        self._lock = threading.Lock()
        self._finished = False
        self._abandoned = False
        self._children_before: set[int | None] = set()

    def start(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[T]:
        done: asyncio.Future[T] = loop.create_future()
        self._children_before = {child.pid for child in multiprocessing.active_children()}

        def hand(outcome: Callable[[], None]) -> None:
            if not done.cancelled():
                outcome()

        def run() -> None:
            try:
                result = self._load()
            except BaseException as exc:
                if self._finish():  # nobody waits for it (a child killed: it failed)
                    log.info("%s ended (%s) after it was left", self.what, type(exc).__name__)
                else:
                    _call_soon(loop, hand, partial(done.set_exception, exc))
                return
            abandoned = self._finish()
            if abandoned or not _call_soon(loop, hand, partial(done.set_result, result)):
                _close(self.what, result)  # nobody is waiting for it any more

        threading.Thread(target=run, name=f"load {self.what}", daemon=True).start()
        return done

    def _finish(self) -> bool:
        with self._lock:
            self._finished = True
            return self._abandoned

    def abandon(self) -> bool:
        """Leave the load to close its result itself when it ends; False when it has
        ended already (its result, if any, is the caller's to close)."""
        with self._lock:
            if self._finished:
                return False
            self._abandoned = True
            return True

    def kill_children(self) -> list[int]:
        """Kill the child processes started since the load began (the classifier's, whose
        model load it waits for): they ignore SIGTERM, and the process's exit would wait
        for them. The load then fails in its thread. Their process ids."""
        killed: list[int] = []
        for child in multiprocessing.active_children():
            if child.pid is not None and child.pid not in self._children_before:
                child.kill()
                killed.append(child.pid)
        return killed


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> bool:
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the loop is closed
        return False
    return True
