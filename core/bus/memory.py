"""In-process bus: one bounded log per topic, one cursor per consumer group.

Publishing waits while the slowest group is ``capacity`` events behind (back-pressure,
never a drop). A group's cursor moves only after its handler returned, so a handler
failure leads to a retry of the same events, exactly as on Kafka.

``stop()`` finishes the batch in flight and stops, like the Kafka bus: what is not
handled yet stays in the log, and ``start()`` on the same instance resumes from each
group's cursor. Call ``join()`` before ``stop()`` to drain everything first. A topic
that no group reads never blocks its publishers; its last ``capacity`` events are kept (a
group added at a later start reads them from the oldest one kept, like Kafka's
"earliest"; older ones are counted in ``crisiswatch_bus_unread_discarded``).

A group halted by the dead-letter limit (``core.bus.halt``) keeps its position: its
records stay in the log, so it keeps holding its publishers back once ``capacity``
behind (memory stays bounded; nothing is dropped), and ``join()`` no longer waits for it.
``start()`` on the same instance runs it again from there. ``dead_letters`` keeps the
last ``dead_letter_capacity`` letters (each one is also logged when it is dead-lettered
and when it is forgotten). ``crisiswatch_bus_consumer_lag`` is end minus committed.

With a ``journal`` (``core.bus.journal``; the embedded runtime gives it one), the log
survives the process: each run of published records is on disk before it is appended
(and before ``publish`` returns), each group's position is written after its handler
returned, and the first ``start()`` reads back what was not handled by every group, so
a killed process loses no event. A journal that cannot be written fails the ``publish``
(the caller keeps its events and retries, as when Kafka is down); a position that cannot
be written is logged and counted (``crisiswatch_bus_journal_errors``): those events are
delivered again after a restart, never lost. Dead letters are written to the journal too
(its last ``dead_letter_capacity``, read back at start): one it cannot take fails its
batch, which is not committed and is handled again ``RETRY_DELAY`` later, as on Kafka when
the broker refuses a dead letter; so a stage whose own publish a full disk refuses is
retried until the disk has room (or halts, ``max_failures_in_a_row``), never emptied into
dead letters that only memory holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel

from core.bus.base import BatchGivenBack, Bus, DeadLetter, Record, Subscription, encode_event
from core.bus.halt import ConsumerHalted
from core.bus.journal import BusJournal, JournalError
from core.events import TOPIC_TYPES
from core.metrics import Metrics

log = logging.getLogger(__name__)

RETRY_DELAY = 1.0  # seconds before a batch whose processing failed is handled again


@dataclass
class _Topic:
    name: str
    records: list[Record] = field(default_factory=list)
    base: int = 0  # offset of records[0]
    committed: dict[str, int] = field(default_factory=dict)  # group -> next offset
    publishing: asyncio.Lock = field(default_factory=asyncio.Lock)  # journal order = log order

    @property
    def end(self) -> int:
        return self.base + len(self.records)

    def lag(self) -> int:
        if not self.committed:
            return 0  # nobody reads it: nobody is behind
        return self.end - min(self.committed.values())

    def trim(self) -> None:
        if not self.committed:
            return
        low = min(self.committed.values())
        if low > self.base:
            del self.records[: low - self.base]
            self.base = low


class MemoryBus(Bus):
    def __init__(
        self,
        capacity: int = 1000,
        metrics: Metrics | None = None,
        *,
        max_dead_letters_per_minute: int = 0,
        max_failures_in_a_row: int = 0,
        monotonic: Callable[[], float] = time.monotonic,
        dead_letter_capacity: int = 1000,
        stop_timeout: float = 15.0,
        journal: BusJournal | None = None,
    ) -> None:
        super().__init__(
            metrics,
            max_dead_letters_per_minute=max_dead_letters_per_minute,
            max_failures_in_a_row=max_failures_in_a_row,
            monotonic=monotonic,
        )
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if dead_letter_capacity < 1:
            raise ValueError("dead_letter_capacity must be at least 1")
        self.capacity = capacity
        self.stop_timeout = stop_timeout
        self.dead_letter_capacity = dead_letter_capacity
        self.dead_letters: list[DeadLetter] = []  # the last ``dead_letter_capacity``
        self._topics: dict[str, _Topic] = {}
        self._changed = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self._give_back = asyncio.Event()  # set by stop(): a handler waiting to retry yields
        self._busy: set[str] = set()
        self._stopping = False
        self._warned_unread: set[str] = set()
        self.journal = journal
        self._recovered = False

    def _topic(self, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = _Topic(name)
        return topic

    async def _open_journal(self) -> None:
        """Open the journal; the first time, take back what it holds: the records some
        group had not handled, and each group's position."""
        assert self.journal is not None
        if self._recovered:  # this memory holds the log: only open the file again
            if not self.journal.is_open:
                await self.journal.open()
            return
        saved = await self.journal.open()
        letters = await self.journal.dead_letters()
        self.dead_letters = letters[-self.dead_letter_capacity :]
        if letters:
            log.info(
                "bus journal: %d dead letter(s) kept in %s",
                len(self.dead_letters),
                self.journal.path,
            )
        groups = {(sub.topic, sub.group) for sub in self._subscriptions}
        for name, kept in saved.items():
            t = self._topic(name)
            t.base = kept.base
            t.records = [
                Record(topic=name, key=key, value=value, offset=offset)
                for offset, key, value in kept.records
            ]
            for group, position in kept.committed.items():
                if (name, group) in groups:
                    t.committed[group] = max(position, t.base)
                else:  # it would hold the log (and the publishers) back for ever
                    log.warning(
                        "bus journal: group %r of topic %r is not read in this process any "
                        "more: its position is forgotten",
                        group,
                        name,
                    )
                    await self.journal.forget_group(name, group)
            behind = {g: t.end - p for g, p in t.committed.items() if p < t.end}
            if t.records:
                log.info(
                    "bus journal: %d event(s) of %r taken back from %s (not yet handled: %s)",
                    len(t.records),
                    name,
                    self.journal.path,
                    ", ".join(f"{g} {n}" for g, n in sorted(behind.items())) or "none",
                )
            self.metrics.bus_journal_recovered.labels(name).inc(sum(behind.values()))
        self._recovered = True  # only now: a start that failed above reads it all again

    async def start(self) -> None:
        if self._started:
            return
        if self.journal is not None:
            await self._open_journal()
        for sub in self._subscriptions:
            t = self._topic(sub.topic)
            # a new group starts at the oldest record kept, never below it
            t.committed.setdefault(sub.group, t.base)
            self._report_lag(t)
        self._reset_halts()
        self._started = True
        self._stopping = False
        self._give_back = asyncio.Event()  # set by stop(): a handler waiting to retry yields
        self._tasks = [
            asyncio.create_task(self._consume(sub), name=f"bus:{sub.topic}:{sub.group}")
            for sub in self._subscriptions
        ]

    async def stop(self) -> None:
        """Stop taking batches, let the batch in flight finish (at most ``stop_timeout``
        seconds: then it is cancelled, uncommitted), then return. A handler waiting to
        retry gives its batch back at once (``BatchGivenBack``), uncommitted.

        What is not handled yet stays in the log (``start()`` resumes there).
        """
        self._stopping = True
        self._give_back.set()
        async with self._changed:
            self._changed.notify_all()
        try:
            if self._tasks:
                _, late = await asyncio.wait(self._tasks, timeout=self.stop_timeout)
                for task in late:  # a handler still working: its batch stays uncommitted
                    log.error(
                        "memory bus: %s did not finish its batch within %.0f s of stop "
                        "(a handler that hangs?): cancelled, the batch not committed",
                        task.get_name(),
                        self.stop_timeout,
                    )
                    task.cancel()
                # the tasks' own cancellation is a result here; a cancellation of stop()
                # itself still propagates
                await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            self._tasks = []
            self._started = False
            async with self._changed:
                self._stopping = False
                self._changed.notify_all()
        kept = "in its journal" if self.journal is not None else "for a restart of this bus"
        for t in self._topics.values():
            for group, pos in t.committed.items():
                if pos < t.end:
                    log.warning(
                        "memory bus stopped with %d event(s) of %r not handled by group %r "
                        "(kept %s; call join() before stop() to drain)",
                        t.end - pos,
                        t.name,
                        group,
                        kept,
                    )

    async def close(self) -> None:
        """Close the journal (its file lock is released): after ``stop()``, when this
        instance is done with. ``start()`` opens it again."""
        if self.journal is not None:
            await self.journal.close()

    async def publish(self, topic: str, event: BaseModel, *, key: str) -> None:
        await self._append(topic, [(key, encode_event(event), event)])

    async def publish_raw(self, topic: str, value: bytes, *, key: str | None) -> None:
        await self._append(topic, [(key, value, None)])

    async def publish_many(self, topic: str, events: Sequence[tuple[str, BaseModel]]) -> None:
        """In order, as many at a time as the slowest group leaves room for: one wake-up
        of the consumers per run of records, not one per record."""
        await self._append(topic, [(key, encode_event(event), event) for key, event in events])

    async def _append(
        self, topic: str, values: list[tuple[str | None, bytes, BaseModel | None]]
    ) -> None:
        """Append in order. Each record keeps its encoded bytes (dead letters, and an
        event that cannot be encoded fails here, as it would on Kafka) and the published
        instance, which consumers take as it is: decoding the bytes again would cost the
        pipeline a third of its event-loop time and give an equal event."""
        if self.journal is not None and not self._recovered:
            # its offsets would collide with the records the journal is still to give back
            raise JournalError(
                f"publish to {topic!r} before the bus started: its journal "
                f"{self.journal.path} is not read yet"
            )
        t = self._topic(topic)
        done = 0
        async with t.publishing:  # one run at a time: offsets, journal and log agree
            while done < len(values):
                async with self._changed:
                    # While stopping, a handler finishing its batch may still publish: the
                    # events are kept beyond capacity rather than refused (refusing would
                    # dead-letter them) or waited on (the consumers that would make room
                    # are stopping too).
                    await self._changed.wait_for(lambda: t.lag() < self.capacity or self._stopping)
                    room = len(values) - done if self._stopping else self.capacity - t.lag()
                    run = values[done : done + max(1, room)]
                    first, base = t.end, t.base  # only a holder of t.publishing moves the end
                if self.journal is not None:  # on disk before anyone can handle it
                    await self._journal_append(topic, first, run)
                async with self._changed:
                    for key, value, event in run:
                        if self._started and not t.committed:
                            self._keep_unread_bounded(t)
                        t.records.append(
                            Record(topic=topic, key=key, value=value, offset=t.end, event=event)
                        )
                    done += len(run)
                    self.metrics.bus_published.labels(topic).inc(len(run))
                    self._report_lag(t)
                    self._changed.notify_all()
                if self.journal is not None and t.base > base and not t.committed:
                    await self._journal_trim(t)

    async def _journal_append(
        self, topic: str, first: int, run: list[tuple[str | None, bytes, BaseModel | None]]
    ) -> None:
        """Write ``run`` to the journal. If the publisher is cancelled meanwhile (a
        source stopped, a handler cancelled at stop), the write still ends in its thread:
        wait for it and, if it went through, append the records to the log before raising
        the cancellation, so that journal and log never disagree (the caller retries what
        it was told failed: at least once)."""
        assert self.journal is not None
        rows = [(k, v) for k, v, _ in run]
        write = asyncio.create_task(self.journal.append(topic, first, rows))
        try:
            await asyncio.shield(write)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await write
            if write.done() and not write.cancelled() and write.exception() is None:
                t = self._topic(topic)
                async with self._changed:
                    for key, value, event in run:
                        t.records.append(
                            Record(topic=topic, key=key, value=value, offset=t.end, event=event)
                        )
                    self.metrics.bus_published.labels(topic).inc(len(run))
                    self._report_lag(t)
                    self._changed.notify_all()
            raise
        except Exception:
            self.metrics.bus_journal_errors.labels("append").inc()
            raise

    async def _journal_trim(self, t: _Topic) -> None:
        """Let go of what nobody reads. The publish went through: a failure here is
        logged and counted, not raised (the caller would publish its events again)."""
        assert self.journal is not None
        try:
            await self.journal.trim(t.name, t.base)
        except Exception as exc:  # the next trim deletes them; a restart reads them back
            self.metrics.bus_journal_errors.labels("trim").inc()
            log.error("bus journal: cannot let go of %r below %d (%s)", t.name, t.base, exc)

    def _keep_unread_bounded(self, t: _Topic) -> None:
        """A started bus where no group reads ``t`` (a role subset on the memory bus, a
        misconfiguration: nothing else can read this process's memory) keeps its last
        ``capacity`` events, not all of them for ever."""
        if t.name not in self._warned_unread:
            self._warned_unread.add(t.name)
            log.warning(
                "no group reads topic %r on this bus: only its last %d events are kept "
                "(for a group added at a restart); run the roles that read it in this "
                "process, or use the Kafka bus",
                t.name,
                self.capacity,
            )
        excess = len(t.records) + 1 - self.capacity
        if excess > 0:
            del t.records[:excess]
            t.base += excess
            self.metrics.bus_unread_discarded.labels(t.name).inc(excess)

    async def dead_letter(self, letter: DeadLetter) -> None:
        if self.journal is not None:  # its only copy: on disk before the record is let go
            try:
                await self.journal.dead_letter(letter, self.dead_letter_capacity)
            except Exception:
                self.metrics.bus_journal_errors.labels("dead_letter").inc()
                raise
        if len(self.dead_letters) >= self.dead_letter_capacity:
            old = self.dead_letters.pop(0)
            log.warning(
                "memory bus keeps %d dead letters: forgetting %s[%d]@%d of group %s (%s)",
                self.dead_letter_capacity,
                old.topic,
                old.partition,
                old.offset,
                old.group,
                old.reason,
            )
        self.dead_letters.append(letter)

    def _report_lag(self, t: _Topic) -> None:
        for group, pos in t.committed.items():
            self.metrics.bus_consumer_lag.labels(t.name, group).set(t.end - pos)

    async def join(self) -> None:
        """Wait until every group has handled everything published so far (and what that
        produced in turn). For tests and replays."""
        async with self._changed:
            await self._changed.wait_for(self._idle)

    def _is_stopping(self) -> bool:
        return self._stopping

    def _idle(self) -> bool:
        if self._busy:
            return False
        halted = {(h.topic, h.group) for h in self.halted()}
        return all(
            pos >= t.end or (t.name, group) in halted
            for t in self._topics.values()
            for group, pos in t.committed.items()
        )

    async def _consume(self, sub: Subscription) -> None:
        t = self._topic(sub.topic)
        name = f"{sub.topic}:{sub.group}"
        while True:
            async with self._changed:
                await self._changed.wait_for(
                    lambda: t.committed[sub.group] < t.end or self._stopping
                )
                if self._stopping:  # take no new batch; the one in flight is done
                    return
                pos = t.committed[sub.group]
                if sub.max_wait > 0 and t.end - pos < sub.max_batch:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            self._changed.wait_for(
                                lambda: (
                                    t.end - t.committed[sub.group] >= sub.max_batch
                                    or self._stopping
                                )
                            ),
                            timeout=sub.max_wait,
                        )
                    if self._is_stopping():  # woken by stop(): take no new batch
                        return
                start = pos - t.base
                batch = t.records[start : start + sub.max_batch]
                self._busy.add(name)
            ahead = None
            if sub.prefetch is not None and not self._show_next(sub, t, pos + len(batch)):
                ahead = asyncio.create_task(self._prefetch(sub, t, pos + len(batch)))
            try:
                await self.process(sub, batch, self._give_back)
            except BatchGivenBack:  # stop() asked for it: not committed, kept for a restart
                async with self._changed:
                    self._busy.discard(name)
                    self._changed.notify_all()
                return
            except ConsumerHalted:
                # not committed: the batch stays in the log for a restart; this group
                # stops (the other groups go on; join() no longer waits for this one)
                async with self._changed:
                    self._busy.discard(name)
                    self._changed.notify_all()
                return
            except Exception:
                # a dead letter that could not be written (a full disk): not committed,
                # handled again after a pause, as on Kafka
                log.exception(
                    "memory bus: batch %s[%d..%d] of group %s failed; it is handled again in "
                    "%.0f s",
                    sub.topic,
                    pos,
                    pos + len(batch) - 1,
                    sub.group,
                    RETRY_DELAY,
                )
                async with self._changed:
                    self._busy.discard(name)
                    self._changed.notify_all()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            self._changed.wait_for(self._is_stopping), RETRY_DELAY
                        )
                continue
            except BaseException:
                self._busy.discard(name)  # not committed: the batch is delivered again
                raise
            finally:
                if ahead is not None:
                    ahead.cancel()
            async with self._changed:
                self._busy.discard(name)
                # committed only after the handler returned (or dead-lettered)
                t.committed[sub.group] = pos + len(batch)
                t.trim()
                self._report_lag(t)
                self._changed.notify_all()
            if self.journal is not None:
                await self._journal_commit(t, sub.group, pos + len(batch))

    def _show_next(self, sub: Subscription, t: _Topic, after: int) -> bool:
        """Show ``sub.prefetch`` the batch after ``after`` if it is whole; True if it is
        (shown, or not to be shown: records read back from the journal have no instance
        to share). It is exactly the batch the next turn takes: the position then is
        ``after``, and at least ``max_batch`` records follow it."""
        assert sub.prefetch is not None
        if t.end - after < sub.max_batch:
            return False
        start = after - t.base
        records = t.records[start : start + sub.max_batch]
        if all(type(r.event) is TOPIC_TYPES.get(r.topic) for r in records):
            try:
                sub.prefetch([r.event for r in records])
            except Exception:  # an optimisation only: the batch is handled all the same
                log.exception("prefetch of %s/%s failed", sub.topic, sub.group)
        return True

    async def _prefetch(self, sub: Subscription, t: _Topic, after: int) -> None:
        """Wait until the batch after ``after`` is whole, then show it (``_show_next``)."""
        async with self._changed:
            await self._changed.wait_for(lambda: t.end - after >= sub.max_batch or self._stopping)
            if not self._stopping:
                self._show_next(sub, t, after)

    async def _journal_commit(self, t: _Topic, group: str, position: int) -> None:
        assert self.journal is not None
        try:
            await self.journal.commit(t.name, group, position, t.base)
        except Exception as exc:  # the events stay handled here; a restart repeats them
            self.metrics.bus_journal_errors.labels("commit").inc()
            log.error(
                "bus journal: cannot record that group %r handled %r up to %d (%s): after a "
                "restart those events are delivered again",
                group,
                t.name,
                position,
                exc,
            )
