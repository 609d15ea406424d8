"""The detector stage on the bus: "scored" (group "detector") in, "signals" out.

Signals are published with ``key=story_id`` (a story's Signals stay in order). The
handler is idempotent: the core ignores mentions it already counted, and Signals whose
publication failed stay queued and go out first on the next delivery, so a failed
publish neither loses a Signal nor produces a second one with another id.

Each detector process owns the watches of its "scored" partitions (the topic is keyed
by watch). Where their state lives (``detector.state_store``):

* ``memory`` (the in-process bus; replays and benchmarks): only in this process. A
  restart starts every watch afresh, under a new Signal-id generation.
* ``database`` (Kafka): besides memory, in the ``detector_state`` and
  ``detector_story_state`` tables (``statestore.py``): per watch, its watch-level state
  and one row per story. A batch is handled as: restore the watches it names that this
  process does not hold (one load; a watch that starts afresh is saved empty at once, so
  that its generation is stored before a Signal under it is published), observe it,
  publish its Signals, save what changed in the watches it touched (the watch rows and
  the rows of the stories the batch changed or forgot; one transaction), return; only
  then does the bus commit the batch.
  A crash (``kill -9``) anywhere in between redelivers the batch onto the last saved
  state: the same decisions, the same Signal ids (the generation is part of the watch's
  state), which the alerter takes as redeliveries (it applies a Signal id once). A save
  that fails leaves its changes noted: the next save writes them. Nothing is lost (the
  saved state never runs ahead of what was published) and nothing is signalled twice
  under another id. On a rebalance the process drops every watch it holds: the next
  mention of a watch loads the state its previous owner saved before committing. A
  state that cannot be read (damaged, a format not in ``READABLE_FORMATS``) is logged
  and counted (``crisiswatch_detector_restores_total{outcome="failed"}``); its watch
  starts afresh with a new generation, and the stage goes on. One of an older format
  that it reads is written whole by its next save (``snapshot.py``).

  Fencing: each load claims its watches (``detector_state.epoch`` + 1, see
  ``statestore.py``), and a save writes a watch only while the table still holds this
  process's epoch. A process that lost its partitions while it was stuck (a database
  outage longer than the poll interval, a long pause) and whose successor has claimed a
  watch since is refused that watch's save: it logs an ERROR, counts it
  (``crisiswatch_detector_state_fenced_total``), drops the watch and fails the batch
  with ``StateFenced`` (nothing committed; the bus tries it again). If the process still
  owns the partition, that next try claims the watch again, loads its successor's state
  (mentions it already counted are ignored) and goes on.

A database that is down (``core.db.database_unavailable``: refused or dropped
connections, a server restarting, a pool timeout) never dead-letters a batch: its load
or save is retried inside the handler, with a backoff capped at ``max_backoff`` (30 s),
until the database is back. Meanwhile the batch is not committed and the next one
waits: each retry is logged and counted (``crisiswatch_detector_state_db_retries_total``)
and ``crisiswatch_detector_state_db_waiting`` is 1. A retried save writes the same
changes again (upserts and deletes: idempotent even when the lost reply hid a commit).
Other errors keep the bus's retry policy (five tries, then the dead-letter topic, the
failing batch split to find the bad mention): a mention whose ``observe`` raised raises
again on each later try (it may have been counted halfway, and a redelivery would
otherwise be taken for a duplicate), so a bad message still ends on the dead-letter
topic instead of blocking the stage. Saving on shutdown and on a rebalance is tried
once (neither may wait for the database; a batch still waiting is not committed, so it
is delivered again): a failure there is logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from core.bus import Bus, PermanentError, RetryPolicy
from core.db import database_unavailable
from core.events import TOPIC_SCORED, TOPIC_SIGNALS, ScoredMention, Signal
from core.metrics import Metrics
from sentiment.detector.config import DetectorConfig
from sentiment.detector.detector import Detector, MentionRefused, WatchKey
from sentiment.detector.snapshot import (
    READABLE_FORMATS,
    STATE_FORMAT,
    SnapshotError,
    WatchChanges,
    WatchSnapshot,
)
from sentiment.detector.statestore import Fenced, StateStore

log = logging.getLogger(__name__)

GROUP = "detector"

DB_RETRY = RetryPolicy(max_attempts=1, initial_backoff=0.2, max_backoff=30.0)
"""The backoff between tries of a state load or save while the database is down (only
``backoff`` is used: it is tried until the database is back)."""

POISON_MEMORY = 1_000  # mentions whose observe raised, remembered to fail again

_T = TypeVar("_T")


class StateFenced(RuntimeError):
    """A save found watches claimed by another detector since this one loaded them:
    their state was not written, and they are dropped. The batch fails (not committed,
    the bus tries it again: a watch still delivered here is claimed again then)."""

    def __init__(self, fenced: list[Fenced]) -> None:
        self.fenced = fenced
        names = ", ".join(f"{f.key[0]!r}{' (drill)' if f.key[1] else ''}" for f in fenced)
        super().__init__(f"the state of watch(es) {names} was taken over by another detector")


class DetectorService:
    def __init__(
        self,
        bus: Bus,
        config: DetectorConfig,
        metrics: Metrics,
        *,
        generation: str | None = None,
        store: StateStore | None = None,
        db_retry: RetryPolicy = DB_RETRY,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``generation``: marks Signal ids (default: random for each watch started
        afresh, so a restart never reuses ids; replays pass "" for stable ids).
        ``store``: where watch states are saved after each batch (None: memory only).
        ``db_retry``: the backoff while the database is down (``sleep`` waits it out)."""
        self.bus = bus
        self.config = config
        self.metrics = metrics
        self.store = store
        self.detector = Detector(config, generation=generation)
        self._db_retry = db_retry
        self._sleep = sleep
        self._unpublished: deque[Signal] = deque()
        self._dirty: set[WatchKey] = set()  # changed since their last save
        # (watch, mention id) -> why its observe raised, oldest first
        self._poison: OrderedDict[tuple[WatchKey, str], str] = OrderedDict()

    def register(self) -> None:
        self.bus.subscribe(
            TOPIC_SCORED,
            GROUP,
            self.handle,
            max_batch=self.config.max_batch,
            max_wait=self.config.max_wait_seconds,
            on_rebalance=self.rebalanced if self.store is not None else None,
        )

    async def start(self) -> None:
        """Nothing runs in the background: the bus drives the stage."""

    async def stop(self) -> None:
        """Save what a failed batch left unsaved (state is otherwise saved per batch)."""
        await self._flush("stopping")

    async def handle(self, events: list[Any]) -> None:
        with self.metrics.stage_latency.labels(GROUP).time():
            await self._publish()  # left over from a failed delivery
            for event in events:
                if not isinstance(event, ScoredMention):
                    raise PermanentError(
                        f"the detector takes ScoredMention events, not {type(event).__name__}"
                    )
            keys = list(dict.fromkeys(Detector.key_of(event) for event in events))
            if self.store is not None:
                fresh = await self._restore([k for k in keys if not self.detector.holds(k)])
                await self._start_afresh(fresh)
            self._dirty.update(keys)  # (before observing: a failure may leave changes)
            folded, merged = self.detector.stories_folded, self.detector.stories_merged
            future = self.detector.future_dated
            try:
                for event in events:
                    self._observe(event)
            finally:
                joined = self.metrics.stories_joined
                joined.labels("folded").inc(self.detector.stories_folded - folded)
                joined.labels("merged").inc(self.detector.stories_merged - merged)
                self.metrics.mentions_future_dated.inc(self.detector.future_dated - future)
            self.metrics.stories_active.set(self.detector.stories_active)
            await self._publish()
            await self._save(wait_for_database=True)

    async def settle(self) -> None:
        """The end of an input (a replay whose every mention was handled): what the
        detector holds back (``Detector.settle``: mentions dated far ahead, awaiting the
        next one) is taken in, its Signals published and the state saved."""
        for key in self.detector.holding():
            self._dirty.add(key)
            self._unpublished.extend(self.detector.settle(key))
        await self._publish()
        await self._save(wait_for_database=True)

    async def rebalanced(self) -> None:
        """Partitions moved: save what is unsaved (when that is safe), then drop every
        watch; the next mention of each reloads its snapshot."""
        await self._flush("rebalancing")
        held = self.detector.watches_held
        self.detector.forget_all()
        self._dirty.clear()
        self._poison.clear()  # the next owner reloads those watches from the store
        self.metrics.stories_active.set(0)
        log.info("detector: partitions moved; dropped the state of %d watch(es)", held)

    async def _publish(self) -> None:
        while self._unpublished:
            signal = self._unpublished[0]
            # a merged story's last Signal goes the way of the story it is part of, so
            # that the alerter has it before that story's next Signals
            key = signal.merged_into or signal.story_id
            await self.bus.publish(TOPIC_SIGNALS, signal, key=key)
            self._unpublished.popleft()
            if signal.forecast_minutes is None:  # a level change, not a forecast report
                self.metrics.signals_emitted.labels(str(signal.tier)).inc()

    def _observe(self, event: ScoredMention) -> None:
        """``Detector.observe``, with its Signals queued. A mention whose observe raised
        raises again on the bus's next tries (without running again: it may have been
        counted halfway, and would pass as a redelivery): it ends on the dead-letter
        topic like any poison message, its batch's other mentions go on. One the detector
        refuses before counting anything (``MentionRefused``: a date it cannot count at)
        is dead-lettered without retries."""
        mention = event.mention
        seen = (Detector.key_of(event), mention.id)
        failed = self._poison.get(seen)
        if failed is not None:
            raise RuntimeError(f"mention {mention.id!r} failed in the detector before: {failed}")
        try:
            self._unpublished.extend(self.detector.observe(event))
        except MentionRefused as exc:  # nothing of it counted: dead-lettered at once
            raise PermanentError(str(exc)) from exc
        except Exception as exc:
            self._poison[seen] = f"{type(exc).__name__}: {exc}"
            while len(self._poison) > POISON_MEMORY:
                self._poison.popitem(last=False)
            raise

    async def _until_the_database_works(
        self, operation: str, call: Callable[[], Awaitable[_T]]
    ) -> _T:
        """``call()``, tried again (capped backoff) for as long as the database is
        unavailable; any other error is raised at once."""
        attempt = 0
        started = time.monotonic()
        try:
            while True:
                try:
                    result = await call()
                except Exception as exc:
                    if not database_unavailable(exc):
                        raise
                    attempt += 1
                    delay = self._db_retry.backoff(attempt)
                    self.metrics.detector_state_db_retries.labels(operation).inc()
                    self.metrics.detector_state_db_waiting.set(1)
                    log.warning(
                        "detector: the database is unavailable for the state %s (try %d, "
                        "again in %.1f s; the batch waits, nothing is dead-lettered): %s: %s",
                        operation,
                        attempt,
                        delay,
                        type(exc).__name__,
                        exc,
                    )
                    await self._sleep(delay)
                    continue
                if attempt:
                    log.warning(
                        "detector: the database is back; state %s done after %d tries (%.1f s)",
                        operation,
                        attempt + 1,
                        time.monotonic() - started,
                    )
                return result
        finally:
            if attempt:
                self.metrics.detector_state_db_waiting.set(0)

    async def _restore(self, keys: list[WatchKey]) -> list[WatchKey]:
        """Load the watches' saved states; the keys of those that start afresh (never
        saved, or a state it cannot read)."""
        if not keys or self.store is None:
            return []
        store = self.store
        fresh: list[WatchKey] = []
        stored = await self._until_the_database_works("load", lambda: store.load(keys))
        for key in keys:
            row = stored.get(key)
            if row is None:
                self.metrics.detector_restores.labels("fresh").inc()
                fresh.append(key)
                continue
            try:
                if row.format not in READABLE_FORMATS:
                    raise SnapshotError(
                        f"it is of format {row.format}, this detector reads "
                        f"{sorted(READABLE_FORMATS)}"
                    )
                self.detector.restore(
                    key,
                    WatchSnapshot(row.state, row.stories),
                    rewrite=row.format != STATE_FORMAT,
                )
            except SnapshotError as exc:
                log.error(
                    "detector: cannot restore the state of watch %r%s (%s); it starts "
                    "afresh: its stories restart from zero, under new Signal ids",
                    key[0],
                    " (drill)" if key[1] else "",
                    exc,
                )
                self.metrics.detector_restores.labels("failed").inc()
                fresh.append(key)
                continue
            self.metrics.detector_restores.labels("loaded").inc()
        return fresh

    async def _start_afresh(self, keys: list[WatchKey]) -> None:
        """Start the watches and save them, empty, before they observe anything: a watch
        started afresh draws a random generation, which goes into its Signal ids, so it
        must be in the store before a Signal under it is published. Else a kill between
        a watch's first Signals and its first save (its first batch can signal: a watch
        added during a crisis, a backlog) started it afresh again on the redelivery,
        under another generation, and the alerter applied every Signal twice. One save
        more per watch started, not per batch."""
        if not keys:
            return
        for key in keys:
            self.detector.start(key)
        self._dirty.update(keys)
        try:
            await self._save(wait_for_database=True)
        except BaseException:  # not stored: the next try starts them afresh again
            for key in keys:
                self.detector.forget(key)
            raise

    async def _save(self, *, wait_for_database: bool) -> None:
        """Save the changed watches. Only once every Signal is published: a snapshot
        must never count a Signal that a crash could still lose. ``wait_for_database``:
        while it is unavailable, try again until it is back (else raise)."""
        store = self.store
        if store is None or not self._dirty or self._unpublished:
            return
        started = time.perf_counter()
        changes: dict[WatchKey, WatchChanges] = {}
        try:
            for key in sorted(self._dirty):
                if self.detector.holds(key):
                    changes[key] = self.detector.changes(key)
        except BaseException:  # (a watch that cannot be written) those taken go back
            for key, delta in changes.items():
                self.detector.unsaved(key, delta)
            raise
        try:
            if wait_for_database:
                fenced = await self._until_the_database_works(
                    "save", lambda: store.save(changes, STATE_FORMAT)
                )
            else:
                fenced = await store.save(changes, STATE_FORMAT)
        except BaseException:  # (a cancellation too) the next save writes them
            for key, delta in changes.items():
                self.detector.unsaved(key, delta)
            raise
        lost = {f.key for f in fenced}
        for key, delta in changes.items():
            if key not in lost:
                self.detector.saved(key, delta)
                self.metrics.detector_snapshot_bytes.observe(delta.size)
        self._dirty.clear()
        self.metrics.detector_snapshot_save.observe(time.perf_counter() - started)
        if fenced:
            self._fenced(fenced)

    def _fenced(self, fenced: list[Fenced]) -> None:
        """Drop the watches another detector took over; fail the batch."""
        for f in fenced:
            log.error(
                "detector: watch %r%s was taken over by another detector (epoch %d -> %s); "
                "this process drops its state (not saved) and fails the batch",
                f.key[0],
                " (drill)" if f.key[1] else "",
                f.held,
                "none" if f.stored is None else f.stored,
            )
            self.metrics.detector_state_fenced.inc()
            self.detector.forget(f.key)
        self.metrics.stories_active.set(self.detector.stories_active)
        raise StateFenced(fenced)

    async def _flush(self, why: str) -> None:
        if self.store is None or not self._dirty:
            return
        if self._unpublished:
            log.warning(
                "detector %s with %d Signal(s) not yet published: the state of %d watch(es) "
                "is not saved (their last batch is delivered again)",
                why,
                len(self._unpublished),
                len(self._dirty),
            )
            return
        try:
            await self._save(wait_for_database=False)
        except Exception as exc:
            log.error(
                "detector %s: cannot save the state of %d watch(es): %s: %s",
                why,
                len(self._dirty),
                type(exc).__name__,
                exc,
            )
