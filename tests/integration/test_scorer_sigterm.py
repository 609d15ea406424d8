"""SIGTERM to a real ``crisiswatch scorer`` process while it is busy: it stops fetching,
finishes the batch in flight, commits, closes and exits 0 within its bound; a second
scorer then scores the rest, and no mention is scored twice (the first committed what it
handled).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import pytest
import yaml
from aiokafka import AIOKafkaConsumer

from core.bus.kafka import KafkaBus
from core.events import Mention, ScoredMention
from core.settings import BusConfig
from tests.fixtures.kafka import _free_port
from tests.process_support import kafka_section

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
MENTIONS = 1500
STOP_TIMEOUT = 10.0  # bus.stop_timeout in the scorer's config
EXIT_BOUND = 3 * STOP_TIMEOUT  # generous: the test checks the exit, a bench the time
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


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


def write_config(path: Path, bus: BusConfig) -> Path:
    config = {
        "log_level": "INFO",
        "bus": kafka_section(bus, stop_timeout=STOP_TIMEOUT),
        "scorer": {"batch_size": 16, "max_wait_ms": 20},
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


class Scorer:
    """``python -m api.cli scorer --config ...`` with this checkout on the path."""

    def __init__(self, config: Path, log: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.log_path = log
        self._log: IO[bytes] = log.open("wb")
        command = [sys.executable, "-m", "api.cli", "scorer", "--config", str(config)]
        self.proc = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(_free_port())],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def terminate(self) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds until it exited)."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(self.proc.wait, EXIT_BOUND)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the scorer did not exit within {EXIT_BOUND:.0f} s:\n{self.log()}")
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


async def test_sigterm_drains_commits_and_exits_0_and_nothing_is_scored_twice(
    kafka_config: BusConfig, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "scorer.yaml", kafka_config)
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

    async def wait_scored(count: int, scorer: Scorer, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(scored) < count:
            if scorer.proc.poll() is not None:
                pytest.fail(f"the scorer exited with {scorer.proc.returncode}:\n{scorer.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"only {len(scored)} of {count} scored:\n{scorer.log()[-3000:]}")
            for records in (await audit.getmany(timeout_ms=200)).values():
                for record in records:
                    scored[ScoredMention.model_validate_json(record.value).mention.id] += 1

    first = second = None
    try:
        sent = mentions()
        await publisher.publish_many("mentions", [(f"k{i % 12}", m) for i, m in enumerate(sent)])

        first = Scorer(config, tmp_path / "first.log")
        await wait_scored(100, first, 90)
        code, took = await first.terminate()
        log = first.log()
        assert code == 0, log
        assert "stopping the Kafka bus" in log and "the Kafka bus is stopped" in log, log
        assert "abandoning" not in log, log
        busy = "finishing the batch in flight" in log
        print(f"\nSIGTERM -> exit 0 in {took:.2f} s (scored: {len(scored)}, busy: {busy})")
        assert len(scored) < MENTIONS, "the first scorer finished everything: test nothing"

        second = Scorer(config, tmp_path / "second.log")
        await wait_scored(MENTIONS, second, 120)
        await asyncio.sleep(1.0)  # let a duplicate that would come, come
        await wait_scored(MENTIONS, second, 10)
        assert set(scored) == {m.id for m in sent}
        twice = {k: n for k, n in scored.items() if n > 1}
        assert not twice, f"scored more than once: {twice}"
        code, _ = await second.terminate()
        assert code == 0, second.log()
    finally:
        for scorer in (first, second):
            if scorer is not None:
                scorer.kill()
        await audit.stop()
        await publisher.stop()
