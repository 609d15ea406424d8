"""The last cursor of a source that ends: saved whatever a cursor-save backoff says, tried a
few times within seconds, and logged as an error and counted when it still cannot be."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from core.bus.memory import MemoryBus
from core.clock import ManualClock
from core.events import Mention
from core.metrics import Metrics
from listener.config import ListenerConfig, WatchConfig
from listener.cursors import MemoryCursorStore
from listener.dedup import Deduplicator
from listener.service import FINAL_SAVE_TRIES, ListenerService
from listener.sources.base import CheckpointedSource, SourceFatalError

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


class SteppingClock(ManualClock):
    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)


class FailingStore(MemoryCursorStore):
    """A cursor store whose first ``failures`` saves fail (the database is down)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.tries = 0

    async def save(self, key: str, cursor: str) -> None:
        self.tries += 1
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database unavailable")
        await super().save(key, cursor)


class Backlog:
    """A finite source with a cursor (a backfill, a replay that keeps its place): ``n``
    mentions, the cursor after each its number; then the stream ends, or raises
    ``SourceFatalError`` when ``fatal``."""

    name = "backlog"

    def __init__(self, n: int, store: MemoryCursorStore, *, fatal: bool = False) -> None:
        self.n = n
        self.store = store
        self.fatal = fatal
        self._delivered: str | None = None
        self._saved: str | None = None

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def mentions(self) -> AsyncIterator[Mention]:
        for i in range(1, self.n + 1):
            yield Mention(id=f"test:{i}", source="test", text="acme", created_at=T0)
        if self.fatal:
            raise SourceFatalError("credentials refused")

    def delivered(self, mention: Mention) -> None:
        self._delivered = mention.id.rpartition(":")[2]

    async def save_cursor(self, *, force: bool = False) -> None:
        if self._delivered is not None and self._delivered != self._saved:
            await self.store.save(self.name, self._delivered)
            self._saved = self._delivered


def make(clock: ManualClock, metrics: Metrics) -> ListenerService:
    config = ListenerConfig.model_validate(
        {
            "watches": [WatchConfig(id="acme", terms=["acme"])],
            "ingest_batch": 2,
            "source_retry_seconds": 2,
        }
    )
    return ListenerService(MemoryBus(capacity=1000), config, clock, metrics, Deduplicator(100))


def errors(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value(
        "crisiswatch_source_errors_total", {"source": "backlog"}
    )
    return value or 0.0


async def test_a_finite_source_saves_its_last_cursor_while_a_save_backoff_is_pending() -> None:
    clock, metrics = SteppingClock(T0), Metrics()
    store = FailingStore(failures=1)  # the first save fails: the next waits 2 s
    source = Backlog(6, store)
    assert isinstance(source, CheckpointedSource)
    service = make(clock, metrics)
    assert await service.run_source(source) == 6
    # the stream ended within the 2 s: it was saved on finishing (was: never saved)
    assert store.cursors == {"backlog": "6"}
    assert errors(metrics) == 1  # the failed save during the run
    assert clock.now() == T0  # nothing to wait for: the store was back


async def test_a_last_cursor_saved_at_a_later_try_of_the_final_save() -> None:
    clock, metrics = SteppingClock(T0), Metrics()
    store = FailingStore(failures=2)  # the run's save and the first final try fail
    service = make(clock, metrics)
    assert await service.run_source(Backlog(6, store)) == 6
    assert store.cursors == {"backlog": "6"}
    assert clock.now() == T0 + timedelta(seconds=2)
    assert errors(metrics) == 1


async def test_a_last_cursor_that_cannot_be_saved_is_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, metrics = SteppingClock(T0), Metrics()
    store = FailingStore(failures=1_000)
    service = make(clock, metrics)
    assert await service.run_source(Backlog(6, store)) == 6
    assert store.cursors == {}
    assert store.tries == 1 + FINAL_SAVE_TRIES  # the run's one try, then the final ones
    assert clock.now() == T0 + timedelta(seconds=2 + 4)  # bounded: let go within seconds
    assert errors(metrics) == 2  # the run's failed save, and the cursor given up
    finished = [r for r in caplog.records if "saving its last cursor failed" in r.message]
    assert len(finished) == 1 and finished[0].levelname == "ERROR"
    assert "backlog" in finished[0].message and "database unavailable" in finished[0].message


async def test_a_source_ended_by_a_fatal_error_saves_what_it_delivered() -> None:
    clock, metrics = SteppingClock(T0), Metrics()
    store = FailingStore(failures=1)
    service = make(clock, metrics)
    with pytest.raises(SourceFatalError, match="credentials refused"):
        await service.run_source(Backlog(4, store, fatal=True))
    assert store.cursors == {"backlog": "4"}
