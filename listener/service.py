"""The listener stage: mentions in (sources, webhook), matched Mentions out on "mentions".

For each mention ``ingest`` stamps ``received_at`` (the start of the alert-latency clock),
drops ids already seen, matches the watches (a repost or reply also belongs to the watches
of the mention it continues), and publishes one copy per matching watch with ``watch`` set,
keyed by the mention id. The same mention id therefore appears once per watch on the topic:
downstream idempotency is on (mention id, watch id).

A batch is published with one ``Bus.publish_many``. Its mentions are marked as seen before
it is published and all unmarked if publishing fails (the caller may retry the batch). A
failure part way through means a retry publishes the first events again: at-least-once, as
everywhere on the bus.

An event the bus refuses for its size (Kafka: over the producer's ``max_request_size`` or
the topic's ``max.message.bytes``; ``PublishIncomplete.outcomes``) can never be published:
retrying its batch failed for ever (the webhook answered 503 on every retry, a source
stalled). Its mention alone is refused instead (``too_large`` in the report, logged, not
remembered as seen) and the rest of the batch is published; the caller counts it (the
webhook answers it as a refused item, a source counts it as a skipped item). The bounds of
``core.events.Mention`` keep every mention within Kafka's default 1 MiB; this is for a
topic configured smaller, or another producer's limit.

With a ``cascade_store`` (the database) the cascade index survives a restart: it is loaded
before the sources start, and the entries of published batches are written behind, off
the ingest path (``listener.cascade_keeper``). Without one it lives in memory only.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from contextlib import aclosing
from datetime import datetime, timedelta

import httpx
from prometheus_client import Counter

from core.bus import Bus
from core.clock import Clock
from core.events import TOPIC_MENTIONS, Mention, WatchMatch
from core.metrics import Metrics
from listener.batching import SourceFailed, batched
from listener.cascade import CascadeIndex
from listener.cascade_keeper import CascadeKeeper
from listener.cascade_store import CascadeStore
from listener.config import ListenerConfig
from listener.cursors import CursorStore
from listener.dedup import Dedup, delivery_key
from listener.health import SourceHealth, State
from listener.report import IngestReport, ItemOutcome
from listener.sources.base import CheckpointedSource, Source, SourceFatalError
from listener.sources.registry import build_sources
from listener.watches import WatchMatcher

log = logging.getLogger(__name__)

_LABEL = re.compile(r"^[a-z0-9_.-]{1,32}$")
_MAX_SOURCE_LABELS = 64
FINAL_SAVE_TRIES = 3
"""Tries of the last save of a finished source's cursor (whatever the save backoff says)."""
FINAL_SAVE_MAX_WAIT = 5.0
"""The longest wait between those tries: a finished source is let go within seconds."""


class _SourceLabels:
    """Metric labels for ``Mention.source``, bounded: webhook senders choose the value,
    and every new label value is a new time series."""

    def __init__(self) -> None:
        self._known: set[str] = set()

    def __call__(self, source: str) -> str:
        if source in self._known:
            return source
        if _LABEL.match(source) and len(self._known) < _MAX_SOURCE_LABELS:
            self._known.add(source)
            return source
        return "other"


def _health(source: Source) -> SourceHealth | None:
    health = getattr(source, "health", None)
    return health if isinstance(health, SourceHealth) else None


class _SaveRetry:
    """When a source's cursor may be saved again after failed saves (doubling waits)."""

    def __init__(self, clock: Clock, first: float, maximum: float) -> None:
        self.clock = clock
        self.first = first
        self.maximum = maximum
        self.failures = 0
        self._not_before: datetime | None = None

    def due(self) -> bool:
        return self._not_before is None or self.clock.now() >= self._not_before

    def failed(self) -> float:
        """Count a failed save; the seconds until the next try."""
        wait: float = min(self.first * 2.0 ** min(self.failures, 30), self.maximum)
        self.failures += 1
        self._not_before = self.clock.now() + timedelta(seconds=wait)
        return wait

    def reset(self) -> None:
        self.failures = 0
        self._not_before = None


def _parents_first(mentions: Sequence[Mention]) -> list[int]:
    """The order to prepare ``mentions`` in (their indexes): as given, except that a new
    mention whose parent (``repost_of``, ``reply_to``) is a new mention later in the same
    batch comes right after that parent, so that it inherits its watches (a webhook
    sender's batch may list a repost before its root). Iterative (a chain may be as long
    as the batch); a cycle of parents is cut where it closes."""
    first: dict[str, int] = {}
    for index, mention in enumerate(mentions):
        if mention.change == "created":
            first.setdefault(mention.id, index)
    order: list[int] = []
    state = [0] * len(mentions)  # 0: not seen, 1: waiting for its parents, 2: placed
    for start in range(len(mentions)):
        if state[start]:
            continue
        state[start] = 1
        stack = [start]
        while stack:
            index = stack[-1]
            mention = mentions[index]
            parent: int | None = None
            if mention.change == "created":
                for parent_id in (mention.repost_of, mention.reply_to):
                    found = first.get(parent_id) if parent_id else None
                    if found is not None and state[found] == 0:
                        parent = found
                        break
            if parent is None:
                stack.pop()
                state[index] = 2
                order.append(index)
            else:
                state[parent] = 1
                stack.append(parent)
    return order


class PublishFailed(Exception):
    """The bus did not take a batch (down, timing out): the batch may be retried as it
    is. Raised by ``ListenerService.ingest`` with the transport's error as its cause."""


def _too_large(error: BaseException, count: int) -> tuple[str, ...] | None:
    """The outcome of each of the ``count`` events of a ``publish_many`` that raised
    ``error``, when the bus refused some of them for their size and lost none otherwise
    (``core.bus.kafka.PublishIncomplete.outcomes``: ``written``, ``too_large``,
    ``unsent``); None for any other failure (the bus is down: retry the batch)."""
    outcomes = getattr(error, "outcomes", None)
    if not isinstance(outcomes, tuple) or len(outcomes) != count:
        return None
    if "too_large" not in outcomes or not set(outcomes) <= {"written", "too_large", "unsent"}:
        return None
    return tuple(str(outcome) for outcome in outcomes)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class ListenerService:
    def __init__(
        self,
        bus: Bus,
        config: ListenerConfig,
        clock: Clock,
        metrics: Metrics,
        dedup: Dedup,
        *,
        sources: Sequence[Source] | None = None,
        http: httpx.AsyncClient | None = None,
        cursors: CursorStore | None = None,
        cascade_store: CascadeStore | None = None,
    ) -> None:
        """``sources``: run these instead of the ones ``config.sources`` names. ``http``
        and ``cursors``: what the network sources are built with. ``cascade_store``: where
        the cascade index is kept across restarts (None: in memory only)."""
        self.http = http
        self.cursors = cursors
        self.bus = bus
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.dedup = dedup
        self.matcher = WatchMatcher(config.watches)
        self.cascade = CascadeIndex(
            config.cascade_capacity, track_touches=cascade_store is not None
        )
        self.cascade_keeper = (
            CascadeKeeper(self.cascade, cascade_store, config, clock, metrics)
            if cascade_store is not None
            else None
        )
        self.sources: list[Source] = []
        self._given_sources = list(sources) if sources is not None else None
        self._tasks: list[asyncio.Task[None]] = []
        self._label = _SourceLabels()
        self._children: dict[tuple[int, str], Counter] = {}

    def register(self) -> None:
        """The listener consumes no topic; kept for the shape every stage has."""

    async def ingest(
        self,
        mentions: Sequence[Mention],
        on_done: Callable[[Mention], None] | None = None,
        *,
        only_watch: str | None = None,
    ) -> IngestReport:
        """Match the whole batch, then publish its events with one ``publish_many``.
        ``only_watch``: to that watch alone, whatever other watches match (a drill's posts
        go to the watch drilled, never to the other watches that name the brand).
        ``on_done(mention)`` for each mention once the batch is published (a source's
        cursor). If publishing fails, every mention of the batch is unmarked in dedup and
        the error raised: a retry of the batch goes through (events already accepted by
        the bus are published again; downstream is idempotent on the event's id). A
        mention whose event the bus refuses for its size is refused alone (``too_large``
        in the report, with its reason; logged here, counted by the caller) and the rest
        of the batch published: it could never be, and retrying the batch stalled it."""
        report = IngestReport()
        marked: list[str] = []
        pending: list[tuple[str, Mention]] = []
        owners: list[int] = []  # the index (in ``mentions``) of each pending event's mention
        learned: list[tuple[str, list[WatchMatch]]] = []
        try:
            for index in _parents_first(mentions):
                item = self._prepare(
                    index, mentions[index], report, marked, pending, learned, only_watch
                )
                owners.extend([index] * (len(pending) - len(owners)))
                report.items.append(item)
            report.items.sort(key=lambda item: item.index)
            refused = await self._publish(pending) if pending else {}
        except BaseException:
            for key in marked:
                self.dedup.forget(key)  # not (fully) published: let a retry through
            raise
        if refused:
            learned = self._refuse(mentions, report, owners, refused, learned)
        if learned and self.cascade_keeper is not None:
            self.cascade_keeper.learned(learned)  # written behind, now that it is published
        for item in report.items:  # counted once published (a retried batch counts once)
            label = self._label(mentions[item.index].source)
            if item.outcome == "duplicate":
                self._count(self.metrics.mentions_duplicate, label)
            elif item.outcome != "too_large":  # counted by the caller, as it counts refusals
                self._count(self.metrics.mentions_ingested, label)
            for watch_id in item.watches:
                self._count(self.metrics.mentions_matched, watch_id)
        if on_done is not None:
            for mention in mentions:
                on_done(mention)
        return report

    async def _publish(self, events: list[tuple[str, Mention]]) -> dict[int, str]:
        """Publish ``events``; returns the positions of those the bus refused for their
        size, each with why. One ``publish_many`` when all goes well. When some are refused
        for their size, what is not written yet goes again: each refused one alone (the
        broker refuses a partition's whole batch: alone, it is known to be that one), the
        ones never handed over together. Raises ``PublishFailed`` for any other failure."""
        refused: dict[int, str] = {}
        todo = list(range(len(events)))
        while todo:
            try:
                await self.bus.publish_many(TOPIC_MENTIONS, [events[p] for p in todo])
                return refused
            except Exception as exc:
                outcomes = _too_large(exc, len(todo))
                if outcomes is None:
                    raise PublishFailed(_describe(exc)) from exc
                if len(todo) == 1:
                    refused[todo[0]] = _describe(exc.__cause__ or exc)
                    return refused
                for position, outcome in zip(todo, outcomes, strict=True):
                    if outcome == "too_large":
                        alone = await self._publish([events[position]])
                        if alone:
                            refused[position] = alone[0]
                todo = [p for p, outcome in zip(todo, outcomes, strict=True) if outcome == "unsent"]
        return refused

    def _refuse(
        self,
        mentions: Sequence[Mention],
        report: IngestReport,
        owners: list[int],
        refused: dict[int, str],
        learned: list[tuple[str, list[WatchMatch]]],
    ) -> list[tuple[str, list[WatchMatch]]]:
        """Mark the mentions whose events the bus refused for their size ``too_large`` in
        ``report``, log them and let dedup forget them (a smaller version may come); the
        cascade entries to write, without theirs."""
        reasons: dict[int, str] = {}
        for position, reason in refused.items():
            reasons.setdefault(owners[position], reason)
        for slot, item in enumerate(report.items):
            why = reasons.get(item.index)
            if why is None:
                continue
            mention = mentions[item.index]
            report.items[slot] = ItemOutcome(
                item.index,
                item.id,
                "too_large",
                reason=f"too large for the bus, refused for its size ({why[:300]})",
            )
            report.accepted -= 1
            report.published -= len(item.watches)
            report.too_large += 1
            self.dedup.forget(delivery_key(mention))
            log.warning(
                "mention %s refused: too large for the bus (%s); the rest of its batch is "
                "published",
                mention.id[:200],
                why[:300],
            )
        gone = {mentions[index].id for index in reasons}
        return [entry for entry in learned if entry[0] not in gone]

    def _prepare(
        self,
        index: int,
        mention: Mention,
        report: IngestReport,
        marked: list[str],
        pending: list[tuple[str, Mention]],
        learned: list[tuple[str, list[WatchMatch]]],
        only_watch: str | None = None,
    ) -> ItemOutcome:
        """Dedup and match one mention; its events go to ``pending``, its dedup key to
        ``marked``. The cascade learns it now, so a reply later in the same batch finds
        it (a failed publish leaves it there; the retry remembers it again); its entry
        goes to ``learned``, for the database once the batch is published."""
        key = delivery_key(mention)
        if self.dedup.seen(key):
            report.duplicates += 1
            return ItemOutcome(index, mention.id, "duplicate")
        marked.append(key)
        stamp = {} if mention.received_at else {"received_at": self.clock.now()}
        matches = self._match(mention)
        if only_watch is not None:
            matches = [match for match in matches if match.id == only_watch]
        report.accepted += 1
        if not matches:
            report.unmatched += 1
            return ItemOutcome(index, mention.id, "unmatched")
        for match in matches:
            pending.append((mention.id, mention.model_copy(update={**stamp, "watch": match})))
            report.published += 1
        if mention.change == "created":
            self.cascade.remember(mention.id, matches)
            learned.append((mention.id, matches))
        return ItemOutcome(index, mention.id, "published", tuple(m.id for m in matches))

    def _count(self, counter: Counter, label: str) -> None:
        """``counter.labels(label).inc()``, with the labelled child cached (hot path)."""
        key = (id(counter), label)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(label)
        child.inc()

    def _match(self, mention: Mention) -> list[WatchMatch]:
        """The watches a mention goes to. An edit goes to the watches its new text
        matches and to those the original matched (so they learn the text changed); a
        deletion only to the watches the original matched (it never matches, and so never
        starts a story, on its own)."""
        if mention.change == "created":
            return self.matcher.match(
                mention.text, mention.lang, self._inherited(mention), source=mention.source
            )
        original = self.cascade.watches_of(mention.id)
        if mention.change == "deleted":
            return list(original.values())
        found = {
            m.id: m
            for m in self.matcher.match(mention.text, mention.lang, original, source=mention.source)
        }
        for watch_id, match in original.items():
            found.setdefault(watch_id, match)
        return list(found.values())

    def _inherited(self, mention: Mention) -> dict[str, WatchMatch] | None:
        if mention.reply_to is None and mention.repost_of is None:
            return None
        inherited = dict(self.cascade.watches_of(mention.reply_to))
        inherited.update(self.cascade.watches_of(mention.repost_of))
        return inherited

    async def run_source(self, source: Source) -> int:
        """Ingest everything ``source`` yields, in small batches, until its stream ends;
        returns the number of mentions taken. A failing stream is logged, counted
        (``source_errors``) and reopened after a backoff; ``SourceFatalError`` ends it
        (raised again, the source's health says ``failed``).

        A batch that cannot be published (the bus is down) is logged, counted and retried
        after the same backoff until it goes through, the stream held open meanwhile (its
        pump waits: back-pressure); the source's health says ``waiting`` (not up) until
        then. Its mentions count as delivered only once published, so the source's cursor
        never passes them. A cursor that cannot be saved (the database is down) is logged
        and counted too; ingesting goes on, the save is tried again after a backoff (a
        restart in between repeats what came after the last saved cursor, which dedup
        downstream absorbs).

        When the stream ends (a finite source, or one ended by an error), its cursor is
        saved a last time whatever the save backoff says (``_final_save``): a source that
        ends while a save waits for its retry must not leave its last cursor unsaved."""
        checkpointed = source if isinstance(source, CheckpointedSource) else None
        try:
            taken = await self._run_stream(source)
        except Exception:
            if checkpointed is not None:
                await self._final_save(checkpointed)
            raise
        if checkpointed is not None:
            await self._final_save(checkpointed)
        return taken

    async def _run_stream(self, source: Source) -> int:
        cfg = self.config
        taken = 0
        delay = cfg.source_retry_seconds
        saves = _SaveRetry(self.clock, cfg.source_retry_seconds, cfg.source_retry_max_seconds)
        while True:
            checkpointed = source if isinstance(source, CheckpointedSource) else None
            try:
                async with aclosing(batched(source.mentions, cfg.ingest_batch)) as batches:
                    async for batch in batches:
                        await self._ingest_until_published(source, batch)
                        taken += len(batch)
                        delay = cfg.source_retry_seconds
                        if checkpointed is not None:
                            await self._save_cursor(checkpointed, saves)
                return taken
            except SourceFailed as failure:
                error = failure.__cause__
                if isinstance(error, SourceFatalError):
                    self._source_error(source, None, fatal=True)
                    log.error("source %s cannot go on: %s", source.name, error)
                    raise error from None
                self._source_error(source, None)
                log.warning(
                    "source %s failed (%s: %s); reopening in %.1f s",
                    source.name,
                    type(error).__name__,
                    error,
                    delay,
                )
            await self.clock.sleep(delay)
            delay = min(delay * 2, cfg.source_retry_max_seconds)

    async def _ingest_until_published(self, source: Source, batch: list[Mention]) -> None:
        """``ingest`` the batch, retrying after a backoff while publishing fails. A mention
        the bus refuses for its size is skipped (never published: it held the source up
        for ever), counted (``mentions_rejected{reason="too_large"}``, ``source_errors``,
        the source's health) and logged; the cursor moves past it with its batch."""
        cfg = self.config
        checkpointed = source if isinstance(source, CheckpointedSource) else None
        on_done = checkpointed.delivered if checkpointed is not None else None
        health = _health(source)
        held: State | None = None  # the source's state before it was set to waiting
        delay = cfg.source_retry_seconds
        while True:
            try:
                if on_done is None:
                    report = await self.ingest(batch)
                else:
                    report = await self.ingest(batch, on_done)
            except PublishFailed as exc:  # the bus is down; a bug in matching is not retried
                self._source_error(source, f"publishing failed: {type(exc).__name__}: {exc}")
                log.warning(
                    "source %s: publishing a batch of %d failed (%s: %s); retrying in %.1f s",
                    source.name,
                    len(batch),
                    type(exc).__name__,
                    exc,
                    delay,
                )
                if health is not None and health.state != "waiting":
                    held = health.state
                    health.set_state("waiting")
                await self.clock.sleep(delay)
                delay = min(delay * 2, cfg.source_retry_max_seconds)
                continue
            if held is not None and health is not None and health.state == "waiting":
                log.info("source %s: publishing again", source.name)
                health.set_state(held)
            for item in report.items:  # skipped, as an item the source cannot read is
                if item.outcome == "too_large":
                    self.metrics.mentions_rejected.labels(source.name, "too_large").inc()
                    self._source_error(source, f"mention {item.id[:200]} skipped: {item.reason}")
            return

    async def _save_cursor(self, source: CheckpointedSource, saves: _SaveRetry) -> None:
        if not saves.due():
            return
        try:
            await source.save_cursor()
        except Exception as exc:
            wait = saves.failed()
            self._source_error(source, f"saving the cursor failed: {type(exc).__name__}: {exc}")
            log.warning(
                "source %s: saving its cursor failed (%s: %s); trying again in %.1f s",
                source.name,
                type(exc).__name__,
                exc,
                wait,
            )
        else:
            if saves.failures:
                log.info("source %s: its cursor is saved again", source.name)
            saves.reset()

    async def _final_save(self, source: CheckpointedSource) -> None:
        """Save the cursor of a source whose stream ended: up to ``FINAL_SAVE_TRIES``
        tries, ``source_retry_seconds`` apart (doubling, at most ``FINAL_SAVE_MAX_WAIT``).
        A cursor still not saved is logged as an error and counted (``source_errors``,
        the source's health): a restart repeats what came after the last saved cursor."""
        delay = min(self.config.source_retry_seconds, FINAL_SAVE_MAX_WAIT)
        for attempt in range(1, FINAL_SAVE_TRIES + 1):
            try:
                await source.save_cursor(force=True)
            except Exception as exc:
                if attempt < FINAL_SAVE_TRIES:
                    await self.clock.sleep(delay)
                    delay = min(delay * 2, FINAL_SAVE_MAX_WAIT)
                    continue
                reason = f"{type(exc).__name__}: {exc}"
                health = _health(source)
                ended_by = health.last_error if health and health.state == "failed" else None
                self._source_error(
                    source, f"saving the last cursor failed {attempt} times: {reason}"
                )
                if health is not None and ended_by is not None:
                    health.last_error = ended_by  # the error that ended the source stays
                log.error(
                    "source %s finished, but saving its last cursor failed %d times (%s): "
                    "a restart repeats what it delivered since the last saved cursor",
                    source.name,
                    attempt,
                    reason,
                )
            else:
                if attempt > 1:
                    log.info("source %s: its last cursor is saved (try %d)", source.name, attempt)
            return

    def _source_error(self, source: Source, message: str | None, *, fatal: bool = False) -> None:
        """Count an error of ``source`` in ``source_errors``, and in its health when it keeps
        one (``message``: None when the source recorded it there itself); ``fatal``: its
        health says ``failed`` (``crisiswatch_source_up`` 0)."""
        self.metrics.source_errors.labels(source.name).inc()
        health = _health(source)
        if health is None:
            return
        if message is not None:
            health.errors += 1
            health.last_error = message
        if fatal:
            health.set_state("failed")

    async def start(self) -> None:
        """Load the cascade index (with a ``cascade_store``), then start the sources (a
        source that cannot start stops start-up) and run them."""
        if self._tasks:
            return
        if self.cascade_keeper is not None:
            await self.cascade_keeper.start()  # before any source: reposts find their roots
        if self._given_sources is not None:
            sources = self._given_sources
        else:
            sources = build_sources(
                self.config.sources,
                self.clock,
                self.metrics,
                http=self.http,
                cursors=self.cursors,
            )
        started: list[Source] = []
        try:
            for source in sources:
                await source.start()
                started.append(source)
        except BaseException:
            for source in reversed(started):
                await source.stop()
            if self.cascade_keeper is not None:
                await self.cascade_keeper.stop()
            raise
        self.sources = started
        self._tasks = [
            asyncio.create_task(self._run(source), name=f"listener:{source.name}")
            for source in started
        ]
        if started:
            log.info("listener running sources: %s", ", ".join(s.name for s in started))
        for source in started:
            coverage = getattr(source, "coverage", None)
            if coverage is not None:
                log.info(
                    "source %s needs %s; covers %s; misses %s",
                    source.name,
                    coverage.needs,
                    coverage.covers,
                    coverage.misses or "-",
                )

    async def _run(self, source: Source) -> None:
        try:
            taken = await self.run_source(source)
            log.info("source %s finished after %d mentions", source.name, taken)
        except SourceFatalError:
            pass  # logged and counted by run_source
        except Exception as exc:
            self._source_error(source, f"{type(exc).__name__}: {exc}", fatal=True)
            log.exception("source %s stopped", source.name)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # stop()
            # from inside (a bus or store call whose future was cancelled elsewhere): the
            # source ends, visibly, instead of its task vanishing as if stopped
            self._source_error(source, "CancelledError raised while it was running", fatal=True)
            log.exception("source %s stopped: CancelledError raised inside it", source.name)

    async def join(self) -> None:
        """Wait until every running source has finished (replays; tests)."""
        await asyncio.gather(*self._tasks)

    async def stop(self) -> None:
        """Stop the sources' tasks, then the sources (a batch in flight is abandoned and
        its unpublished mentions unmarked in dedup), then write the cascade entries that
        wait. Tasks first: a source saves its cursor in ``stop``, and nothing may be
        delivered after that save."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for source in self.sources:
            try:
                await source.stop()
            except Exception:
                log.exception("stopping source %s failed", source.name)
        self._tasks = []
        self.sources = []
        if self.cascade_keeper is not None:
            await self.cascade_keeper.stop()

    @property
    def running(self) -> bool:
        return any(not task.done() for task in self._tasks)
