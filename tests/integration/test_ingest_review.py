"""``POST /ingest/mentions`` under review: what a sender is answered, and what the operator
sees, for a retry racing a slow publication, a compressed body, a date before 2000, and
every request refused as a whole."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from api.app import create_app
from api.runtime import Runtime
from api.settings import Settings
from core.clock import ManualClock
from core.settings import DatabaseConfig
from listener.config import ListenerConfig, WatchConfig, WebhookConfig
from listener.webhook import signed_headers
from tests.fakes import FakeClassifier

SECRET = "ingest-secret-0123456789abcdef"


@pytest.fixture
async def served(
    tmp_path: Path, clock: ManualClock
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime, FastAPI]]:
    settings = Settings(
        database=DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'cw.db'}"),
        listener=ListenerConfig(
            watches=[WatchConfig(id="acme", brand="Acme", terms=["acme"])],
            webhook=WebhookConfig(enabled=True, secret=SECRET, max_items=5),
        ),
    )
    runtime = Runtime(settings, clock=clock, classifier=FakeClassifier(), migrate=True)
    app = create_app(runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cw") as client:
            yield client, runtime, app


def mention(clock: ManualClock, i: int, **extra: object) -> dict[str, object]:
    return {
        "id": f"custom:{i}",
        "source": "custom",
        "text": "acme is down",
        "created_at": clock.now().isoformat(),
        **extra,
    }


async def post(
    client: httpx.AsyncClient, clock: ManualClock, body: bytes, **headers: str
) -> httpx.Response:
    signed = signed_headers(SECRET, body, clock.now())
    return await client.post("/ingest/mentions", content=body, headers={**signed, **headers})


def refused(runtime: Runtime, reason: str) -> float:
    value: Any = runtime.metrics.inbound_refused.labels("ingest", reason)._value.get()
    return float(value)


def rejected(runtime: Runtime, reason: str) -> float:
    value: Any = runtime.metrics.mentions_rejected.labels("webhook", reason)._value.get()
    return float(value)


async def test_a_retry_while_the_first_delivery_is_still_publishing_is_not_a_duplicate(
    served: tuple[httpx.AsyncClient, Runtime, FastAPI], clock: ManualClock
) -> None:
    """A slow bus: the sender's request times out and it sends the batch again. The retry
    was answered 200 "duplicate" at once (dedup had marked the ids of the first, still
    publishing); the first then failed (its 503 went to a sender that had hung up) and
    dedup forgot the ids: the sender, told "duplicate", dropped a mention never kept."""
    client, runtime, app = served
    body = json.dumps([mention(clock, 1)]).encode()
    real = runtime.bus.publish_many
    started, fail = asyncio.Event(), asyncio.Event()
    published: list[str] = []

    async def slow_then_down(topic: str, events: Sequence[tuple[str, BaseModel]]) -> None:
        if not started.is_set():
            started.set()
            await fail.wait()
            raise ConnectionError("broker unavailable")
        published.extend(key for key, _ in events)
        await real(topic, events)

    runtime.bus.publish_many = slow_then_down  # type: ignore[method-assign]
    first = asyncio.create_task(post(client, clock, body))
    await asyncio.wait_for(started.wait(), 10)
    retry = asyncio.create_task(post(client, clock, body))

    async def retry_answered_or_waiting() -> None:
        while not retry.done():
            in_flight = getattr(app.state, "ingest_in_flight", None)
            if in_flight is not None and in_flight.waiting:
                return
            await asyncio.sleep(0.001)

    await asyncio.wait_for(retry_answered_or_waiting(), 10)
    fail.set()
    r1, r2 = await asyncio.wait_for(asyncio.gather(first, retry), 10)
    assert r1.status_code == 503, r1.text
    assert r2.status_code == 200, r2.text
    assert r2.json()["published"] == 1 and r2.json()["duplicates"] == 0, r2.text
    assert published == ["custom:1"]


async def test_a_gzip_body_is_refused_with_415_naming_the_encoding(
    served: tuple[httpx.AsyncClient, Runtime, FastAPI], clock: ManualClock
) -> None:
    """It was a 400 "not valid JSON: 'utf-8' codec can't decode byte 0x8b": the sender
    looked for a fault in its JSON. Any other declared encoding was ignored."""
    client, runtime, _ = served
    plain = json.dumps([mention(clock, 1)]).encode()
    r = await post(client, clock, gzip.compress(plain), **{"Content-Encoding": "gzip"})
    assert r.status_code == 415, r.text
    assert "Content-Encoding" in r.json()["detail"] and "gzip" in r.json()["detail"]
    r = await post(client, clock, plain, **{"Content-Encoding": "br"})
    assert r.status_code == 415, r.text
    assert refused(runtime, "encoding") == 2
    r = await post(client, clock, plain, **{"Content-Encoding": "identity"})
    assert r.status_code == 200 and r.json()["published"] == 1, r.text


async def test_a_mention_dated_before_2000_is_refused_per_item(
    served: tuple[httpx.AsyncClient, Runtime, FastAPI], clock: ManualClock
) -> None:
    """A sender's "no date" (0, 1970-01-01) was published: as a watch's first mention it
    set the detector's event time decades back. The sources distrust such a date."""
    client, runtime, _ = served
    body = json.dumps(
        [mention(clock, 1), mention(clock, 2, created_at="1970-01-01T00:00:00Z")]
    ).encode()
    r = await post(client, clock, body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["published"] == 1 and out["rejected"] == 1
    assert out["errors"][0]["index"] == 1 and "before 2000" in out["errors"][0]["message"]
    assert rejected(runtime, "too_old") == 1


async def test_requests_refused_as_a_whole_are_counted_and_logged(
    served: tuple[httpx.AsyncClient, Runtime, FastAPI],
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Only refused items were counted: a sender with a wrong secret, a broken body or a
    batch too big, and a batch the bus could not take, left no trace for the operator."""
    client, runtime, _ = served
    caplog.set_level(logging.WARNING, logger="api.routers.ingest")
    good = json.dumps([mention(clock, 1)]).encode()
    r = await client.post(
        "/ingest/mentions",
        content=good,
        headers=signed_headers("another-secret-entirely", good, clock.now()),
    )
    assert r.status_code == 401
    assert (await post(client, clock, b"{nope")).status_code == 400
    assert (await post(client, clock, b'{"items": []}')).status_code == 422
    too_many = json.dumps([mention(clock, i) for i in range(6)]).encode()
    assert (await post(client, clock, too_many)).status_code == 413
    for reason in ("signature", "not_json", "shape", "too_many"):
        assert refused(runtime, reason) == 1, reason

    async def down(*_: object, **__: object) -> None:
        raise ConnectionError("broker unavailable")

    real = runtime.bus.publish_many
    runtime.bus.publish_many = down  # type: ignore[method-assign]
    partly_bad = json.dumps([mention(clock, 1), "not an object"]).encode()
    r = await post(client, clock, partly_bad)
    assert r.status_code == 503 and r.headers["retry-after"], r.text
    assert refused(runtime, "bus") == 1
    # the sender never saw the item's refusal (it got a 503): counted once it does
    assert rejected(runtime, "not_object") == 0
    runtime.bus.publish_many = real  # type: ignore[method-assign]
    r = await post(client, clock, partly_bad)
    assert r.status_code == 200 and r.json()["published"] == 1, r.text
    assert rejected(runtime, "not_object") == 1
    logged = [rec.getMessage() for rec in caplog.records]
    for words in ("401", "400", "422", "413", "503"):
        assert any(words in line for line in logged), (words, logged)


async def test_a_body_giving_mentions_twice_is_refused_not_answered_200_with_nothing_kept(
    served: tuple[httpx.AsyncClient, Runtime, FastAPI], clock: ManualClock
) -> None:
    """JSON's last "mentions" won: the batch was answered 200, "accepted": 0, and the
    sender (which saw no error) dropped the mentions it had sent."""
    client, runtime, _ = served
    first = json.dumps([mention(clock, 1)])
    r = await post(client, clock, f'{{"mentions": {first}, "mentions": []}}'.encode())
    assert r.status_code == 400, r.text
    assert 'key "mentions" given twice' in r.json()["detail"]
    assert refused(runtime, "not_json") == 1
    r = await post(client, clock, f'{{"mentions": {first}}}'.encode())
    assert r.status_code == 200 and r.json()["published"] == 1, r.text


async def test_an_undeclared_gzip_body_is_refused_with_415(
    served: tuple[httpx.AsyncClient, Runtime, FastAPI], clock: ManualClock
) -> None:
    """Without a Content-Encoding it was a 400 "can't decode byte 0x8b" (see above)."""
    client, runtime, _ = served
    r = await post(client, clock, gzip.compress(json.dumps([mention(clock, 1)]).encode()))
    assert r.status_code == 415, r.text
    assert "gzip-compressed" in r.json()["detail"]
    assert refused(runtime, "encoding") == 1
