"""The Kafka bus counts what goes wrong with the broker (fake clients): an operator can
alert on a producer whose sends fail, fetches that fail, and commits that fail (the
records since the last commit are delivered again), not only read them in the logs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

from core.bus.base import Subscription
from core.bus.kafka import KafkaBus, PublishIncomplete, _Consumer
from core.metrics import Metrics
from core.settings import BusConfig
from tests.integration.test_bus_contract import mention
from tests.unit.test_bus_publish_many import FakeProducer


def value(metrics: Metrics, name: str, labels: dict[str, str]) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


class RefusingProducer:
    async def send_and_wait(self, *_: Any, **__: Any) -> None:
        raise KafkaTimeoutError("no broker acknowledged the record")


async def _nothing(events: list[Any]) -> None:
    return None


def consumer_state(consumer: Any) -> _Consumer:
    state = _Consumer(sub=Subscription("scored", "detector", _nothing), physical="scored")
    state.consumer = consumer
    return state


async def test_a_send_the_broker_does_not_acknowledge_is_counted(metrics: Metrics) -> None:
    bus = KafkaBus(BusConfig(kind="kafka"), metrics)
    bus._producer = RefusingProducer()
    with pytest.raises(KafkaTimeoutError):
        await bus.publish("mentions", mention(1), key="k")
    labels = {"topic": "mentions"}
    assert value(metrics, "crisiswatch_bus_publish_failures_total", labels) == 1
    assert value(metrics, "crisiswatch_bus_published_total", labels) == 0


async def test_a_batch_partly_lost_counts_what_was_not_acknowledged(metrics: Metrics) -> None:
    bus = KafkaBus(BusConfig(kind="kafka"), metrics)
    bus._producer = FakeProducer(["ok", "lost", "refuse", "ok"])
    with pytest.raises(PublishIncomplete):
        await bus.publish_many("mentions", [(f"k{i}", mention(i)) for i in range(4)])
    labels = {"topic": "mentions"}
    # one acknowledged; one lost, one refused and one never handed over: not written
    assert value(metrics, "crisiswatch_bus_publish_failures_total", labels) == 3
    assert value(metrics, "crisiswatch_bus_published_total", labels) == 1


class FailingCommits:
    def __init__(self) -> None:
        self.tried = 0

    async def commit(self, offsets: dict[Any, int]) -> None:
        self.tried += 1
        raise KafkaConnectionError("the coordinator is gone")

    def assignment(self) -> set[Any]:
        return {"tp"}


async def test_a_commit_that_fails_is_counted(metrics: Metrics) -> None:
    bus = KafkaBus(BusConfig(kind="kafka"), metrics)
    state = consumer_state(FailingCommits())
    state.pending = {"tp": 7}
    await bus._commit(state)
    labels = {"topic": "scored", "group": "detector"}
    assert value(metrics, "crisiswatch_bus_commit_failures_total", labels) == 1
    assert state.pending == {"tp": 7}  # still due: committed with the next batch


class FailingFetches:
    def __init__(self, bus: KafkaBus, state: _Consumer) -> None:
        self.bus, self.state, self.calls = bus, state, 0

    async def getmany(self, **_: Any) -> dict[Any, list[Any]]:
        self.calls += 1
        if self.calls == 2:
            self.state.stopping = True  # the loop ends after its second try
        raise KafkaConnectionError("the broker is gone")


async def test_a_fetch_that_fails_is_counted(
    metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = KafkaBus(BusConfig(kind="kafka"), metrics)
    state = consumer_state(None)
    state.consumer = FailingFetches(bus, state)
    monkeypatch.setattr("core.bus.kafka._RETRY_DELAY", 0.0)
    await asyncio.wait_for(bus._run(state), 5)
    labels = {"topic": "scored", "group": "detector"}
    assert value(metrics, "crisiswatch_bus_fetch_failures_total", labels) == 2
