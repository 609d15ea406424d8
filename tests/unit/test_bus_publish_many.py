"""The Kafka bus's ``publish_many`` when part of a batch fails (a fake producer).

It hands every record to the producer, then waits for every acknowledgement. A send that
raises mid-batch (a record too large, the producer's buffer full for its whole timeout) or
an acknowledgement that fails used to leave the other sends' futures unawaited ("Future
exception was never retrieved" once they failed) and raised whichever error came first,
saying nothing of the rest of the batch. Now every future handed out is awaited (and its
outcome retrieved, even when the caller is cancelled), and one ``PublishIncomplete`` says
how many records are known written, how many may or may not be, and how many were never
handed over.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka.errors import KafkaError, KafkaTimeoutError, MessageSizeTooLargeError

from core.bus.kafka import KafkaBus, PublishIncomplete
from core.metrics import Metrics
from core.settings import BusConfig
from tests.integration.test_bus_contract import mention

SETTLE = 0.01  # seconds before the fake broker answers a send


class FakeProducer:
    """Answers the n-th send by ``script[n]``: ``ok`` (acknowledged a moment later),
    ``lost`` (its future fails a moment later, as an expired batch's does), ``refuse``
    (``send`` itself raises, as for a record over ``max_request_size``). Like aiokafka's,
    it keeps no reference to a future once answered: only the caller can retrieve it."""

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.handed = 0  # futures handed out
        self.settled = 0  # of those, answered

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[Any]:
        outcome = self.script[self.handed]
        if outcome == "refuse":
            raise MessageSizeTooLargeError("the message is 2000000 bytes when serialized")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(SETTLE, self._settle, future, outcome)
        self.handed += 1
        return future

    def _settle(self, future: asyncio.Future[Any], outcome: str) -> None:
        self.settled += 1
        if future.done():  # cancelled by someone: aiokafka skips those too
            return
        if outcome == "ok":
            future.set_result(None)
        else:
            future.set_exception(KafkaTimeoutError("expired before it was acknowledged"))


@pytest.fixture
async def unretrieved() -> AsyncIterator[list[dict[str, Any]]]:
    """What the event loop's exception handler is told (here: futures whose exception
    nobody retrieved, reported when they are collected)."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    yield seen
    loop.set_exception_handler(previous)


async def collected(seen: list[dict[str, Any]]) -> list[str]:
    """Let every send settle, collect what nobody holds, and return what was reported."""
    await asyncio.sleep(SETTLE * 5)
    gc.collect()
    await asyncio.sleep(0)
    return [str(context.get("message")) for context in seen]


def bus_with(producer: FakeProducer, metrics: Metrics) -> KafkaBus:
    bus = KafkaBus(BusConfig(kind="kafka"), metrics)
    bus._producer = producer  # started, as far as publishing goes
    return bus


def events(count: int) -> list[tuple[str, Any]]:
    return [(f"k{i}", mention(i)) for i in range(count)]


def published(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value(
        "crisiswatch_bus_published_total", {"topic": "mentions"}
    )


async def test_a_send_refused_mid_batch_raises_one_error_counting_the_batch(
    metrics: Metrics, unretrieved: list[dict[str, Any]]
) -> None:
    producer = FakeProducer(["ok", "lost", "refuse", "ok"])
    bus = bus_with(producer, metrics)
    with pytest.raises(Exception) as caught:
        await bus.publish_many("mentions", events(4))
    error = caught.value.with_traceback(None)  # hold no frame of publish_many
    del caught
    # the "lost" send's failure was retrieved (before: "Future exception was never
    # retrieved" once the send failed, as the refused send had ended publish_many)
    assert await collected(unretrieved) == []
    assert isinstance(error, PublishIncomplete), repr(error)
    assert (error.total, error.acknowledged, error.unknown, error.unsent) == (4, 1, 1, 2)
    assert isinstance(error, KafkaError)  # what callers that catch the transport's errors catch
    assert isinstance(error.__cause__, KafkaTimeoutError)  # the first failure, in order
    assert isinstance(error.refused, MessageSizeTooLargeError)
    text = str(error)
    assert text.startswith("publishing 4 event(s) to 'mentions' failed: 1 of 4 acknowledged")
    assert "1 not acknowledged (written or not)" in text
    assert "2 never handed to the producer (not written)" in text
    assert "the send of record 3 raised [Error 10] MessageSizeTooLargeError: the" in text
    assert producer.settled == producer.handed == 2  # it waited for the ones handed over
    assert published(metrics) == 1  # what is known written


async def test_failed_acknowledgements_are_each_retrieved_and_counted(
    metrics: Metrics, unretrieved: list[dict[str, Any]]
) -> None:
    producer = FakeProducer(["lost", "ok", "lost", "ok", "lost"])
    bus = bus_with(producer, metrics)
    with pytest.raises(PublishIncomplete) as caught:
        await bus.publish_many("mentions", events(5))
    error = caught.value
    assert (error.total, error.acknowledged, error.unknown, error.unsent) == (5, 2, 3, 0)
    assert error.refused is None
    assert "2 of 5 acknowledged" in str(error) and "3 not acknowledged" in str(error)
    assert "the first not acknowledged: KafkaTimeoutError" in str(error)
    assert published(metrics) == 2
    del caught, error
    assert await collected(unretrieved) == []


async def test_the_first_send_refused_hands_nothing_over(
    metrics: Metrics, unretrieved: list[dict[str, Any]]
) -> None:
    bus = bus_with(FakeProducer(["refuse", "ok"]), metrics)
    with pytest.raises(PublishIncomplete) as caught:
        await bus.publish_many("mentions", events(2))
    error = caught.value
    assert (error.acknowledged, error.unknown, error.unsent) == (0, 0, 2)
    assert isinstance(error.__cause__, MessageSizeTooLargeError)
    assert published(metrics) is None
    del caught, error
    assert await collected(unretrieved) == []


async def test_a_whole_batch_acknowledged_returns(
    metrics: Metrics, unretrieved: list[dict[str, Any]]
) -> None:
    producer = FakeProducer(["ok"] * 3)
    await bus_with(producer, metrics).publish_many("mentions", events(3))
    assert producer.settled == producer.handed == 3
    assert published(metrics) == 3
    assert await collected(unretrieved) == []


async def test_cancelled_while_waiting_it_leaves_no_unretrieved_failure(
    metrics: Metrics, unretrieved: list[dict[str, Any]]
) -> None:
    producer = FakeProducer(["lost", "ok", "lost"])
    bus = bus_with(producer, metrics)
    task = asyncio.create_task(bus.publish_many("mentions", events(3)))
    while producer.handed < 3:  # every record handed over; no answer yet
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    del task
    assert await collected(unretrieved) == []
    assert published(metrics) is None  # nothing counted by a cancelled call
