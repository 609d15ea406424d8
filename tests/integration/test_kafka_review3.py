"""Distributed mode on Kafka, third review: what a role process or the Kafka bus did
silently that it now says (or refuses)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import api.serve
from api.cli import main
from core.bus.base import RetryPolicy
from core.bus.kafka import KafkaBus
from core.settings import BusConfig
from tests.integration.test_bus_contract import FAST_GROUPS, eventually, mention


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Sequence[str] | None]:
    """The roles ``main`` went on to serve (the server itself is not started)."""
    calls: list[Sequence[str] | None] = []

    def serve_roles(settings: Any, *, roles: Sequence[str] | None, **_: Any) -> int:
        calls.append(roles)
        return 0

    monkeypatch.setattr(api.serve, "serve_roles", serve_roles)
    return calls


@pytest.mark.parametrize("role", ["listener", "scorer", "detector", "alerter"])
def test_a_bus_role_over_the_in_process_bus_is_refused_in_a_line(
    role: str,
    tmp_path: Path,
    served: list[Sequence[str] | None],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``crisiswatch scorer`` without ``bus.kind: kafka`` (the variable forgotten or
    misspelt) started, said it was ready, and exchanged nothing with the other processes:
    a listener answered 200 for mentions no scorer would ever see."""
    monkeypatch.delenv("CRISISWATCH_BUS__KIND", raising=False)
    config = tmp_path / "c.yaml"
    config.write_text(f"database:\n  url: sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}\n")
    assert main([role, "--config", str(config), "--port", "1"]) == 2
    assert served == []
    err = capsys.readouterr().err
    assert "configuration error" in err
    assert f"bus.kind is 'memory': `crisiswatch {role}`" in err
    assert "CRISISWATCH_BUS__KIND=kafka" in err and "crisiswatch run" in err


def test_role_commands_on_kafka_and_the_api_alone_still_start(
    tmp_path: Path, served: list[Sequence[str] | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"database:\n  url: sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}\n")
    monkeypatch.delenv("CRISISWATCH_BUS__KIND", raising=False)
    assert main(["api", "--config", str(config), "--port", "1"]) == 0  # never needs a bus
    monkeypatch.setenv("CRISISWATCH_BUS__KIND", "kafka")
    assert main(["scorer", "--config", str(config), "--port", "1"]) == 0
    assert served == [("api",), ("scorer",)]


# -- topics: partition counts -----------------------------------------------------------


@pytest.mark.kafka
async def test_a_topic_with_fewer_partitions_than_configured_is_said_at_start(
    kafka_config: BusConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """``bus.partitions`` raised to run more scorers, on topics made earlier with fewer:
    the bus started as before, and the members beyond the topic's count stayed idle with
    nothing said anywhere (Kafka never grows a topic by itself)."""
    caplog.set_level(logging.WARNING, logger="core.bus.kafka")
    first = KafkaBus(kafka_config.model_copy(update={"partitions": 1}))
    await first.start()  # creates every topic with 1 partition
    await first.stop()
    assert not [r for r in caplog.records if "partition(s), fewer than" in r.message]
    more = KafkaBus(kafka_config.model_copy(update={"partitions": 3}))
    await more.start()
    await more.stop()
    said = [r.getMessage() for r in caplog.records if "partition(s), fewer than" in r.message]
    prefix = kafka_config.topic_prefix
    assert sorted(m.split("'")[1] for m in said) == [
        f"{prefix}mentions",
        f"{prefix}scored",
        f"{prefix}signals",
    ]  # the event topics; a dead-letter topic's count limits nothing
    assert "has 1 partition(s), fewer than bus.partitions (3)" in said[0]
    assert "at most 1 member(s) of a consumer group get work" in said[0]


# -- retries: a handler retried until its dependency is back ------------------------------


def test_the_backoff_stays_at_its_ceiling_however_many_tries() -> None:
    policy = RetryPolicy(max_attempts=10**9, max_backoff=30.0)  # the alerter's
    assert [policy.backoff(n) for n in (1, 2, 8, 9)] == [0.2, 0.4, 25.6, 30.0]
    assert policy.backoff(1025) == policy.backoff(10**9) == 30.0  # OverflowError before


@pytest.mark.kafka
async def test_a_handler_retried_past_1024_tries_goes_on_being_retried(
    kafka_config: BusConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """The alerter retries a batch until the database is back (30 s apart): its 1,025th
    try raised OverflowError out of the backoff (2 ** 1024 is no float), about 8 hours into
    an outage; the batch was then failed and fetched again, its tries counted anew (the
    detector's state saves, after as many, failed their batch the same way, on the way to
    dead-lettering it)."""
    caplog.set_level(logging.ERROR, logger="core.bus")
    failures = 1100
    calls: list[int] = []

    async def handler(events: list[Any]) -> None:
        calls.append(len(events))
        if len(calls) <= failures:
            raise ConnectionError("database unavailable")

    bus = KafkaBus(kafka_config, consumer_options=FAST_GROUPS, poll_timeout=0.2)
    bus.subscribe("mentions", "g", handler, retry=RetryPolicy(10**9, 0.0, 0.0))
    await bus.start()
    try:
        await bus.publish("mentions", mention(1), key="k")
        await eventually(lambda: len(calls) > failures, "the handler to succeed")
        await asyncio.sleep(0.3)  # (anything further would show)
    finally:
        await bus.stop()
    assert len(calls) == failures + 1
    assert not caplog.records, [r.getMessage() for r in caplog.records]
