"""SIGTERM to a real ``crisiswatch scorer`` process while it is busy: it stops fetching,
finishes the batch in flight, commits, closes and exits 0 within its bound; a second
scorer then scores the rest, and no mention is scored twice (the first committed what it
handled).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from core.bus.kafka import KafkaBus
from core.events import Mention, ScoredMention
from core.settings import BusConfig
from tests.process_support import Processes, RoleProcess, add_role, kafka_section, write_config

pytestmark = pytest.mark.kafka

MENTIONS = 1500
STOP_TIMEOUT = 10.0  # bus.stop_timeout in the scorer's config
EXIT_BOUND = 3 * STOP_TIMEOUT  # generous: the test checks the exit, a bench the time
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
FAST_GROUP = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 500}


def mentions() -> list[Mention]:
    return [
        Mention(
            id=f"sig:{i}",
            source="test",
            text=f"acme order {i} arrived broken, support ignored me for {i % 17} days",
            created_at=T0,
        )
        for i in range(MENTIONS)
    ]


def scorer_config(path: Path, bus: BusConfig) -> Path:
    return write_config(
        path,
        {
            "log_level": "INFO",
            "bus": kafka_section(bus, stop_timeout=STOP_TIMEOUT),
            "scorer": {"batch_size": 16, "max_wait_ms": 20},
        },
    )


def log_of(scorer: RoleProcess) -> str:
    return scorer.process.log.read_text(errors="replace")


async def terminate(scorer: RoleProcess) -> tuple[int, float]:
    """SIGTERM; (exit code, seconds until it exited). Fails past ``EXIT_BOUND``."""
    started = time.monotonic()
    code = await asyncio.to_thread(scorer.process.terminate, EXIT_BOUND)
    if code is None:
        scorer.process.kill()
        pytest.fail(f"the scorer did not exit within {EXIT_BOUND:.0f} s:\n{log_of(scorer)}")
    return code, time.monotonic() - started


async def test_sigterm_drains_commits_and_exits_0_and_nothing_is_scored_twice(
    kafka_config: BusConfig, tmp_path: Path, procs: Processes
) -> None:
    # Tansu answers a join after about half the session timeout, and the second scorer's
    # group waits about twice it for the first one: short here (as in test_faults); what
    # the test proves (drained, committed, nothing twice) does not depend on it
    kafka_config = kafka_config.model_copy(update=FAST_GROUP)
    config = scorer_config(tmp_path / "scorer.yaml", kafka_config)
    publisher = KafkaBus(kafka_config)
    await publisher.start()  # creates the topics
    audit = AIOKafkaConsumer(
        f"{kafka_config.topic_prefix}scored",
        bootstrap_servers=kafka_config.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await audit.start()
    scored: Counter[str] = Counter()

    async def wait_scored(count: int, scorer: RoleProcess, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(scored) < count:
            proc = scorer.process.proc
            if proc is not None and proc.poll() is not None:
                pytest.fail(f"the scorer exited with {proc.returncode}:\n{log_of(scorer)}")
            if time.monotonic() > deadline:
                pytest.fail(f"only {len(scored)} of {count} scored:\n{log_of(scorer)[-3000:]}")
            for records in (await audit.getmany(timeout_ms=200)).values():
                for record in records:
                    scored[ScoredMention.model_validate_json(record.value).mention.id] += 1

    first = add_role(procs, "scorer", config, name="scorer-1")
    second = add_role(procs, "scorer", config, name="scorer-2")
    try:
        sent = mentions()
        await publisher.publish_many("mentions", [(f"k{i % 12}", m) for i, m in enumerate(sent)])

        first.start(wait_ready=False)  # what counts is scoring, seen on the scored topic
        await wait_scored(100, first, 90)
        code, took = await terminate(first)
        log = log_of(first)
        assert code == 0, log
        assert "stopping the Kafka bus" in log and "the Kafka bus is stopped" in log, log
        assert "abandoning" not in log, log
        busy = "finishing the batch in flight" in log
        print(f"\nSIGTERM -> exit 0 in {took:.2f} s (scored: {len(scored)}, busy: {busy})")
        assert len(scored) < MENTIONS, "the first scorer finished everything: test nothing"

        second.start(wait_ready=False)
        await wait_scored(MENTIONS, second, 120)
        await asyncio.sleep(1.0)  # let a duplicate that would come, come
        await wait_scored(MENTIONS, second, 10)
        assert set(scored) == {m.id for m in sent}
        twice = {k: n for k, n in scored.items() if n > 1}
        assert not twice, f"scored more than once: {twice}"
        code, _ = await terminate(second)
        assert code == 0, log_of(second)
    finally:
        await audit.stop()
        await publisher.stop()
