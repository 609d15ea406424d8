"""``Runtime.stop`` closes a sentence embedder it loaded itself (its model's thread pool),
on a normal stop as after a failed start-up, and never one it was handed; a Kafka bus
whose start is interrupted says so (its log line read "did not start: " with nothing
after it: a ``CancelledError`` has no text)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

import api.runtime as runtime_module
from api.runtime import Role, Runtime
from api.settings import Settings
from core.bus.kafka import KafkaBus
from core.bus.memory import MemoryBus
from core.metrics import Metrics
from core.settings import BusConfig
from sentiment.config import ScorerConfig
from tests.fakes import FakeClassifier, FakeKafkaProducer

GUARD = 30.0  # generous: every wait below ends in well under a second


class ClosableEmbedder:
    name = "fake-embed"

    def __init__(self) -> None:
        self.closed = 0

    def embed(self, texts: Sequence[str]) -> list[str | None]:
        return [None] * len(texts)

    def close(self) -> None:
        self.closed += 1


def scorer_runtime(**kw: object) -> Runtime:
    settings = Settings(bus=BusConfig(journal="off"), scorer=ScorerConfig(embedder="e5-embed"))
    return Runtime(
        settings,
        roles=frozenset({Role.SCORER}),
        classifier=FakeClassifier(),
        **kw,  # type: ignore[arg-type]
    )


async def test_a_normal_stop_closes_the_embedder_it_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loaded = ClosableEmbedder()
    monkeypatch.setattr(runtime_module, "load_embedder", lambda config: loaded)
    runtime = scorer_runtime()
    await runtime.start()
    assert runtime.embedder is loaded and loaded.closed == 0
    await runtime.stop()
    after: object = runtime.embedder  # (mypy narrowed it to the loaded one above)
    assert loaded.closed == 1 and after is None
    await runtime.stop()  # stopping again closes nothing twice
    assert loaded.closed == 1


async def test_a_start_that_fails_after_the_load_closes_the_embedder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loaded = ClosableEmbedder()
    monkeypatch.setattr(runtime_module, "load_embedder", lambda config: loaded)

    class Broken(RuntimeError):
        pass

    async def fails(self: object) -> None:
        raise Broken("the bus cannot start")

    monkeypatch.setattr(MemoryBus, "start", fails)
    runtime = scorer_runtime()
    with pytest.raises(Broken):
        await runtime.start()
    assert loaded.closed == 1


async def test_an_embedder_handed_to_the_runtime_is_left_open() -> None:
    given = ClosableEmbedder()
    runtime = scorer_runtime(embedder=given)
    await runtime.start()
    assert runtime.embedder is given
    await runtime.stop()
    assert given.closed == 0, "its owner closes it"


async def test_an_interrupted_kafka_start_says_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    bus = KafkaBus(BusConfig(kind="kafka", bootstrap_servers="broker.invalid:9092"), Metrics())
    reached = asyncio.Event()

    async def hangs() -> None:  # (a broker that does not answer yet)
        reached.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(bus, "_ensure_topics", hangs)
    caplog.set_level(logging.INFO, logger="core.bus.kafka")
    starting = asyncio.create_task(bus.start())
    await asyncio.wait_for(reached.wait(), GUARD)
    starting.cancel()  # SIGTERM during start-up (Runtime.interrupt_start)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(starting, GUARD)
    (line,) = [r.getMessage() for r in caplog.records if "did not start" in r.getMessage()]
    assert "broker.invalid:9092" in line and "interrupted" in line, line
    assert not line.rstrip().endswith(":"), line


async def test_a_kafka_start_failing_without_a_message_names_the_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    bus = KafkaBus(BusConfig(kind="kafka", bootstrap_servers="broker.invalid:9092"), Metrics())

    async def fails() -> None:
        raise TimeoutError()

    monkeypatch.setattr(bus, "_ensure_topics", fails)
    caplog.set_level(logging.INFO, logger="core.bus.kafka")
    with pytest.raises(TimeoutError):
        await bus.start()
    (line,) = [r.getMessage() for r in caplog.records if "did not start" in r.getMessage()]
    assert line.endswith("TimeoutError()"), line


class _HeldConsumer:
    """An ``AIOKafkaConsumer`` whose group join (``start``) waits until ``joined`` is set."""

    joined = asyncio.Event()
    stopped = 0

    def __init__(self, **options: object) -> None:
        self.options = options

    def subscribe(self, topics: list[str], listener: object) -> None:
        pass

    async def start(self) -> None:
        await type(self).joined.wait()

    def assignment(self) -> set[object]:
        return {"p0"} if type(self).joined.is_set() else set()

    async def stop(self) -> None:
        type(self).stopped += 1


async def test_a_start_that_waits_on_its_group_join_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A join the broker holds up left a role at "starting the Kafka bus" for minutes with
    nothing more in its log: it now says, every ``JOIN_NOTICE_SECONDS``, which groups are
    still joining; the start goes on once they have joined."""
    import core.bus.kafka as kafka

    _HeldConsumer.joined = asyncio.Event()
    monkeypatch.setattr(kafka, "AIOKafkaConsumer", _HeldConsumer)
    monkeypatch.setattr(kafka, "AIOKafkaProducer", FakeKafkaProducer)
    monkeypatch.setattr(kafka, "JOIN_NOTICE_SECONDS", 0.01)
    bus = KafkaBus(BusConfig(kind="kafka", bootstrap_servers="broker.invalid:9092"), Metrics())

    async def topics_exist() -> None:
        pass

    async def handler(events: list[object]) -> None:
        pass

    monkeypatch.setattr(bus, "_ensure_topics", topics_exist)
    monkeypatch.setattr(bus, "_run", lambda state: asyncio.Event().wait())
    bus.subscribe("mentions", "scorer", handler)
    caplog.set_level(logging.INFO, logger="core.bus.kafka")
    starting = asyncio.create_task(bus.start())

    def notices() -> list[str]:
        return [r.getMessage() for r in caplog.records if "still joining" in r.getMessage()]

    async def noticed() -> None:
        while len(notices()) < 2:
            await asyncio.sleep(0.005)

    await asyncio.wait_for(noticed(), GUARD)
    assert not starting.done()
    assert "crisiswatch.scorer" in notices()[0], notices()
    _HeldConsumer.joined.set()
    await asyncio.wait_for(starting, GUARD)
    assert any("the Kafka bus is started" in r.getMessage() for r in caplog.records)
    await bus.stop()
