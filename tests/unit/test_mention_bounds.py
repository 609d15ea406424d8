"""A mention too large for the bus (review of the Kafka mode, finding 1).

A mention over the Kafka producer's 1 MiB limit (a 1.1 MB link) was refused by aiokafka on
every try: the webhook answered 503 for ever and published the batch's good items again on
each retry; a source retried its batch for ever (a hostile feed stalled). Now its fields
are bounded where it is built (``core.events``), so the webhook refuses such an item alone
and a source skips it, counted; and an event the bus refuses for its size all the same is
refused alone by the listener, the rest of its batch published.

The broker's refusal (a topic configured smaller), which refuses a partition's whole batch,
is played by a fake producer; the producer's own refusal on a real broker is in
``tests/integration/test_oversized_mentions.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from pydantic import ValidationError

from core.bus.kafka import KafkaBus
from core.clock import ManualClock
from core.events import (
    MAX_AUTHOR_CHARS,
    MAX_COUNT,
    MAX_LANG_CHARS,
    MAX_TEXT_CHARS,
    MAX_URL_CHARS,
    Author,
    Engagement,
    Mention,
    ScoredMention,
    Sentiment,
    WatchMatch,
)
from core.metrics import Metrics
from core.settings import BusConfig
from listener.config import ListenerConfig, WatchConfig
from listener.dedup import Deduplicator
from listener.service import ListenerService, PublishFailed
from listener.sources.feeds import FeedsConfig
from listener.webhook import parse_batch, refused_by_bus
from tests.unit.test_feed_robustness import URL, poll, rss

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
KAFKA_DEFAULT_MAX_REQUEST = 1024 * 1024  # aiokafka's max_request_size, Kafka's message.max.bytes
HUGE = 1_100_000  # characters: over the producer's 1 MiB


def good(i: int, text: str = "acme is down") -> Mention:
    return Mention(id=f"t:{i}", source="t", text=text, created_at=T0)


# --- the bounds where a mention is built ----------------------------------------------


@pytest.mark.parametrize(
    ("field", "limit"),
    [
        ("url", MAX_URL_CHARS),
        ("author.id", MAX_AUTHOR_CHARS),
        ("author.handle", MAX_AUTHOR_CHARS),
        ("lang", MAX_LANG_CHARS),
    ],
)
def test_a_field_over_its_bound_is_refused_and_one_at_it_is_taken(field: str, limit: int) -> None:
    def built(length: int) -> Mention:
        value = "a" * length
        data: dict[str, Any] = {"id": "t:1", "source": "t", "created_at": T0}
        if field.startswith("author."):
            data["author"] = {field.removeprefix("author."): value}
        else:
            data[field] = value
        return Mention.model_validate(data)

    built(limit)  # at the bound: taken
    with pytest.raises(ValidationError) as caught:
        built(limit + 1)
    assert f"at most {limit} characters (not {limit + 1})" in str(caught.value)
    with pytest.raises(ValidationError):
        built(HUGE)


def test_the_longest_mention_the_bounds_allow_fits_a_kafka_record() -> None:
    """Every bounded field at its longest, of characters JSON writes as 6 bytes each: the
    Mention and its ScoredMention stay well under Kafka's default 1 MiB (see the note
    after ``MAX_LANG_CHARS``), with room for the operator's watch brand and terms."""
    c = "\x01"  # written "\u0001"
    mention = Mention(
        id="s:" + "x" * 509,
        source="x" * 64,
        url=c * MAX_URL_CHARS,
        text=c * MAX_TEXT_CHARS,
        lang="a" * MAX_LANG_CHARS,
        created_at=T0,
        received_at=T0,
        author=Author(id=c * MAX_AUTHOR_CHARS, handle=c * MAX_AUTHOR_CHARS, followers=MAX_COUNT),
        engagement=Engagement(likes=MAX_COUNT, reposts=MAX_COUNT, replies=MAX_COUNT, views=1),
        reply_to=c * 512,
        repost_of=c * 512,
        watch=WatchMatch(id="w" * 100, brand="b" * 100, terms=("t" * 100,) * 10),
        change="edited",
        edited_at=T0,
    )
    scored = ScoredMention(
        mention=mention,
        sentiment=Sentiment(
            label="negative", probs={"negative": 1.0}, model="m" * 200, version="v" * 200
        ),
        embedding="A" * 4096,
    )
    mention_bytes = len(mention.model_dump_json().encode())
    scored_bytes = len(scored.model_dump_json().encode())
    assert mention_bytes > 6 * MAX_TEXT_CHARS  # the characters above are the costly ones
    assert scored_bytes < KAFKA_DEFAULT_MAX_REQUEST // 3, (mention_bytes, scored_bytes)


# --- the webhook: a per-item refusal --------------------------------------------------


def test_a_webhook_item_with_a_huge_url_is_refused_alone() -> None:
    items = [
        {"id": "t:0", "source": "t", "text": "acme", "created_at": T0.isoformat()},
        {
            "id": "t:1",
            "source": "t",
            "text": "acme",
            "url": "https://e.example/" + "a" * HUGE,
            "created_at": T0.isoformat(),
        },
        {"id": "t:2", "source": "t", "text": "acme", "created_at": T0.isoformat()},
    ]
    mentions, errors = parse_batch(json.dumps({"mentions": items}).encode())
    assert [m.id for m in mentions] == ["t:0", "t:2"]
    assert [(e.index, e.id, e.reason) for e in errors] == [(1, "t:1", "invalid")]
    assert errors[0].message.startswith(f"url: Value error, at most {MAX_URL_CHARS} characters")


# --- a source: the item skipped, counted ----------------------------------------------


async def test_a_feed_item_with_a_huge_link_is_skipped_and_counted_the_others_delivered() -> None:
    huge = "https://news.example.com/" + "a" * HUGE
    body = rss(
        "<item><guid>g1</guid><title>acme one</title></item>"
        f"<item><guid>g2</guid><title>acme two</title><link>{huge}</link></item>"
        "<item><guid>g3</guid><title>acme three</title></item>"
    )
    config = FeedsConfig(feeds=[{"url": URL}], poll_seconds=60, max_bytes=5_000_000)
    source, ids = await poll(lambda _: body, 1, config)
    assert len(ids) == 2  # g1 and g3
    assert source.skips.count == 1
    assert source.health.errors == 1
    assert "malformed item" in (source.health.last_error or "")
    assert "at most 8192 characters" in (source.health.last_error or "")


# --- the listener: an event the bus refuses for its size ------------------------------


class SizeLimitedProducer:
    """Acknowledges records up to ``limit`` bytes. ``broker=False``: ``send`` of a larger
    record raises ``MessageSizeTooLargeError`` (aiokafka's ``max_request_size``).
    ``broker=True``: the records handed over in one go form one batch, and a batch with a
    larger record fails whole with that error (a broker's ``message.max.bytes``: it
    refuses the partition's batch). ``down``: every record is lost (a timeout)."""

    def __init__(self, limit: int, *, broker: bool = False, down: bool = False) -> None:
        self.limit = limit
        self.broker = broker
        self.down = down
        self.written: list[str] = []
        self._open: list[tuple[bytes, asyncio.Future[Any]]] = []

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[Any]:
        if not self.broker and len(value) > self.limit:
            raise MessageSizeTooLargeError(f"The message is {len(value)} bytes when serialized")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self._open:
            asyncio.get_running_loop().call_soon(self._settle)
        self._open.append((value, future))
        return future

    def _settle(self) -> None:
        batch, self._open = self._open, []
        too_large = any(len(value) > self.limit for value, _ in batch)
        for value, future in batch:
            if self.down:
                future.set_exception(KafkaTimeoutError("expired before it was acknowledged"))
            elif too_large:
                future.set_exception(MessageSizeTooLargeError())
            else:
                self.written.append(json.loads(value)["id"])
                future.set_result(None)


LIMIT = 10_000  # bytes: a 40,000-character text (within the bounds) is over it
BIG = "acme " + "x" * 39_000


def listener(
    producer: SizeLimitedProducer, metrics: Metrics, clock: ManualClock
) -> ListenerService:
    bus = KafkaBus(BusConfig(kind="kafka"), metrics)
    bus._producer = producer  # started, as far as publishing goes
    config = ListenerConfig(watches=[WatchConfig(id="acme", brand="Acme", terms=["acme"])])
    return ListenerService(bus, config, clock, metrics, Deduplicator())


async def test_an_event_the_broker_refuses_for_its_size_is_refused_alone(
    metrics: Metrics, clock: ManualClock
) -> None:
    producer = SizeLimitedProducer(LIMIT, broker=True)
    service = listener(producer, metrics, clock)
    batch = [good(0), good(1, BIG), good(2), good(3, "nothing to see")]

    report = await service.ingest(batch)  # before: PublishFailed, on every try

    outcomes = [(item.id, item.outcome) for item in report.items]
    assert outcomes == [
        ("t:0", "published"),
        ("t:1", "too_large"),
        ("t:2", "published"),
        ("t:3", "unmatched"),
    ]
    assert "MessageSizeTooLargeError" in report.items[1].reason
    assert (report.accepted, report.published, report.too_large) == (3, 2, 1)
    assert producer.written == ["t:0", "t:2"]  # each once (tried alone after the batch)
    ingested = metrics.registry.get_sample_value(
        "crisiswatch_mentions_ingested_total", {"source": "t"}
    )
    assert ingested == 3  # the refused one is not taken in (its caller counts it)
    # not remembered as seen: a version of it that fits goes through
    again = await service.ingest([good(1, "acme, shorter")])
    assert [item.outcome for item in again.items] == ["published"]
    assert producer.written[-1] == "t:1"

    # and the webhook's answer names it, at its place in the body
    errors = refused_by_bus(report, [])
    assert [(e.index, e.id, e.reason) for e in errors] == [(1, "t:1", "too_large")]


async def test_a_size_refusal_with_a_record_lost_otherwise_fails_the_batch(
    metrics: Metrics, clock: ManualClock
) -> None:
    """A size refusal does not hide a bus that is down: the batch fails, to be retried."""
    producer = SizeLimitedProducer(LIMIT, down=True)
    service = listener(producer, metrics, clock)
    with pytest.raises(PublishFailed):
        await service.ingest([good(0), good(1, BIG), good(2)])
    assert not service.dedup.seen("t:0")  # forgotten: the retry goes through


class ListSource:
    name = "hostile"

    def __init__(self, mentions: list[Mention]) -> None:
        self._mentions = mentions

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def mentions(self) -> AsyncIterator[Mention]:
        for mention in self._mentions:
            yield mention


async def test_a_source_skips_a_mention_the_producer_refuses_and_goes_on(
    metrics: Metrics, clock: ManualClock
) -> None:
    producer = SizeLimitedProducer(LIMIT)
    service = listener(producer, metrics, clock)
    source = ListSource([good(0), good(1, BIG), good(2)])

    # before: the batch was retried for ever (the clock never moves here: it hung)
    taken = await asyncio.wait_for(service.run_source(source), 5)

    assert taken == 3
    assert producer.written == ["t:0", "t:2"]
    sample = metrics.registry.get_sample_value
    labels = {"source": "hostile", "reason": "too_large"}
    assert sample("crisiswatch_mentions_rejected_total", labels) == 1
    assert sample("crisiswatch_source_errors_total", {"source": "hostile"}) == 1
