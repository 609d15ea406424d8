"""Kafka bus (aiokafka): the same contract as the memory bus, for production and scale.

* Topics are ``config.topic_prefix + <logical topic>``; ``start()`` creates the missing
  ones (every event topic and its ``.dlq``) with ``config.partitions`` partitions, and
  warns about an existing event topic with fewer (it never changes a topic's count).
  Consumer group ids get the same prefix (``crisiswatch.scorer``): group ids are global
  on a cluster, so one prefix isolates a deployment (or a test) entirely.
* One consumer per subscription, in the subscription's group, with auto-commit off. A
  partition's records are handled in order, one partition batch at a time, and its
  offset is committed only after ``process()`` returned (at-least-once).
* When a rebalance takes partitions away, the listener waits for the batch in flight
  and commits it, so the next owner starts right after it; then it calls the
  subscription's ``on_rebalance`` (and again when partitions are assigned).
* ``stop()``: stop fetching, let the batch in flight finish, commit, close the
  consumers, then flush and close the producer; bounded by ``stop_timeout``
  (``bus.stop_timeout``) in all: the batch gets it less a share for closing (at most
  3 s), then it is abandoned, not committed (delivered again), and the closing steps
  run side by side until the deadline (a broker gone at SIGTERM adds nothing per
  client). ``api.serve`` runs this on SIGTERM and exits 0.
* Dead letters go to ``<topic>.dlq`` with the record's key and value and headers
  ``reason``, ``group``, ``topic``, ``partition``, ``offset``. A record too large for
  that (it fits its topic, not with the headers added) goes cut to its first 64 KiB,
  with its full length in a ``size`` header: the whole record is still at its offset.
  A dead letter the broker refuses otherwise fails its batch (not committed, delivered
  again; counted in ``crisiswatch_bus_handler_errors_total``, not as a dead letter).
* Dead-letter limit (``bus.max_dead_letters_per_minute``, ``core.bus.halt``) and failures
  in a row (``bus.max_failures_in_a_row``): past either, the partition batch in flight is
  rewound and not committed, and that subscription's loop ends: its consumer commits what
  it handled before, then leaves its group at once (it is closed), so the group gives its
  partitions to another member, if any, which starts at the record that halted it. (It
  used to stay in the group until ``stop()``, holding its partitions until
  ``bus.max_poll_interval_ms`` passed without a fetch: minutes.) The halt stays reported
  (CRITICAL log, ``crisiswatch_bus_consumer_halted``, ``halted()``) until the next start.
* Group timing (``bus.session_timeout_ms``, ``heartbeat_interval_ms``,
  ``max_poll_interval_ms``, ``rebalance_timeout_ms``): a member killed without leaving
  its group (``kill -9``, a lost host) holds its partitions until its session times out;
  a clean stop leaves at once. See ``BusConfig`` for the trade-off.
* ``crisiswatch_bus_consumer_lag{topic,group}``: over this consumer's partitions,
  highwater minus the next offset to handle; updated after every fetch and batch (it
  stops moving while the loop is halted: kafka-exporter's lag still sees it).

Back-pressure: nothing grows without bound when downstream is slow (reviewed, issue 8).

* Consuming: one batch at a time per subscription (``max_batch`` records); the next
  fetch waits for it. aiokafka prefetches at most ``max_partition_fetch_bytes`` (1 MB)
  per partition and ``fetch_max_bytes`` (50 MB) per request. ``pending`` holds one
  offset per partition; the dead-letter window at most ``limit`` timestamps.
* Producing: aiokafka keeps one open batch (``max_batch_size``, 16 kB) per partition;
  ``send()`` waits while it is full (up to ``request_timeout_ms``, then
  ``KafkaTimeoutError``: the handler fails, is retried, and its batch is not committed).
  ``publish_many`` holds the futures of one handler batch only (the scorer: one batch of
  ``scorer.batch_size``); ``publish``/``dead_letter`` wait for the broker's ack.
* Upstream of the bus: the listener reads each source through a queue of ``max_batch``
  mentions and publishes a batch before it reads the next (``listener.batching``); the
  alerter's outbox is rows in the database (durable, not memory), claimed
  ``delivery.batch_size`` at a time, its backlog in ``crisiswatch_outbox_pending``.
* The memory bus (``core.bus.memory``): a group ``capacity`` behind holds publishers
  back; a topic nobody reads keeps its last ``capacity`` events; ``dead_letters`` its
  last ``dead_letter_capacity``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAlreadyExistsError,
)
from aiokafka.helpers import create_ssl_context
from pydantic import BaseModel

from core.bus.base import (
    BatchGivenBack,
    Bus,
    BusStartError,
    DeadLetter,
    Record,
    Subscription,
    dlq_topic,
    encode_event,
)
from core.bus.halt import ConsumerHalted
from core.events import TOPIC_TYPES
from core.metrics import Metrics
from core.settings import KAFKA_REQUEST_TIMEOUT_MS, BusConfig

log = logging.getLogger(__name__)

_REASON_MAX = 2000  # characters of the dead-letter reason kept in its header
_CUT_VALUE_MAX = 64 * 1024  # bytes of a record kept in a dead letter too large to send whole
_CUT_KEY_MAX = 1000  # characters of its key kept then
_RETRY_DELAY = 1.0  # seconds before fetching again after a failed fetch or batch
_POSITION_WAIT = 0.1  # seconds the lag gauge waits for a partition's position
JOIN_NOTICE_SECONDS = 15.0  # how often a start still joining its groups says so
_CLOSE_SHARE = 3.0  # seconds of stop_timeout kept for the final commits and closes
_STEP_MIN = 0.1  # seconds a closing step gets even past its deadline


RecordOutcome = Literal["written", "too_large", "failed", "unsent"]
"""What became of one record of a ``publish_many`` that raised ``PublishIncomplete``."""

_TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError)


def too_large(error: BaseException | None) -> bool:
    """Whether ``error`` refuses a record for its size: the producer's ``send`` (a record
    over ``max_request_size``) or the broker (over the topic's ``max.message.bytes``).
    Sending it again can never work."""
    return isinstance(error, _TOO_LARGE)


class PublishIncomplete(KafkaError):  # type: ignore[misc]
    """``publish_many`` did not publish its whole batch. Of its ``total`` records:
    ``acknowledged`` are known written (the broker acknowledged them); ``unknown`` were
    handed to the producer and not acknowledged (an error, or no answer in time: written or
    not); ``unsent`` were never handed to the producer (known not written: ``refused`` is
    why the send of the first of them raised). ``error``: the first failure in the batch's
    order (also the ``__cause__``). Publishing the whole batch again is safe: consumers are
    idempotent on the event's id. A ``KafkaError``, so callers that catch one catch it.

    ``outcomes``: one per record, in the batch's order: ``written`` (acknowledged),
    ``too_large`` (refused for its size: by the producer, which measured that record alone,
    or by the broker, which refuses a partition's whole batch, so smaller records sent with
    it may be among them), ``failed`` (not acknowledged otherwise: written or not),
    ``unsent`` (never handed over, or its send raised for another reason). A caller can
    thus publish again what is not written, and set apart what can never be
    (``ListenerService.ingest`` tries each ``too_large`` record alone)."""

    def __init__(
        self,
        topic: str,
        *,
        total: int,
        acknowledged: int,
        unknown: int,
        unsent: int,
        error: BaseException,
        refused: BaseException | None = None,
        outcomes: tuple[RecordOutcome, ...] = (),
    ) -> None:
        self.topic = topic
        self.outcomes = outcomes
        self.total = total
        self.acknowledged = acknowledged
        self.unknown = unknown
        self.unsent = unsent
        self.error = error
        self.refused = refused
        parts = [
            f"{acknowledged} of {total} acknowledged (written)",
            f"{unknown} not acknowledged (written or not)",
            f"{unsent} never handed to the producer (not written)",
        ]
        reasons = []
        if unknown:
            reasons.append(f"the first not acknowledged: {_describe(error)}")
        if refused is not None:
            reasons.append(f"the send of record {total - unsent + 1} raised {_describe(refused)}")
        super().__init__(
            f"publishing {total} event(s) to {topic!r} failed: {', '.join(parts)}; "
            + "; ".join(reasons)
        )

    def __str__(self) -> str:  # KafkaError's would put the class name before the message
        return str(self.args[0])


@dataclass(eq=False)
class _Consumer:
    """One subscription's consumer and the state its loop shares with its listener."""

    sub: Subscription
    physical: str
    consumer: Any = None  # AIOKafkaConsumer
    task: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # held while a batch runs
    epoch: int = 0  # bumped on every revoke: a batch fetched before it is stale
    busy: bool = False  # a batch is being handled
    stopping: bool = False
    pending: dict[Any, int] = field(default_factory=dict)  # handled, not yet committed
    # set while a revoke or a stop waits for the batch: a handler waiting to retry gives
    # it back (``BatchGivenBack``) instead of holding the rebalance or the stop
    give_back: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def name(self) -> str:
        return f"{self.sub.topic}/{self.sub.group}"


def _joined(state: _Consumer) -> bool:
    """Whether the group gave ``state``'s consumer partitions (its join is over)."""
    try:
        return bool(state.consumer.assignment())
    except Exception:  # a consumer not started: not joined
        return False


class _RevokeListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """On revoke: wait for the batch in flight, commit it, then let the rebalance go on."""

    def __init__(self, bus: KafkaBus, state: _Consumer) -> None:
        self._bus = bus
        self._state = state

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        state = self._state
        state.epoch += 1
        if not revoked:
            return
        log.info(
            "%s: partitions %s revoked; finishing the batch in flight",
            state.name,
            sorted(tp.partition for tp in revoked),
        )
        state.give_back.set()  # a batch waiting to retry ends now, uncommitted
        async with state.lock:
            if not state.stopping:  # (a stop keeps it set: nothing is to be retried now)
                state.give_back.clear()
            await self._bus._commit(state, only=revoked)
            for tp in revoked:
                state.pending.pop(tp, None)
            await self._notify()

    async def on_partitions_assigned(self, assigned: set[Any]) -> None:
        log.info(
            "%s: partitions %s assigned",
            self._state.name,
            sorted(tp.partition for tp in assigned),
        )
        async with self._state.lock:
            await self._notify()

    async def _notify(self) -> None:
        """Run the subscription's rebalance hook; a failure is logged, never raised into
        the rebalance (the group would stall)."""
        hook = self._state.sub.on_rebalance
        if hook is None:
            return
        try:
            await hook()
        except Exception:
            log.exception("%s: the rebalance hook failed", self._state.name)


class KafkaBus(Bus):
    def __init__(
        self,
        config: BusConfig,
        metrics: Metrics | None = None,
        *,
        consumer_options: Mapping[str, Any] | None = None,
        poll_timeout: float = 1.0,
        stop_timeout: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``consumer_options`` go to every AIOKafkaConsumer, over the group timing of
        ``config`` (``session_timeout_ms``, ...);
        ``poll_timeout`` is the longest one fetch waits; ``stop_timeout`` bounds ``stop()``
        (default ``config.stop_timeout``); ``monotonic`` times the dead-letter limit.
        """
        super().__init__(
            metrics,
            max_dead_letters_per_minute=config.max_dead_letters_per_minute,
            max_failures_in_a_row=config.max_failures_in_a_row,
            monotonic=monotonic,
        )
        self.config = config
        self._consumer_options = dict(consumer_options or {})
        self._poll_ms = max(1, int(poll_timeout * 1000))
        self._stop_timeout = config.stop_timeout if stop_timeout is None else stop_timeout
        self._producer: Any = None  # AIOKafkaProducer
        self._consumers: list[_Consumer] = []

    def physical(self, topic: str) -> str:
        """The Kafka topic that carries the logical ``topic``."""
        return self.config.topic_prefix + topic

    def group_id(self, group: str) -> str:
        """The Kafka consumer group id of the logical ``group``."""
        return self.config.topic_prefix + group

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        servers = self.config.bootstrap_servers
        log.info("starting the Kafka bus at %s (prefix %r)", servers, self.config.topic_prefix)
        try:
            await self._ensure_topics()
            producer = AIOKafkaProducer(
                **self._client_options(),
                acks="all",
                enable_idempotence=False,
                linger_ms=5,
            )
            self._producer = producer
            await producer.start()
            for sub in self._subscriptions:
                state = _Consumer(sub=sub, physical=self.physical(sub.topic))
                state.consumer = AIOKafkaConsumer(
                    **{
                        **self._client_options(),
                        "group_id": self.group_id(sub.group),
                        "enable_auto_commit": False,
                        "auto_offset_reset": "earliest",
                        **self._group_options(),
                        **self._consumer_options,
                    }
                )
                state.consumer.subscribe([state.physical], listener=_RevokeListener(self, state))
                self._consumers.append(state)
            self._reset_halts()
            # Each start returns once its group gave it partitions: join them all at once.
            await self._join(asyncio.gather(*(s.consumer.start() for s in self._consumers)))
            for state in self._consumers:
                state.task = asyncio.create_task(self._run(state), name=f"kafka:{state.name}")
                state.task.add_done_callback(_report_crash)
            log.info("the Kafka bus is started: %d consumer(s)", len(self._consumers))
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):  # (its text is empty)
                log.warning(
                    "the Kafka bus at %s did not start: its start was interrupted; closing "
                    "what it had opened",
                    servers,
                )
            else:
                log.error("the Kafka bus at %s did not start: %s", servers, str(exc) or repr(exc))
            await self._close(asyncio.get_running_loop().time() + 10.0)
            if isinstance(exc, KafkaError | BusStartError):
                raise BusStartError(f"cannot start the Kafka bus at {servers}: {exc}") from exc
            raise
        self._started = True

    async def _join(self, joining: asyncio.Future[Any]) -> None:
        """Wait for the consumers' group joins, saying every ``JOIN_NOTICE_SECONDS`` which
        groups are still joining: a join the broker holds up (a member that left without
        leaving its group, waited for up to its session timeout; a coordinator moving) left
        a role at "starting the Kafka bus" for minutes with nothing in its log."""
        started = time.monotonic()
        try:
            while True:
                done, _ = await asyncio.wait({joining}, timeout=JOIN_NOTICE_SECONDS)
                if done:
                    joining.result()
                    return
                waiting = sorted(
                    {self.group_id(s.sub.group) for s in self._consumers if not _joined(s)}
                )
                log.warning(
                    "still joining consumer group(s) %s after %.0f s: the broker has not "
                    "given them partitions yet (a member that stopped without leaving is "
                    "waited for up to bus.session_timeout_ms = %d ms; check the broker's "
                    "group coordinator if this goes on)",
                    ", ".join(waiting) or "(all joined, starting)",
                    time.monotonic() - started,
                    self.config.session_timeout_ms,
                )
        except BaseException:
            joining.cancel()
            raise

    async def stop(self) -> None:
        """Stop fetching, let the batches in flight finish, commit, close: all of it
        within ``stop_timeout``. The batches get it less a share kept for closing
        (``_CLOSE_SHARE``, at most a third): a batch still running then is cancelled,
        uncommitted (delivered again); the consumers' final commits and LeaveGroups and
        the producer's flush and close then run side by side until the deadline, so a
        broker gone at SIGTERM costs ``stop_timeout``, not a second more per client."""
        if not self._started and self._producer is None and not self._consumers:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._stop_timeout
        closing = min(_CLOSE_SHARE, self._stop_timeout / 3)
        drained_by = deadline - closing
        log.info("stopping the Kafka bus: %d consumer(s)", len(self._consumers))
        for state in self._consumers:
            state.stopping = True
            state.give_back.set()  # a handler waiting to retry gives its batch back
            if state.task is not None and not state.busy:
                state.task.cancel()  # it is waiting for records: nothing in flight
            elif state.task is not None and not state.task.done():
                log.info("%s: finishing the batch in flight, then committing it", state.name)
        tasks = [s.task for s in self._consumers if s.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=max(0.0, drained_by - loop.time()))
            for task in late:
                log.warning(
                    "%s: batch still running after %.1f s; abandoning it (it will be "
                    "delivered again)",
                    task.get_name(),
                    self._stop_timeout - closing,
                )
                task.cancel()
            if late:  # half of the closing share for the cancellations to land
                await asyncio.wait(late, timeout=max(0.0, drained_by + closing / 2 - loop.time()))
        await self._close(deadline)
        log.info("the Kafka bus is stopped")

    async def _close(self, deadline: float) -> None:
        """Commit what was handled, close the consumers and flush and close the producer,
        all side by side (the loops are over: nothing publishes any more), each step
        given up at ``deadline``."""
        consumers, self._consumers = self._consumers, []
        for state in consumers:
            if state.task is not None and not state.task.done():
                state.task.cancel()
        producer, self._producer = self._producer, None
        steps = [self._close_consumer(s, deadline) for s in consumers if s.consumer is not None]
        if producer is not None:
            steps.append(self._close_producer(producer, deadline))
        await asyncio.gather(*steps)
        self._started = False

    async def _close_consumer(self, state: _Consumer, deadline: float) -> None:
        if state.pending:
            # half of what is left at most: a commit that hangs leaves the close (its
            # LeaveGroup) time to run, or the group would wait a session timeout to move
            # this consumer's partitions to another member
            left = deadline - asyncio.get_running_loop().time()
            committed_by = deadline - max(left, 0.0) / 2
            await self._bounded(self._commit(state), committed_by, f"{state.name}: final commit")
        await self._bounded(state.consumer.stop(), deadline, f"{state.name}: close")
        log.info("%s: consumer closed", state.name)

    async def _close_producer(self, producer: Any, deadline: float) -> None:
        await self._bounded(producer.flush(), deadline, "producer flush")
        await self._bounded(producer.stop(), deadline, "producer close")
        log.info("producer flushed and closed")

    @staticmethod
    async def _bounded(step: Awaitable[Any], deadline: float, what: str) -> None:
        """Run ``step`` until ``deadline`` (at least ``_STEP_MIN`` seconds: a step given
        none would be cancelled before it ran, leaving a client unclosed)."""
        timeout = max(_STEP_MIN, deadline - asyncio.get_running_loop().time())
        try:
            await asyncio.wait_for(step, timeout)
        except TimeoutError:
            log.error("%s did not finish within %.1f s; going on", what, timeout)
        except Exception as exc:
            log.error("%s failed: %s: %s", what, type(exc).__name__, exc)

    def _client_options(self) -> dict[str, Any]:
        return client_options(self.config)

    def _group_options(self) -> dict[str, Any]:
        """The consumer group timing of ``bus`` (validated together in ``BusConfig``)."""
        cfg = self.config
        return {
            "session_timeout_ms": cfg.session_timeout_ms,
            "heartbeat_interval_ms": cfg.heartbeat_interval_ms,
            "max_poll_interval_ms": cfg.max_poll_interval_ms,
            "rebalance_timeout_ms": cfg.group_rebalance_timeout_ms,
            "request_timeout_ms": KAFKA_REQUEST_TIMEOUT_MS,
        }

    async def _ensure_topics(self) -> None:
        logical = sorted(TOPIC_TYPES)
        wanted = [self.physical(t) for t in [*logical, *map(dlq_topic, logical)]]
        admin = AIOKafkaAdminClient(**self._client_options())
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [name for name in wanted if name not in existing]
            await self._check_partitions(
                admin, [self.physical(t) for t in logical if self.physical(t) in existing]
            )
            if not missing:
                return
            response = await admin.create_topics(
                [
                    NewTopic(name, self.config.partitions, self.config.replication_factor)
                    for name in missing
                ]
            )
            for entry in response.topic_errors:
                name, code = entry[0], entry[1]
                if code not in (0, TopicAlreadyExistsError.errno):
                    message = entry[2] if len(entry) > 2 else ""
                    raise BusStartError(
                        f"cannot create Kafka topic {name!r}: error {code} {message or ''}"
                    )
            log.info("created Kafka topics %s", missing)
        finally:
            await admin.close()

    async def _check_partitions(self, admin: AIOKafkaAdminClient, topics: list[str]) -> None:
        """Warn about an event topic that exists with fewer partitions than
        ``bus.partitions``: Kafka keeps a topic's count (nothing here grows it: that moves
        keys to other partitions), so a group of more members than that leaves the rest
        idle. Not knowing (no permission to describe) is no reason to refuse to start."""
        if not topics:
            return
        try:
            described = await admin.describe_topics(topics)
        except Exception as exc:
            log.warning("cannot read the partition counts of %s: %s", topics, _describe(exc))
            return
        for entry in described:
            count = len(entry.get("partitions") or ())
            if entry.get("error_code") or count >= self.config.partitions:
                continue
            log.warning(
                "Kafka topic %r has %d partition(s), fewer than bus.partitions (%d), which "
                "only sets the count of topics this bus creates: at most %d member(s) of a "
                "consumer group get work from it, the others stay idle. Add partitions "
                "with the broker's tools (kafka-topics.sh --alter --partitions %d); as that "
                "sends a key's next events to another partition than its earlier ones, stop "
                "the listener and let the other stages drain first. (Or, if %d is meant, "
                "set bus.partitions to it.)",
                entry["topic"],
                count,
                self.config.partitions,
                count,
                self.config.partitions,
                count,
            )

    # -- publishing --------------------------------------------------------------

    async def publish(self, topic: str, event: BaseModel, *, key: str) -> None:
        await self.publish_raw(topic, encode_event(event), key=key)

    async def publish_raw(self, topic: str, value: bytes, *, key: str | None) -> None:
        await self._send(topic, value, key, None)

    async def publish_many(self, topic: str, events: Sequence[tuple[str, BaseModel]]) -> None:
        """Hand every record to the producer first, then wait for all acknowledgements:
        one linger and one round trip for the batch instead of one per event. Records
        with the same key keep their order (same partition, sent in order).

        Returns once every record is acknowledged; else, after every record handed to the
        producer got its answer, raises one ``PublishIncomplete`` that counts what is known
        written and what is not (a send refused mid-batch hands none of the rest over).
        Cancelled, it leaves the records handed over to the producer, unwatched."""
        producer = self._producer
        if producer is None:
            raise RuntimeError("the Kafka bus is not started: call start() before publishing")
        physical = self.physical(topic)
        futures: list[asyncio.Future[Any]] = []
        refused: Exception | None = None
        try:
            for key, event in events:
                future = await producer.send(physical, encode_event(event), key=key.encode())
                # whatever happens next (a later send refused, a cancellation), its outcome
                # is retrieved: never "Future exception was never retrieved"
                future.add_done_callback(_retrieve)
                futures.append(future)
        except Exception as exc:  # the rest of the batch is not handed over
            refused = exc
        if futures:
            await asyncio.wait(futures)  # each ends: acknowledged, or failed/expired
        failures = [error for error in map(_failure, futures) if error is not None]
        acknowledged = len(futures) - len(failures)
        if acknowledged:
            self.metrics.bus_published.labels(topic).inc(acknowledged)
        if refused is None and not failures:
            return
        self.metrics.bus_publish_failures.labels(topic).inc(len(events) - acknowledged)
        first = failures[0] if failures else refused
        assert first is not None
        outcomes: list[RecordOutcome] = []
        for future in futures:
            failure = _failure(future)
            if failure is None:
                outcomes.append("written")
            else:
                outcomes.append("too_large" if too_large(failure) else "failed")
        if refused is not None and len(outcomes) < len(events):
            outcomes.append("too_large" if too_large(refused) else "unsent")
        outcomes.extend(["unsent"] * (len(events) - len(outcomes)))
        raise PublishIncomplete(
            topic,
            total=len(events),
            acknowledged=acknowledged,
            unknown=len(failures),
            unsent=len(events) - len(futures),
            error=first,
            refused=refused,
            outcomes=tuple(outcomes),
        ) from first

    async def dead_letter(self, letter: DeadLetter) -> None:
        headers = [
            ("reason", letter.reason[:_REASON_MAX].encode()),
            ("group", letter.group.encode()),
            ("topic", letter.topic.encode()),
            ("partition", str(letter.partition).encode()),
            ("offset", str(letter.offset).encode()),
        ]
        try:
            await self._send(dlq_topic(letter.topic), letter.value, letter.key, headers)
        except MessageSizeTooLargeError as exc:
            # It fits its own topic, not the dead-letter one with the headers (or that
            # topic takes less): sent whole, it would fail on every try and its partition
            # would never move on. Its start goes instead; the record stays whole at its
            # topic/partition/offset (the headers) for the topic's retention.
            log.warning(
                "dead letter of %s[%d]@%d is too large (%d bytes; %s): sending its first %d",
                letter.topic,
                letter.partition,
                letter.offset,
                len(letter.value),
                exc,
                _CUT_VALUE_MAX,
            )
            headers.append(("size", str(len(letter.value)).encode()))
            key = letter.key[:_CUT_KEY_MAX] if letter.key is not None else None
            await self._send(dlq_topic(letter.topic), letter.value[:_CUT_VALUE_MAX], key, headers)

    async def _send(
        self, topic: str, value: bytes, key: str | None, headers: list[tuple[str, bytes]] | None
    ) -> None:
        producer = self._producer
        if producer is None:
            raise RuntimeError("the Kafka bus is not started: call start() before publishing")
        # send_and_wait waits while the producer's buffer is full (back-pressure) and
        # until the broker acknowledged the record (acks=all).
        try:
            await producer.send_and_wait(
                self.physical(topic),
                value,
                key=key.encode() if key is not None else None,
                headers=headers,
            )
        except Exception:
            self.metrics.bus_publish_failures.labels(topic).inc()
            raise
        self.metrics.bus_published.labels(topic).inc()

    # -- consuming ---------------------------------------------------------------

    async def _run(self, state: _Consumer) -> None:
        while not state.stopping:
            epoch = state.epoch
            try:
                fetched = await self._fetch(state)
            except Exception as exc:
                self.metrics.bus_fetch_failures.labels(state.sub.topic, state.sub.group).inc()
                log.error("%s: fetch failed, retrying: %s: %s", state.name, type(exc).__name__, exc)
                await asyncio.sleep(_RETRY_DELAY)
                continue
            await self._report_lag(state, _first_offsets(fetched))
            if not fetched:
                continue
            async with state.lock:
                if state.epoch != epoch:
                    # a rebalance ran while these were fetched: fetch them again under the
                    # new assignment (partitions now owned elsewhere are the owner's job)
                    self._rewind(state, fetched)
                    continue
                state.busy = True
                halted = False
                try:
                    ok = await self._handle(state, fetched)
                except ConsumerHalted:
                    # _handle rewound what it did not handle and committed none of it:
                    # those records stay in the topic; this subscription stops here
                    ok, halted = False, True
                finally:
                    state.busy = halted  # busy while it leaves: stop() waits for that
            if halted:
                try:
                    await self._leave_halted(state)  # out of the lock: no revoke waits on it
                finally:
                    state.busy = False
                return
            await self._report_lag(state)
            if not ok and not state.stopping:
                await asyncio.sleep(_RETRY_DELAY)

    async def _leave_halted(self, state: _Consumer) -> None:
        """A halted subscription leaves its consumer group at once: commit what was
        handled, then close the consumer (a LeaveGroup), so the group hands its partitions
        to another member now, not after ``max_poll_interval_ms`` without a fetch. Nothing
        at or after the record that halted it was committed: the next owner starts there.
        The halt itself stays reported (``halted()``, the gauge) until the next start."""
        await self._report_lag(state)  # the last lag it reports: it stops moving there
        deadline = asyncio.get_running_loop().time() + self._stop_timeout
        if state.pending:
            await self._bounded(self._commit(state), deadline, f"{state.name}: commit")
            state.pending.clear()  # not committed (logged): delivered again, at least once
        await self._bounded(state.consumer.stop(), deadline, f"{state.name}: leave the group")
        log.error(
            "%s: halted; its consumer left the group, so another member (if any) takes its "
            "partitions and resumes at the record that halted it (nothing after that "
            "record is committed)",
            state.name,
        )

    async def _fetch(self, state: _Consumer) -> dict[Any, list[Any]]:
        """Up to ``max_batch`` records; waits up to ``max_wait`` to fill the batch."""
        sub, consumer = state.sub, state.consumer
        got: dict[Any, list[Any]] = await consumer.getmany(
            timeout_ms=self._poll_ms, max_records=sub.max_batch
        )
        count = sum(len(records) for records in got.values())
        if count == 0 or count >= sub.max_batch or sub.max_wait <= 0:
            return got
        loop = asyncio.get_running_loop()
        deadline = loop.time() + sub.max_wait
        merged = {tp: list(records) for tp, records in got.items()}
        while count < sub.max_batch:
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                more: dict[Any, list[Any]] = await consumer.getmany(
                    timeout_ms=max(1, int(left * 1000)), max_records=sub.max_batch - count
                )
            except KafkaError as exc:  # handle what we have; never drop fetched records
                self.metrics.bus_fetch_failures.labels(state.sub.topic, state.sub.group).inc()
                log.warning("%s: fetch failed while filling a batch: %s", state.name, exc)
                break
            for tp, records in more.items():
                merged.setdefault(tp, []).extend(records)
                count += len(records)
        return merged

    async def _handle(self, state: _Consumer, fetched: dict[Any, list[Any]]) -> bool:
        """Process each partition's records in order; commit each after it is handled."""
        ok = True
        parts = list(fetched.items())
        for index, (tp, messages) in enumerate(parts):
            if not messages:
                continue
            records = [
                Record(
                    topic=state.sub.topic,
                    key=m.key.decode("utf-8", errors="replace") if m.key is not None else None,
                    value=m.value if m.value is not None else b"",
                    partition=m.partition,
                    offset=m.offset,
                )
                for m in messages
            ]
            try:
                await self.process(state.sub, records, state.give_back)
            except ConsumerHalted:
                self._rewind(state, dict(parts[index:]))  # nothing of it committed
                raise
            except BatchGivenBack:  # a revoke or a stop waits: the rest goes back too
                self._rewind(state, dict(parts[index:]))
                return False
            except Exception:
                log.exception(
                    "%s: batch %s[%d]@%d..%d failed; it will be delivered again",
                    state.name,
                    state.sub.topic,
                    tp.partition,
                    messages[0].offset,
                    messages[-1].offset,
                )
                _seek(state, tp, messages[0].offset)
                ok = False
                continue
            state.pending[tp] = messages[-1].offset + 1
            await self._commit(state, only={tp})
        return ok

    async def _report_lag(
        self, state: _Consumer, in_flight: Mapping[Any, int] | None = None
    ) -> None:
        """``crisiswatch_bus_consumer_lag``: over this consumer's partitions, highwater minus
        the next offset to handle (the first offset of a batch in flight, else the
        consumer's position: everything before it is handled)."""
        consumer = state.consumer
        total = 0
        for tp in list(consumer.assignment()):
            try:
                high = consumer.highwater(tp)
                if high is None:  # no fetch answered for it yet
                    continue
                position = (in_flight or {}).get(tp)
                if position is None:
                    position = await asyncio.wait_for(consumer.position(tp), _POSITION_WAIT)
            except (AssertionError, KafkaError, TimeoutError):
                continue  # revoked meanwhile, or no position yet: counted next time
            total += max(0, high - position)
        self.metrics.bus_consumer_lag.labels(state.sub.topic, state.sub.group).set(total)

    def _rewind(self, state: _Consumer, fetched: dict[Any, list[Any]]) -> None:
        assigned = state.consumer.assignment()
        for tp, messages in fetched.items():
            if messages and tp in assigned:
                _seek(state, tp, messages[0].offset)

    async def _commit(self, state: _Consumer, only: set[Any] | None = None) -> None:
        """Commit the handled positions (of ``only``, else all); a failure is logged:
        the records after the last committed position are delivered again."""
        offsets = {tp: offset for tp, offset in state.pending.items() if only is None or tp in only}
        if not offsets:
            return
        try:
            await state.consumer.commit(offsets)
        except KafkaError as exc:
            self.metrics.bus_commit_failures.labels(state.sub.topic, state.sub.group).inc()
            log.warning(
                "%s: commit of %s failed (%s); those records will be delivered again",
                state.name,
                {tp.partition: o for tp, o in offsets.items()},
                exc,
            )
            assigned = state.consumer.assignment()
            for tp in offsets:
                if tp not in assigned:
                    state.pending.pop(tp, None)
            return
        for tp, offset in offsets.items():
            if state.pending.get(tp) == offset:
                del state.pending[tp]


CLIENT_LOG_INTERVAL = 30.0
"""Seconds between two lines of one kind from aiokafka (``quiet_client_logs``)."""


@dataclass
class _Line:
    logged_at: float
    held: int = 0


class RepeatFilter(logging.Filter):
    """Lets a kind of line (its logger, level and message template, whatever its
    arguments) through at most once per ``interval`` seconds; the next one let through
    says how many were held back since the last. While the broker is down, aiokafka logs
    the same few errors (``Unable connect to node with id %s``, ``Unable to update
    metadata``) about 75 times a second per process: this keeps the first of each, then
    one every ``interval`` with the count. Lines held back when the outage ends are not
    reported later (the count comes with the next line of that kind). ``capacity``
    bounds the kinds remembered."""

    def __init__(
        self,
        interval: float = CLIENT_LOG_INTERVAL,
        *,
        clock: Callable[[], float] = time.monotonic,
        capacity: int = 1024,
    ) -> None:
        super().__init__()
        self.interval = interval
        self._clock = clock
        self._capacity = capacity
        self._lines: OrderedDict[tuple[str, int, str], _Line] = OrderedDict()
        self._lock = threading.Lock()  # aiokafka logs from the loop; a thread may too

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        with self._lock:
            line = self._lines.get(key)
            if line is not None and now - line.logged_at < self.interval:
                line.held += 1
                return False
            self._lines[key] = _Line(now)
            self._lines.move_to_end(key)
            while len(self._lines) > self._capacity:
                self._lines.popitem(last=False)
        if line is not None and line.held:
            try:
                message = record.getMessage()
            except Exception:  # bad arguments: the handler reports those as it does
                return True
            record.msg = (
                f"{message} [{line.held} more like this in the last "
                f"{now - line.logged_at:.0f} s, not logged]"
            )
            record.args = None
        return True


def quiet_client_logs(interval: float = CLIENT_LOG_INTERVAL) -> RepeatFilter:
    """Put one ``RepeatFilter`` on every aiokafka logger (this module imports the client,
    so they exist), in place of one put there before. The logging setup calls it
    (``api.cli``), never an import."""
    repeat = RepeatFilter(interval)
    names = [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] == "aiokafka"]
    for name in ["aiokafka", *names]:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, RepeatFilter)]:
            logger.removeFilter(old)
        logger.addFilter(repeat)
    return repeat


def client_options(cfg: BusConfig) -> dict[str, Any]:
    """The connection options of every aiokafka client for ``cfg`` (servers, TLS, SASL)."""
    options: dict[str, Any] = {
        "bootstrap_servers": cfg.bootstrap_servers,
        "security_protocol": cfg.security_protocol,
    }
    if cfg.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context()
    if cfg.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = cfg.sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = cfg.sasl_username
        if cfg.sasl_password is not None:
            options["sasl_plain_password"] = cfg.sasl_password.get_secret_value()
    return options


def _seek(state: _Consumer, tp: Any, offset: int) -> None:
    """Fetch ``tp`` again from ``offset`` (if it is still ours: else its owner will)."""
    try:
        state.consumer.seek(tp, offset)
    except KafkaError as exc:
        log.warning("%s: cannot rewind partition %d: %s", state.name, tp.partition, exc)


def _describe(exc: BaseException) -> str:
    """``Type: message``, the type once (a KafkaError's text already names it)."""
    name, text = type(exc).__name__, str(exc)
    if not text:
        return name
    return text if name in text else f"{name}: {text}"


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a send's outcome as seen (its failure is reported by ``publish_many``)."""
    if not future.cancelled():
        future.exception()


def _failure(future: asyncio.Future[Any]) -> BaseException | None:
    """Why a finished send's future failed (None: acknowledged)."""
    if future.cancelled():
        return asyncio.CancelledError("the send was cancelled")
    return future.exception()


def _first_offsets(fetched: dict[Any, list[Any]]) -> dict[Any, int]:
    return {tp: messages[0].offset for tp, messages in fetched.items() if messages}


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("consumer loop %s crashed", task.get_name(), exc_info=task.exception())
