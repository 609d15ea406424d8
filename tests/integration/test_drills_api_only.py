"""Drills started on an API-only process (the distributed `crisiswatch api`, which keeps
no bus so that it answers while the broker is down): on Kafka it connects a producer for
the drill's mentions; with the broker unreachable it answers 503 and records nothing; on
the in-process bus (nothing to reach) it answers 409."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from api import drills
from api.app import create_app
from api.runtime import Role, Runtime
from api.settings import ApiConfig, ApiKeyConfig, Settings
from core.clock import ManualClock
from core.events import Mention
from core.settings import BusConfig, DatabaseConfig
from listener.config import ListenerConfig, WatchConfig

PR = {"Authorization": "Bearer pr-key-0123456789abcdef"}
BODY = {"scenario": "rumour", "watch": "acme"}


def api_settings(db: Path, bus: BusConfig) -> Settings:
    return Settings(
        bus=bus,
        database=DatabaseConfig(url=f"sqlite+aiosqlite:///{db}"),
        api=ApiConfig(keys=[ApiKeyConfig(name="pat", key=PR["Authorization"][7:], role="pr")]),
        listener=ListenerConfig(watches=[WatchConfig(id="acme", brand="Acme", terms=["acme"])]),
    )


@asynccontextmanager
async def api_only(settings: Settings, clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    runtime = Runtime(settings, roles=frozenset({Role.API}), clock=clock, migrate=True)
    app = create_app(runtime)
    async with app.router.lifespan_context(app):
        assert runtime.bus is None  # the API role keeps no bus
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cw") as client:
            yield client


async def drills_listed(client: httpx.AsyncClient) -> int:
    r = await client.get("/drills", headers=PR)
    assert r.status_code == 200, r.text
    total: int = r.json()["total"]
    return total


async def test_on_the_in_process_bus_an_api_only_process_refuses_with_409(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with api_only(api_settings(tmp_path / "cw.db", BusConfig()), clock) as client:
        r = await client.post("/drills", headers=PR, json=BODY)
        assert r.status_code == 409 and "listener" in r.json()["detail"], r.text
        assert await drills_listed(client) == 0


async def test_an_unreachable_broker_gives_503_and_records_no_drill(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(drills, "BUS_CONNECT_TIMEOUT", 3.0)
    bus = BusConfig(kind="kafka", bootstrap_servers=f"127.0.0.1:{port}")
    async with api_only(api_settings(tmp_path / "cw.db", bus), clock) as client:
        r = await client.post("/drills", headers=PR, json=BODY)
        assert r.status_code == 503, r.text
        assert "cannot be reached" in r.json()["detail"]
        assert await drills_listed(client) == 0


@pytest.mark.kafka
async def test_on_kafka_an_api_only_process_publishes_the_drill(
    tmp_path: Path, clock: ManualClock, kafka_config: BusConfig
) -> None:
    async with api_only(api_settings(tmp_path / "cw.db", kafka_config), clock) as client:
        r = await client.post("/drills", headers=PR, json=BODY)
        assert r.status_code == 201, r.text
        drill = r.json()
        assert await drills_listed(client) == 1

    consumer = AIOKafkaConsumer(
        f"{kafka_config.topic_prefix}mentions",
        bootstrap_servers=kafka_config.bootstrap_servers,
        group_id=f"{kafka_config.topic_prefix}check",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        got: list[Mention] = []
        for _ in range(50):
            batches = await consumer.getmany(timeout_ms=200)
            got += [Mention.model_validate_json(m.value) for ms in batches.values() for m in ms]
            if len(got) >= drill["mentions"]:
                break
    finally:
        await consumer.stop()
    assert len(got) == drill["mentions"]
    assert all(m.drill and m.watch is not None and m.watch.id == "acme" for m in got)
    assert any(m.id == drill["story_root"] for m in got)
