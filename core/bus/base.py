"""The bus contract shared by the in-process and the Kafka implementation.

Semantics, the same for both:

* ``publish(topic, event, key=...)`` waits when consumers are behind (back-pressure); it
  never drops. Events with the same key keep their order.
* ``subscribe(topic, group, handler)`` delivers every event of ``topic`` to one handler of
  each ``group``, in batches of up to ``max_batch``. The position is committed only after
  the handler returned: a crash means redelivery (at-least-once), so handlers are
  idempotent on the event's id.
* ``on_rebalance`` (optional): called when the transport moves partitions between the
  group's consumers (Kafka), after the batch in flight is handled and committed, and
  again once the new assignment is known; the memory bus never rebalances. A stage that
  keeps state per key drops it there and reloads what it needs (the detector does).
* A record that cannot be decoded, or whose handler raises ``PermanentError`` or keeps
  failing after ``RetryPolicy.max_attempts`` tries, goes to the dead-letter topic
  ``<topic>.dlq`` with the reason (its first ``REASON_MAX`` characters), and the
  consumer moves on.
* A handler waiting to retry gives its batch back when the transport asks for it (a
  rebalance takes the partitions, or the bus stops): ``BatchGivenBack``, the batch is not
  committed and is delivered again (to this consumer or the partitions' next owner). A
  handler retrying through a long outage (the alerter's policy retries for hours) would
  otherwise hold the rebalance past its timeout (the member dropped from the group while
  it still works on the batch) or a stop for its whole budget.
* Up to ``max_dead_letters_per_minute`` per subscription (0: no limit), and up to
  ``max_failures_in_a_row`` events in a row failing through every retry: one more raises
  ``ConsumerHalted`` (``core.bus.halt``); the batch in flight is not committed and that
  subscription stops, loudly (CRITICAL log, ``crisiswatch_bus_consumer_halted`` = 1,
  ``halted()`` for the readiness check). The rest of the process goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from core.bus.halt import ConsumerHalted, DeadLetterRate, FailureStreak, Halt
from core.events import TOPIC_TYPES
from core.metrics import Metrics

log = logging.getLogger(__name__)

REASON_MAX = 2000
"""Characters of a dead letter's reason kept (a decoding error quotes its input: the whole
record, which is the dead letter's value anyway); the log lines and a halt quote it too."""

EventHandler = Callable[[list[Any]], Awaitable[None]]
"""Receives a batch of decoded events (instances of the topic's event type)."""

PrefetchHandler = Callable[[list[Any]], None]
"""Shown, while a batch is being handled, the whole batch the subscription will be handed
next (memory bus; other transports never call it), so that a handler can start work that
has no effect of its own on it early (the scorer starts classifying). The batch is still
handed to the handler as usual, the same instances in the same order; it may never come
(the bus stopped, the group halted) and, after a failure, it may come more than once."""

RebalanceHandler = Callable[[], Awaitable[None]]
"""Called when the group's partitions move (no batch of the subscription runs meanwhile)."""


class PermanentError(Exception):
    """Raised by a handler for an event that can never be processed: dead-letter it."""


class BatchGivenBack(Exception):
    """The transport asked for the batch back (a rebalance, a stop) while its handler
    waited to retry: not a failure; the batch is not committed and is delivered again."""


class BusStartError(RuntimeError):
    """The bus cannot start (a broker unreachable, a topic it may not create): a setting or
    the broker to fix, said in one line at start."""


_MAX_DOUBLINGS = 64


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    initial_backoff: float = 0.2
    max_backoff: float = 10.0

    def backoff(self, attempt: int) -> float:
        """The wait after try ``attempt`` (1, 2, ...): doubling from ``initial_backoff``, at
        most ``max_backoff``. The doublings stop at 64: past 1,024 of them the product is no
        float (``OverflowError``), which a policy retrying until a database is back (the
        alerter's; the detector's state saves) reached some 8 hours into an outage."""
        doublings = min(max(attempt - 1, 0), _MAX_DOUBLINGS)
        return float(min(self.max_backoff, self.initial_backoff * 2.0**doublings))


@dataclass(frozen=True)
class Subscription:
    topic: str
    group: str
    handler: EventHandler
    max_batch: int = 1
    max_wait: float = 0.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    on_rebalance: RebalanceHandler | None = None
    prefetch: PrefetchHandler | None = None


@dataclass(frozen=True)
class Record:
    """A raw record as the transport delivered it.

    ``event``: the published instance, where the transport still has it (the memory bus):
    consumers take it as it is instead of decoding ``value`` again. Events are frozen
    models and handlers never modify one, nor the containers inside (a Sentiment's
    ``probs``): they build new events, so one instance can serve every group. The
    instance is what decoding ``value`` gives because events are validated where they are
    built (finite floats, id patterns and lengths); a producer that copies an event with
    changes re-validates it (``model_copy`` alone would not), or Kafka's consumers would
    dead-letter what the memory bus delivers.
    """

    topic: str
    key: str | None
    value: bytes
    partition: int = 0
    offset: int = 0
    event: BaseModel | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Failure:
    """Why a handler could not handle an event; ``retried``: through every retry (not a
    ``PermanentError``, which is the event's own fault)."""

    reason: str
    retried: bool = True


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    group: str
    key: str | None
    value: bytes
    reason: str
    partition: int
    offset: int


def encode_event(event: BaseModel) -> bytes:
    return event.model_dump_json().encode()


def decode_event(topic: str, value: bytes) -> BaseModel:
    """Decode ``value`` as the event type of ``topic`` (raises ValueError when it can't)."""
    event_type = TOPIC_TYPES.get(topic)
    if event_type is None:
        raise ValueError(f"no event type is registered for topic {topic!r}")
    try:
        return event_type.model_validate_json(value)
    except ValidationError as exc:
        raise ValueError(f"not a valid {event_type.__name__}: {_problems(exc)}") from exc


def _problems(exc: ValidationError, most: int = 3) -> str:
    """The first ``most`` of pydantic's errors as ``field.path: message``, and how many
    more: without the input (a stranger's text, megabytes of it, into logs and dead-letter
    lists: the letter keeps the value) or pydantic's links."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    said = [
        f"{'.'.join(str(part) for part in e['loc']) or '(the event)'}: {e['msg']}"
        for e in errors[:most]
    ]
    more = f" (and {len(errors) - most} more)" if len(errors) > most else ""
    return "; ".join(said) + more


def _event_of(record: Record) -> BaseModel:
    """The record's event: the published instance when it is of the topic's type (what
    decoding its bytes would give), else decoded from the bytes."""
    event = record.event
    if event is not None and type(event) is TOPIC_TYPES.get(record.topic):
        return event
    return decode_event(record.topic, record.value)


def _clip(reason: str) -> str:
    return reason if len(reason) <= REASON_MAX else reason[: REASON_MAX - 1] + "\u2026"


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


class Bus(ABC):
    """Publish events to topics; deliver them to consumer groups at least once."""

    def __init__(
        self,
        metrics: Metrics | None = None,
        *,
        max_dead_letters_per_minute: int = 0,
        max_failures_in_a_row: int = 0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics or Metrics()
        self._subscriptions: list[Subscription] = []
        self._started = False
        self._dead_letter_rate = DeadLetterRate(max_dead_letters_per_minute, monotonic)
        self._failures = FailureStreak(max_failures_in_a_row)
        self._halts: dict[tuple[str, str], Halt] = {}

    def subscribe(
        self,
        topic: str,
        group: str,
        handler: EventHandler,
        *,
        max_batch: int = 1,
        max_wait: float = 0.0,
        retry: RetryPolicy | None = None,
        on_rebalance: RebalanceHandler | None = None,
        prefetch: PrefetchHandler | None = None,
    ) -> None:
        """Register a handler; must be called before ``start``. ``prefetch``: see
        :data:`PrefetchHandler`."""
        if self._started:
            raise RuntimeError("subscribe before the bus starts")
        if topic not in TOPIC_TYPES:
            raise ValueError(f"unknown topic {topic!r}; known: {sorted(TOPIC_TYPES)}")
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if max_wait < 0:
            raise ValueError("max_wait must not be negative")
        if any(s.topic == topic and s.group == group for s in self._subscriptions):
            # Two handlers sharing one group's position would each see part of the
            # stream (Kafka) or race on the same events (memory): refuse it.
            raise ValueError(f"group {group!r} already subscribes to topic {topic!r}")
        self._subscriptions.append(
            Subscription(
                topic,
                group,
                handler,
                max_batch,
                max_wait,
                retry or RetryPolicy(),
                on_rebalance,
                prefetch,
            )
        )

    @property
    def started(self) -> bool:
        """Whether ``start`` ran and ``stop`` has not since."""
        return self._started

    @abstractmethod
    async def start(self) -> None: ...

    def halted(self) -> list[Halt]:
        """The subscriptions stopped by the dead-letter limit (until the next start)."""
        return list(self._halts.values())

    def _reset_halts(self) -> None:
        """At start: every subscription runs again, with an empty dead-letter window."""
        self._halts.clear()
        self._dead_letter_rate.reset()
        self._failures.reset()
        for sub in self._subscriptions:
            self.metrics.bus_consumer_halted.labels(sub.topic, sub.group).set(0)

    @abstractmethod
    async def stop(self) -> None:
        """Stop fetching, finish the batch in flight, commit, close."""

    @abstractmethod
    async def publish(self, topic: str, event: BaseModel, *, key: str) -> None: ...

    async def publish_many(self, topic: str, events: Sequence[tuple[str, BaseModel]]) -> None:
        """Publish ``(key, event)`` pairs in order; returns when all are accepted. A
        transport may overlap the sends (Kafka does); the default sends one by one."""
        for key, event in events:
            await self.publish(topic, event, key=key)

    @abstractmethod
    async def publish_raw(self, topic: str, value: bytes, *, key: str | None) -> None:
        """Publish bytes as they are (dead letters, tests of the poison path)."""

    @abstractmethod
    async def dead_letter(self, letter: DeadLetter) -> None: ...

    async def process(
        self,
        sub: Subscription,
        records: Sequence[Record],
        give_back: asyncio.Event | None = None,
    ) -> None:
        """Decode and handle one batch; returns when every record is handled or dead-lettered.

        The transport commits the batch's position after this returns. ``give_back``: set
        by the transport when it needs the batch back (a rebalance, a stop); a handler
        waiting to retry then stops with ``BatchGivenBack`` (nothing committed).
        """
        events: list[BaseModel] = []
        kept: list[Record] = []
        for record in records:
            try:
                events.append(_event_of(record))
                kept.append(record)
            except ValueError as exc:
                await self._to_dlq(sub, record, f"undecodable: {exc}")
        if not events:
            return
        failure = await self._attempt(sub, events, give_back)
        if failure is None:
            self._failures.handled(sub.topic, sub.group)
            return
        if len(events) == 1:
            await self._failed(sub, kept[0], failure)
            return
        # Isolate the poison: handle one by one, dead-letter only those that fail.
        for event, record in zip(events, kept, strict=True):
            single = await self._attempt(sub, [event], give_back)
            if single is None:
                self._failures.handled(sub.topic, sub.group)
            else:
                await self._failed(sub, record, single)

    async def _failed(self, sub: Subscription, record: Record, failure: Failure) -> None:
        """An event its handler could not handle: dead-letter it, unless it failed through
        every retry once too often in a row (halt: a dependency is broken)."""
        if failure.retried:
            streak = self._failures.full(sub.topic, sub.group)
            if streak is not None:
                self._halt(sub, record, streak, failure.reason, in_a_row=True)
            self._failures.failed(sub.topic, sub.group)
        await self._to_dlq(sub, record, failure.reason)

    async def _attempt(
        self, sub: Subscription, events: list[BaseModel], give_back: asyncio.Event | None = None
    ) -> Failure | None:
        """Run the handler with retries; None on success, else why it failed. Raises
        ``BatchGivenBack`` when ``give_back`` is set while it waits to retry."""
        attempt = 0
        while True:
            attempt += 1
            try:
                await sub.handler(events)
                return None
            except PermanentError as exc:
                return Failure(f"permanent: {exc}", retried=False)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.metrics.bus_handler_errors.labels(sub.topic, sub.group).inc()
                if attempt >= sub.retry.max_attempts:
                    log.exception(
                        "handler for %s/%s failed %d times; giving up on %d event(s)",
                        sub.topic,
                        sub.group,
                        attempt,
                        len(events),
                    )
                    return Failure(f"failed {attempt} times: {type(exc).__name__}: {exc}")
                delay = sub.retry.backoff(attempt)
                log.warning(
                    "handler for %s/%s failed (attempt %d/%d, retry in %.1fs): %s: %s",
                    sub.topic,
                    sub.group,
                    attempt,
                    sub.retry.max_attempts,
                    delay,
                    type(exc).__name__,
                    exc,
                )
                if give_back is None:
                    await asyncio.sleep(delay)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(give_back.wait(), delay)
                    log.warning(
                        "handler for %s/%s: %d event(s) given back unhandled after %d "
                        "attempt(s) (a rebalance or a stop asked for them): delivered again",
                        sub.topic,
                        sub.group,
                        len(events),
                        attempt,
                    )
                    given_back = f"{sub.topic}/{sub.group}: given back after {attempt}"
                    raise BatchGivenBack(given_back) from exc

    async def _to_dlq(self, sub: Subscription, record: Record, reason: str) -> None:
        reason = _clip(reason)
        count = self._dead_letter_rate.full(sub.topic, sub.group)
        if count is not None:
            self._halt(sub, record, count, reason)
        log.error(
            "dead-lettering %s[%d]@%d for group %s: %s",
            record.topic,
            record.partition,
            record.offset,
            sub.group,
            reason,
        )
        letter = DeadLetter(
            topic=record.topic,
            group=sub.group,
            key=record.key,
            value=record.value,
            reason=reason,
            partition=record.partition,
            offset=record.offset,
        )
        try:
            await self.dead_letter(letter)
        except Exception:
            # not written: the transport delivers the batch again; a failure, not a letter
            self.metrics.bus_handler_errors.labels(record.topic, sub.group).inc()
            raise
        self.metrics.bus_dead_letters.labels(record.topic, sub.group).inc()
        self._dead_letter_rate.add(sub.topic, sub.group)

    def _halt(
        self, sub: Subscription, record: Record, count: int, reason: str, *, in_a_row: bool = False
    ) -> None:
        reason = _clip(reason)
        halt = Halt(topic=sub.topic, group=sub.group, count=count, reason=reason, in_a_row=in_a_row)
        self._halts[(sub.topic, sub.group)] = halt
        self.metrics.bus_consumer_halted.labels(sub.topic, sub.group).set(1)
        what = (
            "events in a row failed through every retry (a broken dependency or a bug, "
            "not bad events)"
            if in_a_row
            else "dead letters within 60 s"
        )
        log.critical(
            "HALTING consumer %s/%s: %d %s reached the limit, and %s[%d]@%d would be one "
            "more (%s). The batch in flight is not committed: its records stay in the "
            "topic. Fix the cause, then restart this process.",
            sub.topic,
            sub.group,
            count,
            what,
            record.topic,
            record.partition,
            record.offset,
            reason,
        )
        raise ConsumerHalted(halt)
