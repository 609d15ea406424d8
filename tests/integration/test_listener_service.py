"""ListenerService on a MemoryBus: dedup, matching, cascades, sources, start/stop."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel

from core.bus.base import Bus
from core.bus.memory import MemoryBus
from core.clock import ManualClock
from core.events import Mention
from core.metrics import Metrics
from listener.config import (
    DemoSourceConfig,
    ListenerConfig,
    ReplaySourceConfig,
    SourcesConfig,
    WatchConfig,
)
from listener.cursors import MemoryCursorStore
from listener.dedup import Deduplicator
from listener.health import Coverage
from listener.report import IngestReport
from listener.service import ListenerService, PublishFailed
from listener.sources.base import SourceFatalError
from listener.sources.demo import DemoSource
from listener.sources.live import LiveSource, Step

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
WATCHES = [
    WatchConfig(id="acme", brand="Acme", terms=["acme"], exclude=["giveaway"]),
    WatchConfig(id="phones", terms=["phone", "手机"]),
]


class SteppingClock(ManualClock):
    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)


class KeyedBus(MemoryBus):
    """A memory bus that also records what was published, with its key."""

    def __init__(self) -> None:
        super().__init__(capacity=10_000)
        self.sent: list[tuple[str, Mention, str]] = []
        self.fail_next = 0
        self.fail_after: int | None = None  # this many more publishes succeed, then one fails
        self.batches: list[int] = []  # the size of each publish_many call

    async def publish_many(self, topic: str, events: Sequence[tuple[str, BaseModel]]) -> None:
        self.batches.append(len(events))
        await Bus.publish_many(self, topic, events)  # one by one, through publish below

    async def publish(self, topic: str, event: BaseModel, *, key: str) -> None:
        if self.fail_after is not None:
            self.fail_after -= 1
            if self.fail_after < 0:
                self.fail_after = None
                raise ConnectionError("broker gone mid-batch")
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("broker unavailable")
        assert isinstance(event, Mention)
        self.sent.append((topic, event, key))
        await super().publish(topic, event, key=key)


def mention(i: int | str, text: str = "", **extra: object) -> Mention:
    data: dict[str, object] = {
        "id": f"test:{i}",
        "source": "test",
        "text": text,
        "created_at": T0,
        **extra,
    }
    return Mention.model_validate(data)


def make(
    clock: ManualClock | None = None,
    metrics: Metrics | None = None,
    **config: object,
) -> tuple[ListenerService, KeyedBus, Metrics]:
    bus = KeyedBus()
    metrics = metrics or Metrics()
    cfg = ListenerConfig.model_validate({"watches": WATCHES, **config})
    service = ListenerService(bus, cfg, clock or ManualClock(), metrics, Deduplicator(100))
    return service, bus, metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(f"crisiswatch_{name}_total", labels) or 0.0


async def test_publishes_one_event_per_matching_watch_keyed_by_mention_id() -> None:
    clock = ManualClock(T0 + timedelta(seconds=5))
    service, bus, metrics = make(clock)
    received: list[Mention] = []

    async def handler(events: list[Mention]) -> None:
        received.extend(events)

    bus.subscribe("mentions", "test", handler, max_batch=50)
    await bus.start()
    report = await service.ingest([mention(1, "Acme phone exploded"), mention(2, "Acme rocks")])
    await bus.join()
    await bus.stop()

    assert (report.accepted, report.published, report.unmatched, report.duplicates) == (2, 3, 0, 0)
    assert [(m.id, m.watch and m.watch.id) for m in received] == [
        ("test:1", "acme"),
        ("test:1", "phones"),
        ("test:2", "acme"),
    ]
    assert [key for _, _, key in bus.sent] == ["test:1", "test:1", "test:2"]
    assert received[0].watch is not None and received[0].watch.terms == ("acme",)
    assert all(m.received_at == clock.now() for m in received)
    assert report.items[0].watches == ("acme", "phones")
    assert sample(metrics, "mentions_ingested", source="test") == 2
    assert sample(metrics, "mentions_matched", watch="acme") == 2
    assert sample(metrics, "mentions_matched", watch="phones") == 1


async def test_keeps_a_received_at_that_is_already_set() -> None:
    service, bus, _ = make()
    stamped = T0 + timedelta(minutes=1)
    await service.ingest([mention(1, "acme", received_at=stamped)])
    assert bus.sent[0][1].received_at == stamped


async def test_duplicates_are_counted_and_not_published() -> None:
    service, bus, metrics = make()
    first = await service.ingest([mention(1, "acme"), mention(1, "acme again")])
    second = await service.ingest([mention(1, "acme")])
    assert (first.accepted, first.duplicates, second.duplicates) == (1, 1, 1)
    assert [i.outcome for i in first.items] == ["published", "duplicate"]
    assert len(bus.sent) == 1
    assert sample(metrics, "mentions_duplicate", source="test") == 2


async def test_unmatched_mentions_are_counted_not_published() -> None:
    service, bus, _ = make()
    report = await service.ingest([mention(1, "acmeville weather"), mention(2, "acme giveaway")])
    assert report.unmatched == 2
    assert report.accepted == 2
    assert [i.outcome for i in report.items] == ["unmatched", "unmatched"]
    assert bus.sent == []


async def test_reposts_and_replies_inherit_the_watches_of_what_they_continue() -> None:
    service, bus, _ = make()
    report = await service.ingest(
        [
            mention("root", "my Acme phone caught fire"),
            mention("rt1", "", repost_of="test:root"),
            mention("rt2", "", repost_of="test:rt1"),  # a repost of a repost
            mention("re1", "so dangerous!", reply_to="test:root"),
            mention("re2", "free giveaway here", reply_to="test:root"),  # own exclusion vetoes acme
            mention("orphan", "", repost_of="test:unknown"),
        ]
    )
    assert [(i.id, i.watches) for i in report.items] == [
        ("test:root", ("acme", "phones")),
        ("test:rt1", ("acme", "phones")),
        ("test:rt2", ("acme", "phones")),
        ("test:re1", ("acme", "phones")),
        ("test:re2", ("phones",)),
        ("test:orphan", ()),
    ]
    inherited = [m for _, m, _ in bus.sent if m.id == "test:rt2"]
    assert inherited[0].watch is not None and inherited[0].watch.terms == ("acme",)


async def test_a_failed_publish_unmarks_the_mention_so_a_retry_goes_through() -> None:
    service, bus, _ = make()
    bus.fail_next = 1
    with pytest.raises(PublishFailed, match="ConnectionError"):
        await service.ingest([mention(1, "acme")])
    report = await service.ingest([mention(1, "acme")])
    assert report.published == 1
    assert report.duplicates == 0


async def test_a_publish_failing_mid_batch_loses_nothing_of_the_batch_on_retry() -> None:
    service, bus, metrics = make()
    batch = [mention(1, "acme"), mention(2, "acme"), mention(3, "acme")]
    done: list[str] = []
    bus.fail_after = 1  # the first event is accepted, the second fails
    with pytest.raises(PublishFailed, match="ConnectionError"):
        await service.ingest(batch, lambda m: done.append(m.id))
    assert [m.id for _, m, _ in bus.sent] == ["test:1"]
    assert done == []  # no cursor moves past an unpublished mention
    report = await service.ingest(batch, lambda m: done.append(m.id))
    assert (report.published, report.duplicates) == (3, 0)
    assert [m.id for _, m, _ in bus.sent] == ["test:1", "test:1", "test:2", "test:3"]
    assert done == ["test:1", "test:2", "test:3"]
    assert sample(metrics, "mentions_matched", watch="acme") == 3


async def test_a_batch_is_published_with_one_publish_many_call() -> None:
    service, bus, metrics = make()
    report = await service.ingest(
        [mention(1, "acme phone"), mention(2, "weather"), mention(3, "acme")]
    )
    assert bus.batches == [3]  # two watches for the first, none for the second, one for the third
    assert report.published == 3
    assert sample(metrics, "mentions_matched", watch="acme") == 2
    assert sample(metrics, "mentions_matched", watch="phones") == 1


async def test_hostile_source_names_do_not_create_unbounded_metric_labels() -> None:
    service, _, metrics = make()
    await service.ingest(
        [mention(i, "acme", source=f"Weird Source {i}", id=f"w{i}:1") for i in range(3)]
    )
    assert sample(metrics, "mentions_ingested", source="other") == 3


class ListSource:
    """An in-memory source; optionally fails (once, or fatally) after some items."""

    def __init__(
        self, mentions: list[Mention], fail_at: int | None = None, fatal: bool = False
    ) -> None:
        self.name = "list"
        self.items = mentions
        self.position = 0
        self.fail_at = fail_at
        self.fatal = fatal
        self.opened = 0
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def mentions(self) -> AsyncIterator[Mention]:
        self.opened += 1
        while self.position < len(self.items):
            if self.position == self.fail_at:
                self.fail_at = None if not self.fatal else self.fail_at
                if self.fatal:
                    raise SourceFatalError("credentials refused")
                raise ConnectionError("connection reset")
            item = self.items[self.position]
            self.position += 1  # resumes after the last item on reopening
            yield item


async def test_run_source_ingests_in_bounded_batches() -> None:
    service, bus, _ = make(ingest_batch=50)
    sizes: list[int] = []
    ingest = service.ingest

    async def spy(batch: Sequence[Mention]) -> IngestReport:
        sizes.append(len(batch))
        return await ingest(batch)

    service.ingest = spy  # type: ignore[method-assign]
    source = ListSource([mention(i, "acme") for i in range(230)])
    assert await service.run_source(source) == 230
    assert len(bus.sent) == 230
    assert max(sizes) <= 50
    assert sum(sizes) == 230
    assert len(sizes) < 230  # a fast source does get batched


async def test_run_source_backs_off_and_reopens_after_an_error() -> None:
    clock = SteppingClock(T0)
    service, bus, metrics = make(clock, source_retry_seconds=2)
    source = ListSource([mention(i, "acme") for i in range(10)], fail_at=4)
    assert await service.run_source(source) == 10
    assert source.opened == 2
    assert [m.id for _, m, _ in bus.sent] == [f"test:{i}" for i in range(10)]
    assert sample(metrics, "source_errors", source="list") == 1
    assert clock.now() == T0 + timedelta(seconds=2)


async def test_run_source_ends_on_a_fatal_error() -> None:
    service, bus, metrics = make()
    source = ListSource([mention(i, "acme") for i in range(10)], fail_at=3, fatal=True)
    with pytest.raises(SourceFatalError, match="credentials refused"):
        await service.run_source(source)
    assert len(bus.sent) == 3
    assert sample(metrics, "source_errors", source="list") == 1


class Ticks(LiveSource):
    """A live source with a cursor: ``n`` mentions (the cursor after each is its number),
    then quiet until ``add`` posts more."""

    kind = "ticks"
    coverage = Coverage(needs="nothing", covers="a test")

    def __init__(self, n: int, clock: ManualClock, cursors: MemoryCursorStore, m: Metrics) -> None:
        super().__init__("ticks", clock, cursors, m, save_every_seconds=0)
        self.n = n
        self.more = asyncio.Event()

    def add(self, n: int) -> None:
        self.n += n
        self.more.set()

    async def stream(self, cursor: str | None) -> AsyncIterator[Step]:
        self.health.set_state("polling")
        i = int(cursor or 0)
        while True:
            while i < self.n:
                i += 1
                yield mention(i, "acme"), str(i)
            self.more.clear()
            await self.more.wait()


async def settle(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


async def test_a_bus_outage_holds_the_batch_and_retries_it_until_it_is_published() -> None:
    clock, metrics, store = ManualClock(T0), Metrics(), MemoryCursorStore()
    service, bus, _ = make(clock, metrics, source_retry_seconds=2)
    bus.fail_next = 2  # the broker is down for the first two tries
    source = Ticks(5, clock, store, metrics)
    await source.start()
    task = asyncio.create_task(service.run_source(source))
    await settle(lambda: source.health.state == "waiting")
    # the outage is visible: not up, the error counted; nothing delivered, no cursor
    assert metrics.registry.get_sample_value("crisiswatch_source_up", {"source": "ticks"}) == 0
    assert sample(metrics, "source_errors", source="ticks") == 1
    assert "broker unavailable" in (source.health.last_error or "")
    assert store.cursors == {} and not bus.sent
    clock.advance(2)  # the second try fails too; the wait doubles
    await settle(lambda: sample(metrics, "source_errors", source="ticks") == 2)
    clock.advance(2)
    await asyncio.sleep(0)
    assert not bus.sent
    clock.advance(2)  # the third try goes through, and the stream goes on
    await settle(lambda: store.cursors.get("ticks") == "5")
    assert [m.id for _, m, _ in bus.sent] == [f"test:{i}" for i in range(1, 6)]
    assert source.health.state == "polling"
    assert metrics.registry.get_sample_value("crisiswatch_source_up", {"source": "ticks"}) == 1
    assert sample(metrics, "mentions_ingested", source="test") == 5  # once, not per try
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_bug_in_matching_ends_the_source_instead_of_retrying_it_for_ever() -> None:
    """Only a batch the bus did not take is held and retried; any other error (the same
    batch would fail the same way for ever) ends the source, visibly failed."""
    clock, metrics, store = ManualClock(T0), Metrics(), MemoryCursorStore()
    service, bus, _ = make(clock, metrics, source_retry_seconds=2)

    def broken(*_: object, **__: object) -> list[object]:
        raise KeyError("a bug in the matcher")

    service.matcher.match = broken  # type: ignore[method-assign]
    source = Ticks(5, clock, store, metrics)
    await source.start()
    with pytest.raises(KeyError, match="a bug in the matcher"):
        await asyncio.wait_for(service.run_source(source), timeout=5)
    assert not bus.sent and store.cursors == {}


async def test_stopping_during_a_bus_outage_saves_no_cursor_past_what_was_published() -> None:
    clock, metrics, store = ManualClock(T0), Metrics(), MemoryCursorStore()
    bus = KeyedBus()
    bus.fail_next = 1_000
    dedup = Deduplicator(100)
    cfg = ListenerConfig.model_validate({"watches": WATCHES})
    source = Ticks(3, clock, store, metrics)
    service = ListenerService(bus, cfg, clock, metrics, dedup, sources=[source])
    await service.start()
    await settle(lambda: source.health.state == "waiting")
    await service.stop()  # cancels the retry wait: the task ends, nothing is swallowed
    assert not service.running
    assert store.cursors == {}
    assert source.health.state == "stopped"
    assert not dedup.seen("test:1")  # unmarked: a retry (a new run) takes it again


class FailingStore(MemoryCursorStore):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def save(self, key: str, cursor: str) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database unavailable")
        await super().save(key, cursor)


async def test_a_database_outage_is_counted_and_ingesting_goes_on() -> None:
    clock, metrics, store = ManualClock(T0), Metrics(), FailingStore(failures=2)
    service, bus, _ = make(clock, metrics, source_retry_seconds=2)
    source = Ticks(3, clock, store, metrics)
    await source.start()
    task = asyncio.create_task(service.run_source(source))
    await settle(lambda: len(bus.sent) == 3)
    assert sample(metrics, "source_errors", source="ticks") == 1
    assert "database unavailable" in (source.health.last_error or "")
    assert source.health.state == "polling"  # mentions still flow
    source.add(3)  # no new try before 2 s have passed
    await settle(lambda: len(bus.sent) == 6)
    assert sample(metrics, "source_errors", source="ticks") == 1
    clock.advance(2)
    source.add(1)  # due again: it fails once more (the next try after 4 s)
    await settle(lambda: sample(metrics, "source_errors", source="ticks") == 2)
    assert store.cursors == {} and len(bus.sent) == 7
    clock.advance(4)
    source.add(1)
    await settle(lambda: store.cursors.get("ticks") == "8")
    assert sample(metrics, "source_errors", source="ticks") == 2
    assert not task.done()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def write_replay(path: Path, n: int) -> Path:
    lines = [
        json.dumps(
            {
                "id": f"weibo:{i}",
                "source": "weibo",
                "lang": "zh",
                "text": "Acme手机充电起火" if i == 0 else "",
                "created_at": (T0 + timedelta(seconds=i)).isoformat(),
                "author": {"id": str(i), "followers": None},
                **({"repost_of": "weibo:0"} if i else {}),
            }
        )
        for i in range(n)
    ]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\nnot json\n").encode()))
    return path


async def test_start_runs_the_configured_replay_to_its_end(tmp_path: Path) -> None:
    path = write_replay(tmp_path / "r.jsonl.gz", 120)
    clock = SteppingClock(T0)
    service, bus, metrics = make(
        clock, sources=SourcesConfig(replay=ReplaySourceConfig(path=path, speed=60))
    )
    await service.start()
    await asyncio.wait_for(service.join(), timeout=10)
    assert not service.running
    assert len(bus.sent) == 120 * 2  # the reposts inherit both watches of the original
    assert sample(metrics, "mentions_rejected", source="replay", reason="not_json") == 1
    await service.stop()


async def test_start_fails_loudly_when_a_source_cannot_start(tmp_path: Path) -> None:
    service, _, _ = make(
        sources=SourcesConfig(replay=ReplaySourceConfig(path=tmp_path / "missing.jsonl.gz"))
    )
    with pytest.raises(SourceFatalError, match="cannot be read"):
        await service.start()
    assert not service.running


async def test_a_runtime_whose_start_fails_stops_what_it_started(tmp_path: Path) -> None:
    """The bus, its consumers, the database engine and the HTTP client were left open
    (on Kafka: consumers that never left their group, a producer never flushed)."""
    from api.runtime import ALL_ROLES, Runtime
    from api.settings import Settings

    settings = Settings.model_validate(
        {
            "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'cw.db'}"},
            "listener": {"sources": {"replay": {"path": str(tmp_path / "missing.jsonl.gz")}}},
        }
    )
    runtime = Runtime(settings, roles=ALL_ROLES, migrate=True)  # as `crisiswatch run`
    with pytest.raises(SourceFatalError, match="cannot be read"):
        await runtime.start()
    assert runtime.bus is not None and not runtime.bus.started
    assert runtime.http is not None and runtime.http.is_closed
    assert not runtime.ready


@pytest.mark.parametrize(
    ("listener", "said"),
    [
        ({}, ["no watches configured", "takes no mentions in"]),
        (
            {"watches": [{"id": "acme", "brand": "Acme", "terms": ["acme"]}]},
            ["takes no mentions in"],
        ),
        (
            {
                "watches": [{"id": "acme", "brand": "Acme", "terms": ["acme"]}],
                "webhook": {"enabled": True, "secret": "at-least-16-characters"},
            },
            [],
        ),
    ],
)
async def test_a_listener_that_can_publish_nothing_says_so_at_start(
    listener: dict[str, object], said: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """``crisiswatch listener`` started without its config file (the README's distributed
    commands had no --config) was up and ready, and published nothing: no watch, no source,
    the webhook off. A WARNING at start now says each of these."""
    from api.runtime import Role, Runtime
    from api.settings import Settings

    settings = Settings.model_validate({"listener": listener})
    runtime = Runtime(settings, roles=frozenset({Role.LISTENER}))
    with caplog.at_level(logging.WARNING, logger="api.runtime"):
        await runtime.start()
    try:
        messages = [r.getMessage() for r in caplog.records]
        # (without a database.url the listener also says where its cascade index stays)
        warned = [m for m in messages if m.startswith("listener: no ") and "database" not in m]
        assert len(warned) == len(said), warned
        assert all(any(part in w for w in warned) for part in said), warned
    finally:
        await runtime.stop()


async def test_stop_stops_an_endless_source_and_is_idempotent() -> None:
    clock = ManualClock(T0)
    service, bus, _ = make(clock, sources=SourcesConfig(demo=DemoSourceConfig(speed=100)))
    await service.start()
    await service.start()  # no second set of tasks
    for _ in range(100):
        clock.advance(0.5)
        await asyncio.sleep(0)
    assert service.running
    assert bus.sent
    await service.stop()
    assert not service.running
    await service.stop()


async def test_the_demo_story_flows_through_the_demo_watch() -> None:
    """Every post of the complaint's cascade reaches the topic, empty reposts included."""
    clock = SteppingClock(T0)
    bus = KeyedBus()
    service = ListenerService(bus, ListenerConfig.demo(), clock, Metrics(), Deduplicator())
    source = DemoSource(DemoSourceConfig(duration_seconds=150), clock)
    taken = await service.run_source(source)
    published = [m for _, m, _ in bus.sent]
    assert taken > 300
    assert len(published) > 300
    assert len({m.source for m in published}) == 4
    assert sum(1 for m in published if m.text == "") >= 30
    assert all(m.watch is not None and m.watch.id == "nimbus" for m in published)
    assert not any("clouds" in m.text for m in published)


async def test_source_filters_of_a_query_see_the_mentions_source() -> None:
    bus = KeyedBus()
    cfg = ListenerConfig.model_validate(
        {
            "watches": [
                {"id": "weibo-only", "query": "acme source:weibo"},
                {"id": "news", "query": "acme", "sources": ["rss"]},
            ]
        }
    )
    service = ListenerService(bus, cfg, ManualClock(), Metrics(), Deduplicator(100))
    report = await service.ingest(
        [
            mention(1, "acme recall", source="weibo"),
            mention(2, "acme recall", source="rss"),
            mention(3, "acme recall", source="bluesky"),
        ]
    )
    assert [item.watches for item in report.items] == [("weibo-only",), ("news",), ()]
