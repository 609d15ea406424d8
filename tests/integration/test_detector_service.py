"""The detector stage on the memory bus: scored mentions in, Signals out keyed by story;
a failed publish is retried without losing or duplicating a Signal."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from core.bus import PermanentError
from core.bus.memory import MemoryBus
from core.events import TOPIC_SCORED, TOPIC_SIGNALS, Signal
from core.metrics import Metrics
from sentiment.detector.config import DetectorConfig
from sentiment.detector.service import DetectorService
from tests.unit.test_detector import by_time, chatter, complaint


def sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    value = metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


async def test_signals_flow_through_the_bus_keyed_by_story(metrics: Metrics) -> None:
    bus = MemoryBus(capacity=5_000, metrics=metrics)
    service = DetectorService(bus, DetectorConfig(max_wait_seconds=0), metrics, generation="")
    service.register()
    received: list[Signal] = []

    async def collect(events: list[Signal]) -> None:
        received.extend(events)

    bus.subscribe(TOPIC_SIGNALS, "test", collect, max_batch=100)
    await bus.start()
    try:
        stream = by_time(chatter(0, 180), complaint(120))
        for item in stream:
            await bus.publish(TOPIC_SCORED, item, key="acme")
        await bus.join()
        for item in stream[-50:]:  # redelivered: nothing new
            await bus.publish(TOPIC_SCORED, item, key="acme")
        await bus.join()
    finally:
        await bus.stop()
    assert [(s.id, s.tier) for s in received] == [
        ("acme:x:root#1", 1),
        ("acme:x:root#2", 1),
        ("acme:x:root#3", 2),
        ("acme:x:root#4", 3),
    ]
    assert sample(metrics, "crisiswatch_signals_emitted_total", {"tier": "1"}) == 2
    assert sample(metrics, "crisiswatch_signals_emitted_total", {"tier": "3"}) == 1
    assert sample(metrics, "crisiswatch_stories_active") == service.detector.stories_active > 1
    assert sample(metrics, "crisiswatch_stage_latency_seconds_count", {"stage": "detector"}) > 0
    assert bus.dead_letters == []


class FlakyBus(MemoryBus):
    """Refuses the first ``failures`` publications to "signals"."""

    def __init__(self, failures: int, metrics: Metrics) -> None:
        super().__init__(capacity=5_000, metrics=metrics)
        self.failures = failures
        self.signals: list[tuple[str, Signal]] = []

    async def publish(self, topic: str, event: BaseModel, *, key: str) -> None:
        if topic == TOPIC_SIGNALS:
            if self.failures:
                self.failures -= 1
                raise ConnectionError("broker unavailable")
            assert isinstance(event, Signal)
            self.signals.append((key, event))
        await super().publish(topic, event, key=key)


async def test_a_failed_publish_is_retried_on_redelivery(metrics: Metrics) -> None:
    bus = FlakyBus(failures=1, metrics=metrics)
    service = DetectorService(bus, DetectorConfig(), metrics, generation="")
    batch: list[Any] = by_time(complaint(120))[:20]
    with pytest.raises(ConnectionError):
        await service.handle(batch)
    await service.handle(batch)  # the bus delivers the batch again
    assert [(key, s.id) for key, s in bus.signals] == [
        ("acme:x:root", "acme:x:root#1"),
        ("acme:x:root", "acme:x:root#2"),
        ("acme:x:root", "acme:x:root#3"),
    ]


async def test_an_event_of_the_wrong_type_is_permanent(metrics: Metrics) -> None:
    service = DetectorService(MemoryBus(metrics=metrics), DetectorConfig(), metrics, generation="")
    with pytest.raises(PermanentError, match="ScoredMention"):
        await service.handle([object()])


def test_a_restarted_detector_never_reuses_signal_ids() -> None:
    metrics = Metrics()

    def ids(generation: str | None = None) -> list[str]:
        service = DetectorService(
            MemoryBus(metrics=metrics), DetectorConfig(), metrics, generation=generation
        )
        return [s.id for m in by_time(complaint(120)) for s in service.detector.observe(m)]

    first, second = ids(), ids()
    assert len(first) == len(second) == 4
    assert not set(first) & set(second)  # each watch started afresh has its own generation
    assert ids("") == [f"acme:x:root#{n}" for n in range(1, 5)]
