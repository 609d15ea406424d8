"""The Kafka consumer group timing in ``bus``: validated together, passed to every consumer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from api.cli import main
from core.bus import kafka as kafka_module
from core.bus.kafka import KafkaBus
from core.settings import KAFKA_REQUEST_TIMEOUT_MS, BusConfig
from tests.fakes import FakeKafkaProducer


def test_the_defaults_are_aiokafkas_and_valid() -> None:
    config = BusConfig()
    assert (config.session_timeout_ms, config.heartbeat_interval_ms) == (10_000, 3_000)
    assert config.max_poll_interval_ms == 300_000
    assert config.group_rebalance_timeout_ms == 10_000  # follows the session timeout


def test_a_heartbeat_over_a_third_of_the_session_is_refused() -> None:
    BusConfig(session_timeout_ms=6000, heartbeat_interval_ms=2000)  # exactly a third: fine
    with pytest.raises(ValidationError) as caught:
        BusConfig(session_timeout_ms=6000, heartbeat_interval_ms=2001)
    message = str(caught.value)
    assert "bus.heartbeat_interval_ms (2001) must be at most a third" in message
    assert "bus.session_timeout_ms (6000)" in message


def test_a_rebalance_timeout_the_client_would_not_wait_for_is_refused() -> None:
    with pytest.raises(ValidationError, match="must be below 40000") as caught:
        BusConfig(session_timeout_ms=45_000)  # Kafka's newer default, rebalance follows it
    assert "bus.session_timeout_ms (45000), also the rebalance timeout" in str(caught.value)
    config = BusConfig(session_timeout_ms=45_000, rebalance_timeout_ms=30_000)
    assert config.group_rebalance_timeout_ms == 30_000
    with pytest.raises(ValidationError, match=r"bus.rebalance_timeout_ms \(40000\) must be"):
        BusConfig(rebalance_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS)
    with pytest.raises(ValidationError):
        BusConfig(session_timeout_ms=0)


class _Enough(Exception):
    """Stops ``KafkaBus.start`` once it built its first consumer."""


async def test_every_consumer_gets_the_group_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def consumer(**options: Any) -> None:
        seen.update(options)
        raise _Enough

    async def no_topics(self: KafkaBus) -> None:
        pass

    monkeypatch.setattr(kafka_module, "AIOKafkaConsumer", consumer)
    monkeypatch.setattr(kafka_module, "AIOKafkaProducer", FakeKafkaProducer)
    monkeypatch.setattr(KafkaBus, "_ensure_topics", no_topics)
    config = BusConfig(
        kind="kafka",
        session_timeout_ms=3000,
        heartbeat_interval_ms=1000,
        max_poll_interval_ms=60_000,
        rebalance_timeout_ms=20_000,
    )
    bus = KafkaBus(config)

    async def handler(records: Any) -> None:
        pass

    bus.subscribe("mentions", "scorer", handler)
    with pytest.raises(_Enough):
        await bus.start()
    assert {k: seen[k] for k in _GROUP_KEYS} == {
        "session_timeout_ms": 3000,
        "heartbeat_interval_ms": 1000,
        "max_poll_interval_ms": 60_000,
        "rebalance_timeout_ms": 20_000,
        "request_timeout_ms": KAFKA_REQUEST_TIMEOUT_MS,
    }
    assert seen["group_id"] == "crisiswatch.scorer"


_GROUP_KEYS = (
    "session_timeout_ms",
    "heartbeat_interval_ms",
    "max_poll_interval_ms",
    "rebalance_timeout_ms",
    "request_timeout_ms",
)


def test_check_config_explains_bad_group_timing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bus.yaml"
    path.write_text("bus: {kind: kafka, session_timeout_ms: 3000, heartbeat_interval_ms: 1500}\n")
    assert main(["check-config", str(path)]) == 2
    assert "at most a third of bus.session_timeout_ms (3000)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("written", "read"),
    [("off", "off"), ("OFF", "off"), ("'off'", "off"), ("Auto", "auto"), ("j/bus", "j/bus")],
)
def test_bus_journal_reads_the_words_as_yaml_writes_them(
    tmp_path: Path, written: str, read: str
) -> None:
    """YAML reads an unquoted ``off`` as false: it still means no journal."""
    from api.settings import load_settings

    config = tmp_path / "c.yaml"
    config.write_text(f"bus:\n  journal: {written}\n")
    assert load_settings(config).bus.journal == read


def test_the_journal_goes_beside_a_sqlite_database_file_only(tmp_path: Path) -> None:
    from api.runtime import journal_path
    from api.settings import Settings
    from core.settings import DatabaseConfig

    def where(url: str, journal: str = "auto") -> Path | None:
        settings = Settings(database=DatabaseConfig(url=url), bus=BusConfig(journal=journal))
        return journal_path(settings)

    assert where(f"sqlite+aiosqlite:///{tmp_path}/cw.db") == tmp_path / "cw.db.bus-journal"
    assert where("sqlite+aiosqlite:///./var/cw.db") == Path("var/cw.db.bus-journal")
    assert where("sqlite+aiosqlite://") is None
    assert where("sqlite+aiosqlite:///:memory:") is None
    assert where("postgresql+asyncpg://u@h/db") is None
    assert where("postgresql+asyncpg://u@h/db", str(tmp_path / "j")) == tmp_path / "j"
    assert where(f"sqlite+aiosqlite:///{tmp_path}/cw.db", "off") is None


@pytest.mark.parametrize("end", ["", "-wal", "-shm", "-journal"])
def test_a_journal_on_the_database_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], end: str
) -> None:
    from api.cli import main

    config = tmp_path / "c.yaml"
    config.write_text(
        f"database:\n  url: sqlite+aiosqlite:///{tmp_path}/cw.db\n"
        f"bus:\n  journal: {tmp_path}/cw.db{end}\n"
    )
    assert main(["check-config", str(config)]) == 2
    assert "is the SQLite database's own file" in capsys.readouterr().err
    config.write_text(  # a file of its own is fine
        f"database:\n  url: sqlite+aiosqlite:///{tmp_path}/cw.db\n"
        f"bus:\n  journal: {tmp_path}/cw.journal\n"
    )
    assert main(["check-config", str(config)]) == 0


def test_check_config_warns_of_kafka_with_a_sqlite_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The distributed config names no database (its URL comes from the environment):
    forgotten, every machine kept incidents and detector state of its own, silently."""
    config = tmp_path / "c.yaml"
    config.write_text("bus:\n  kind: kafka\n  bootstrap_servers: kafka:9092\n")
    assert main(["check-config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "warning: bus.kind is kafka but the database is a SQLite file" in out
    assert "CRISISWATCH_DATABASE__URL" in out
    config.write_text(
        "bus:\n  kind: kafka\n  bootstrap_servers: kafka:9092\n"
        "database:\n  url: postgresql+asyncpg://cw@db/cw\n"
    )
    assert main(["check-config", str(config)]) == 0
    assert "warning" not in capsys.readouterr().out


def test_check_config_piped_into_a_reader_that_leaves_is_quiet(tmp_path: Path) -> None:
    """`crisiswatch check-config … | head -1`: the reader gone, the output's flush at exit
    raised BrokenPipeError ("Exception ignored …" on stderr, exit status 120)."""
    import os
    import subprocess
    import sys

    config = tmp_path / "c.yaml"
    config.write_text("bus:\n  kind: memory\n")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone before anything was written
    try:
        writer = subprocess.run(
            [sys.executable, "-m", "api.cli", "check-config", str(config)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parents[2],
            check=False,
        )
    finally:
        os.close(write_end)
    assert "BrokenPipeError" not in writer.stderr, writer.stderr
    assert writer.returncode == 141
