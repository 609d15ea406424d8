"""A mention too large for Kafka, on a real broker (review of the Kafka mode, finding 1).

Before: a webhook batch holding one item with a 1.1 MB link was answered 503 "bus" with
``Retry-After`` on every retry (aiokafka refuses a record over its 1 MiB
``max_request_size``), and the batch's good items were published again on each; the
listener's ``ingest`` raised ``PublishFailed`` for the whole batch. Now such an item is
refused alone, where it is parsed (the bounds of ``core.events``), and an event the
producer refuses for its size all the same (a producer limit below a mention's size) is
refused alone by the listener: the rest is published, once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from api.app import create_app
from api.runtime import Role, Runtime
from api.settings import Settings
from core.bus.kafka import KafkaBus
from core.clock import ManualClock
from core.events import MAX_URL_CHARS, Mention
from core.metrics import Metrics
from core.settings import BusConfig
from listener.config import ListenerConfig, WatchConfig, WebhookConfig
from listener.dedup import Deduplicator
from listener.service import ListenerService
from listener.webhook import signed_headers

pytestmark = pytest.mark.kafka

SECRET = "ingest-secret-0123456789abcdef"
WATCHES = [WatchConfig(id="acme", brand="Acme", terms=["acme"])]


async def topic_ids(config: BusConfig, count: int, timeout: float = 10.0) -> list[str]:
    """The ids of the first ``count`` events on the mentions topic (then a moment more:
    anything published twice would show)."""
    consumer = AIOKafkaConsumer(
        config.topic_prefix + "mentions",
        bootstrap_servers=config.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    ids: list[str] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        settle: float | None = None
        while loop.time() < (settle or deadline):
            batches = await consumer.getmany(timeout_ms=200)
            for messages in batches.values():
                ids.extend(json.loads(m.value)["id"] for m in messages)
            if len(ids) >= count and settle is None:
                settle = loop.time() + 0.3
    finally:
        await consumer.stop()
    return sorted(ids)


async def test_ingest_refuses_alone_a_mention_the_producer_refuses(
    kafka_config: BusConfig, clock: ManualClock
) -> None:
    metrics = Metrics()
    bus = KafkaBus(kafka_config, metrics)
    await bus.start()
    try:
        config = ListenerConfig(watches=WATCHES)
        service = ListenerService(bus, config, clock, metrics, Deduplicator())
        at = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        # over the producer's 1 MiB whatever its cause (built unchecked: another producer's
        # bounds, a larger text limit)
        huge = Mention.model_construct(
            id="t:huge", source="t", text="acme " + "x" * 1_100_000, created_at=at
        )
        batch = [
            Mention(id=f"t:{i}", source="t", text="acme is down", created_at=at) for i in range(3)
        ]
        batch.insert(1, huge)

        report = await service.ingest(batch)  # before: PublishFailed, for ever

        assert [item.outcome for item in report.items] == [
            "published",
            "too_large",
            "published",
            "published",
        ]
        assert "MessageSizeTooLargeError" in report.items[1].reason
        assert await topic_ids(kafka_config, 3) == ["t:0", "t:1", "t:2"]  # each once
    finally:
        await bus.stop()


@pytest.fixture
async def webhook(
    kafka_config: BusConfig, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    """A listener process on Kafka serving the webhook."""
    settings = Settings(
        bus=kafka_config,
        listener=ListenerConfig(
            watches=WATCHES,
            webhook=WebhookConfig(enabled=True, secret=SECRET, max_body_bytes=4_000_000),
        ),
    )
    runtime = Runtime(settings, roles=frozenset({Role.LISTENER}), clock=clock)
    app = create_app(runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cw") as client:
            yield client, runtime


async def post(client: httpx.AsyncClient, clock: ManualClock, items: list[dict[str, Any]]) -> Any:
    body = json.dumps({"mentions": items}).encode()
    headers = signed_headers(SECRET, body, clock.now())
    return await client.post("/ingest/mentions", content=body, headers=headers)


def item(clock: ManualClock, i: int, **extra: object) -> dict[str, Any]:
    fields = {"id": f"t:{i}", "source": "t", "text": "acme is down"}
    return {**fields, "created_at": clock.now().isoformat(), **extra}


def rejected(runtime: Runtime, reason: str) -> float | None:
    labels = {"source": "webhook", "reason": reason}
    return runtime.metrics.registry.get_sample_value("crisiswatch_mentions_rejected_total", labels)


async def test_webhook_an_item_with_a_huge_url_is_refused_alone_the_rest_published(
    webhook: tuple[httpx.AsyncClient, Runtime], kafka_config: BusConfig, clock: ManualClock
) -> None:
    client, runtime = webhook
    huge = "https://e.example/" + "a" * 1_100_000
    items = [item(clock, 0), item(clock, 1, url=huge), item(clock, 2)]

    answer = await post(client, clock, items)  # before: 503 "bus", for ever

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["published"], body["rejected"]) == (2, 1)
    url_error = f"url: Value error, at most {MAX_URL_CHARS} characters (not 1100018)"
    assert body["errors"] == [{"index": 1, "id": "t:1", "message": url_error}]
    assert rejected(runtime, "invalid") == 1
    assert await topic_ids(kafka_config, 2) == ["t:0", "t:2"]


async def test_webhook_an_item_the_producer_refuses_for_its_size_is_refused_alone(
    webhook: tuple[httpx.AsyncClient, Runtime], kafka_config: BusConfig, clock: ManualClock
) -> None:
    client, runtime = webhook
    bus = runtime.bus
    assert isinstance(bus, KafkaBus) and bus._producer is not None
    # a producer limit below a mention the bounds allow (as a smaller max_request_size)
    bus._producer._max_request_size = 20_000
    items = [item(clock, 0), item(clock, 1, text="acme " + "x" * 39_000), item(clock, 2)]

    answer = await post(client, clock, items)  # before: 503 "bus", for ever

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["accepted"], body["published"], body["rejected"]) == (2, 2, 1)
    [error] = body["errors"]
    assert (error["index"], error["id"]) == (1, "t:1")
    assert error["message"].startswith("too large for the bus, refused for its size")
    assert "MessageSizeTooLargeError" in error["message"]
    assert [r["outcome"] for r in body["results"]] == ["published", "too_large", "published"]
    assert rejected(runtime, "too_large") == 1
    assert await topic_ids(kafka_config, 2) == ["t:0", "t:2"]

    # all refused: 422, as when every item is invalid
    answer = await post(client, clock, [item(clock, 3, text="acme " + "y" * 39_000)])
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["id"] == "t:3"
