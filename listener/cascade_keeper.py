"""Keeps the cascade index's copy in the database (``listener.cascade_store``): loaded at
start, written behind, pruned.

* Load: ``start`` reads the most recently used rows (at most ``cascade_capacity``, used
  within ``cascade_keep_days``, for at most ``cascade_load_seconds``) into the index
  before the sources start, so the first repost after a restart finds its root. If the
  database cannot be read, the listener starts with an empty index (logged, counted) and
  the load is tried again with every flush until it succeeds; what it loads then goes
  behind what was learned meanwhile.
* Write-behind: ingesting never touches the database. A mention's entry is handed over
  (``learned``) only once its batch is published (an entry only matters for a mention
  that went out; a batch that failed to publish is remembered again when it is retried);
  the index notes the entries that reposts and replies used. Every
  ``cascade_flush_seconds`` both go out in one transaction (new entries upserted, used
  ones get a new ``used_at``), and once more at ``stop``.
* Outage: a failed write keeps everything for the next one, tried after a doubling wait
  (``cascade_flush_seconds``, up to ``RETRY_MAX_SECONDS``); ingesting goes on. At most
  ``cascade_capacity`` new entries wait (the oldest beyond that are dropped, counted:
  the index itself has forgotten them). A crash loses what waited; a stop tries the last
  write ``FINAL_TRIES`` times.
* Bounds: every ``PRUNE_EVERY_SECONDS`` (after a successful write) rows not used for
  ``cascade_keep_days`` are deleted, then the least recently used beyond
  ``cascade_capacity`` rows; at most ``PRUNE_BUDGET`` rows a round, in batches of
  ``cascade_store.CHUNK``, each its own transaction. So the table holds about
  ``cascade_capacity`` rows plus what a prune interval adds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import aclosing
from datetime import datetime, timedelta
from time import monotonic

from core.clock import Clock
from core.events import WatchMatch
from core.metrics import Metrics
from listener.cascade import CascadeIndex
from listener.cascade_store import CascadeStore, Decoder, encode
from listener.config import ListenerConfig

log = logging.getLogger(__name__)

RETRY_MAX_SECONDS = 60.0
"""The longest wait between writes while the database is down."""
PRUNE_EVERY_SECONDS = 60.0
PRUNE_BUDGET = 200_000
"""Rows one prune round deletes at most (the rest wait for the next round): a round a
minute keeps up with about 3,300 new matched mentions a second."""
FINAL_TRIES = 3
FINAL_WAIT_SECONDS = 1.0
"""The first wait between the tries of the last write (doubling)."""
STOP_WAIT_SECONDS = 10.0
"""How long ``stop`` lets a write in progress finish before cancelling it."""


class CascadeKeeper:
    def __init__(
        self,
        index: CascadeIndex,
        store: CascadeStore,
        config: ListenerConfig,
        clock: Clock,
        metrics: Metrics,
    ) -> None:
        self.index = index
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.keep = timedelta(days=config.cascade_keep_days)
        self.flush_seconds = config.cascade_flush_seconds
        self.load_seconds = config.cascade_load_seconds
        self.brands = {w.id: w.brand for w in config.watches}
        self.loaded = False
        self.failures = 0  # writes failed in a row
        self._pending: dict[str, tuple[Sequence[WatchMatch], datetime]] = {}
        self._touched: dict[str, None] = {}
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self._stopping = False
        self._next_prune: datetime | None = None

    @property
    def unsaved(self) -> int:
        """New entries waiting to be written."""
        return len(self._pending)

    # --- the ingest path (no I/O) ------------------------------------------------------

    def learned(self, entries: Iterable[tuple[str, Sequence[WatchMatch]]]) -> None:
        """Entries of a published batch, to be written with the next flush."""
        now = self.clock.now()
        pending = self._pending
        for mention_id, matches in entries:
            pending.pop(mention_id, None)  # (a newer one goes to the end)
            pending[mention_id] = (matches, now)
        self._trim()

    def _trim(self) -> None:
        pending, capacity = self._pending, self.index.capacity
        dropped = len(pending) - capacity
        if dropped > 0:
            for mention_id in list(_first(pending, dropped)):
                del pending[mention_id]
            self.metrics.cascade_dropped.labels("overflow").inc(dropped)
        excess = len(self._touched) - capacity
        if excess > 0:
            for mention_id in list(_first(self._touched, excess)):
                del self._touched[mention_id]
        self.metrics.cascade_unsaved.set(len(pending))

    # --- start, run, stop ----------------------------------------------------------------

    async def start(self) -> None:
        """Load the index, then write behind in the background until ``stop``."""
        if self._task is not None:
            return
        self._stopping = False
        await self.load()
        self._next_prune = None  # the first round after start prunes
        self._task = asyncio.create_task(self._run(), name="listener:cascade")

    async def stop(self) -> None:
        """Stop writing in the background (a write in progress may end, for at most
        ``STOP_WAIT_SECONDS``), then write what waits: ``FINAL_TRIES`` tries, for at most
        ``STOP_WAIT_SECONDS`` in all (a database that does not answer must not hold up
        the shutdown)."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            if not self._busy:
                task.cancel()
            done, _ = await asyncio.wait({task}, timeout=STOP_WAIT_SECONDS)
            if not done:
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        try:
            async with asyncio.timeout(STOP_WAIT_SECONDS):
                saved = await self._final_flush()
        except TimeoutError:
            saved = False
        if not saved:
            lost = len(self._pending)
            self.metrics.cascade_dropped.labels("stop").inc(lost)
            log.error(
                "cascade index: the last save failed: %d entries are lost (after a restart "
                "their reposts match on their own text only)",
                lost,
            )
            self._pending.clear()
            self._touched.clear()
            self.metrics.cascade_unsaved.set(0)

    async def _run(self) -> None:
        while not self._stopping:
            wait = self.flush_seconds
            if self.failures:
                wait = min(self.flush_seconds * 2.0 ** min(self.failures, 30), RETRY_MAX_SECONDS)
                wait = max(wait, self.flush_seconds)
            await self.clock.sleep(wait)
            self._busy = True
            try:
                await self.round()
            finally:
                self._busy = False

    async def round(self) -> None:
        """One background step: the load if the start-up one failed, a flush, and a
        prune when one is due."""
        if not self.loaded:
            await self.load()
        if not await self.flush():
            return
        now = self.clock.now()
        if self._next_prune is None or now >= self._next_prune:
            self._next_prune = now + timedelta(seconds=PRUNE_EVERY_SECONDS)
            await self.prune()

    # --- the database ------------------------------------------------------------------

    async def load(self) -> bool:
        """Read the most recently used rows into the index (behind what it holds)."""
        started = monotonic()
        deadline = started + self.load_seconds
        since = self.clock.now() - self.keep
        decode = Decoder(self.brands)
        restored = pages_read = 0
        cut_short = False
        try:
            async with (
                asyncio.timeout(self.load_seconds),  # (a database that does not answer)
                aclosing(self.store.load(since, self.index.capacity)) as pages,
            ):
                async for page in pages:
                    pages_read += 1
                    restored += self.index.restore((i, decode(w)) for i, w in page)
                    if monotonic() >= deadline:
                        cut_short = True
                        break
        except Exception as exc:
            if isinstance(exc, TimeoutError) and pages_read:
                cut_short = True  # slow, not down: keep what came
            else:
                self.metrics.cascade_db_errors.labels("load").inc()
                log.error(
                    "cascade index: loading it from the database failed (%s: %s) after %d "
                    "entries; reposts of mentions taken in before this start match on their "
                    "own text until a later try succeeds (with the next flush)",
                    type(exc).__name__,
                    exc or "no answer",
                    restored,
                )
                self.metrics.cascade_restored.inc(restored)
                return False
        self.loaded = True
        self.metrics.cascade_restored.inc(restored)
        elapsed = monotonic() - started
        if cut_short:
            log.warning(
                "cascade index: loading stopped after %.1f s (listener.cascade_load_seconds) "
                "with the %d most recent entries",
                elapsed,
                restored,
            )
        else:
            log.info("cascade index: %d entries loaded in %.2f s", restored, elapsed)
        if decode.unreadable:
            log.warning("cascade index: %d stored entries could not be read", decode.unreadable)
        return True

    async def flush(self) -> bool:
        """Write the entries learned and used since the last write; False if it failed
        (everything is kept for the next try)."""
        for mention_id in self.index.take_touched():
            self._touched[mention_id] = None
        if not self._pending and not self._touched:
            return True
        entries, self._pending = self._pending, {}
        touched, self._touched = self._touched, {}
        encoded: dict[tuple[tuple[str, tuple[str, ...]], ...], str] = {}  # most rows share
        rows = []
        for mention_id, (matches, at) in entries.items():
            key = tuple((m.id, m.terms) for m in matches)
            watches = encoded.get(key)
            if watches is None:
                watches = encoded[key] = encode(matches)
            rows.append((mention_id, watches, at))
        try:
            await self.store.save(rows, list(touched), self.clock.now())
        except BaseException as exc:
            entries.update(self._pending)  # learned meanwhile: newer
            touched.update(self._touched)
            self._pending, self._touched = entries, touched
            self._trim()
            if not isinstance(exc, Exception):
                raise
            self.failures += 1
            self.metrics.cascade_db_errors.labels("save").inc()
            log.warning(
                "cascade index: saving %d entries failed (%s: %s); ingesting goes on, the "
                "next try in %.0f s",
                len(entries),
                type(exc).__name__,
                exc,
                min(self.flush_seconds * 2.0 ** min(self.failures, 30), RETRY_MAX_SECONDS),
            )
            return False
        if self.failures:
            log.info("cascade index: saved again after %d failed tries", self.failures)
        self.failures = 0
        self.metrics.cascade_unsaved.set(len(self._pending))
        return True

    async def prune(self) -> None:
        """Delete rows unused for ``cascade_keep_days`` and those beyond the capacity."""
        try:
            pruned = await self.store.prune(
                self.clock.now() - self.keep, self.index.capacity, PRUNE_BUDGET
            )
        except Exception as exc:
            self.metrics.cascade_db_errors.labels("prune").inc()
            log.warning(
                "cascade index: pruning the table failed (%s: %s); tried again in %.0f s",
                type(exc).__name__,
                exc,
                PRUNE_EVERY_SECONDS,
            )
            return
        if pruned.age:
            self.metrics.cascade_pruned.labels("age").inc(pruned.age)
        if pruned.capacity:
            self.metrics.cascade_pruned.labels("capacity").inc(pruned.capacity)

    async def _final_flush(self) -> bool:
        wait = FINAL_WAIT_SECONDS
        for attempt in range(1, FINAL_TRIES + 1):
            if await self.flush():
                return True
            if attempt < FINAL_TRIES:
                await self.clock.sleep(wait)
                wait *= 2
        return False


def _first(items: Mapping[str, object], n: int) -> Iterator[str]:
    for count, key in enumerate(items):
        if count >= n:
            return
        yield key
