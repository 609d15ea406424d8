"""``crisiswatch dead-letters list`` and ``redrive``: over a real bus journal (embedded
mode) and over the real test broker (the ``.dlq`` topics). A redrive is recorded in the
audit log (``GET /audit``); a dry run is not."""

from __future__ import annotations

import asyncio
import getpass
import json
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from api import audit
from api.cli import main
from api.template_schemas import AuditOut
from core.bus.base import PermanentError, dlq_topic
from core.bus.journal import BusJournal
from core.bus.kafka import KafkaBus
from core.bus.memory import MemoryBus
from core.clock import ManualClock
from core.db import make_engine, make_sessionmaker, upgrade_database, upgrade_database_blocking
from core.events import Mention
from core.settings import BusConfig
from tests.access_support import api_on, key_headers
from tests.integration.test_bus_contract import FAST_GROUPS, FAST_RETRY, TIMEOUT, mention

ACTOR = f"cli:{getpass.getuser()}"


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


class Poison:
    """Handles mentions, refusing (``PermanentError``) those whose id is in ``bad``."""

    def __init__(self, bad: set[str]) -> None:
        self.bad = bad
        self.handled: list[str] = []

    async def __call__(self, events: list[Any]) -> None:
        for event in events:
            if event.id in self.bad:
                raise PermanentError(f"cannot score {event.id}\nsecond line")
            self.handled.append(event.id)


# --- the embedded bus journal ------------------------------------------------------------


def journal_config(tmp_path: Path) -> tuple[Path, Path]:
    """The config of a ``crisiswatch run`` whose database (migrated, as its start does)
    and journal are in ``tmp_path``."""
    config = tmp_path / "c.yaml"
    url = f"sqlite+aiosqlite:///{tmp_path}/cw.db"
    config.write_text(f"database:\n  url: {url}\n")
    upgrade_database_blocking(url)
    return config, tmp_path / "cw.db.bus-journal"


async def migrated(url: str) -> str:
    engine = make_engine(url)
    try:
        await upgrade_database(engine)
    finally:
        await engine.dispose()
    return url


async def redrives_audited(url: str, *, via_api: bool = True) -> list[dict[str, Any]]:
    """The audit log's redrive entries, newest first, read as an admin reads them
    (``GET /audit``), or as it lists them (``via_api`` False: quicker)."""
    if not via_api:
        engine = make_engine(url)
        try:
            async with make_sessionmaker(engine)() as session:
                entries, _ = await audit.list_entries(session, action="dead_letters.redrive")
                return [AuditOut.model_validate(e).model_dump(mode="json") for e in entries]
        finally:
            await engine.dispose()
    async with api_on(url, ManualClock()) as (client, _):
        r = await client.get(
            "/audit", params={"action": "dead_letters.redrive"}, headers=key_headers("admin")
        )
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["total"] == len(page["items"])
        items: list[dict[str, Any]] = page["items"]
        return items


async def run_bus(journal: Path, handler: Poison, publish: Sequence[Mention] = ()) -> None:
    """What a ``crisiswatch run`` does to the journal: take back what it holds, handle it
    (and ``publish``), stop."""
    bus = MemoryBus(capacity=100, journal=BusJournal(journal))
    bus.subscribe("mentions", "scorer", handler, retry=FAST_RETRY)
    await bus.start()
    try:
        if publish:
            await bus.publish_many("mentions", [(m.id, m) for m in publish])
        await asyncio.wait_for(bus.join(), TIMEOUT)
    finally:
        await bus.stop()
        await bus.close()


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_journals_dead_letters_are_listed_and_re_driven_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, journal = journal_config(tmp_path)
    first = Poison({"test:1", "test:3"})
    asyncio.run(run_bus(journal, first, [mention(i) for i in range(5)]))
    assert first.handled == ["test:0", "test:2", "test:4"]

    code, out, err = cli(["dead-letters", "list", "--config", str(config)], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2 and "2 dead letter(s) in the bus journal" in err
    assert (
        "  mentions  scorer  key=test:1  event=Mention:test:1  error: permanent: cannot "
        in (lines[0])
    )
    assert lines[0].endswith("cannot score test:1 second line")  # one line
    assert "event=Mention:test:3" in lines[1]
    assert datetime.fromisoformat(lines[0].split()[0]) > datetime.now(UTC) - timedelta(minutes=5)

    code, out, _ = cli(["dead-letters", "list", "--config", str(config), "--json"], capsys)
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["event_id"] for r in records] == ["test:1", "test:3"]
    assert records[0]["value"] == mention(1).model_dump_json()
    assert records[0]["value_encoding"] == "utf-8" and records[0]["store"] == "journal"
    assert (records[0]["topic"], records[0]["group"], records[0]["key"]) == (
        "mentions",
        "scorer",
        "test:1",
    )
    assert records[0]["offset"] == 1 and records[0]["reason"].startswith("permanent: cannot")

    # --limit: the newest; --since: at or after
    code, out, _ = cli(["dead-letters", "list", "--config", str(config), "--limit", "1"], capsys)
    assert "Mention:test:3" in one_line(out)
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    code, out, err = cli(
        ["dead-letters", "list", "--config", str(config), "--since", later], capsys
    )
    assert code == 0 and out == "" and "0 dead letter(s)" in err
    code, out, _ = cli(
        ["dead-letters", "list", "--config", str(config), "--topic", "signals"], capsys
    )
    assert out == ""

    # a dry run writes nothing
    redrive = ["dead-letters", "redrive", "--config", str(config), "--topic", "mentions"]
    code, out, err = cli([*redrive, "--id", "test:1", "--dry-run"], capsys)
    assert code == 0, err
    assert "would publish 1 event(s) to mentions" in out and "would re-drive" in out
    with closing(sqlite3.connect(journal)) as db:
        assert db.execute("SELECT count(*) FROM bus_dead_letters").fetchone() == (2,)

    code, out, err = cli([*redrive, "--id", "test:1"], capsys)
    assert code == 0, err
    assert out.splitlines()[-1] == "published 1 event(s) to mentions from 1 dead letter(s)"
    # twice: nothing more is published, and it says why
    code, out, err = cli([*redrive, "--id", "test:1"], capsys)
    assert code == 2 and out == ""
    line = one_line(err)
    assert line.startswith("crisiswatch dead-letters redrive: no dead letter of mentions")
    assert "test:1" in line and "nothing was published" in line

    # the cause fixed, the next start delivers it to the group, once
    fixed = Poison(set())
    asyncio.run(run_bus(journal, fixed))
    assert fixed.handled == ["test:1"]
    code, out, _ = cli(["dead-letters", "list", "--config", str(config)], capsys)
    assert "Mention:test:3" in one_line(out)

    code, out, err = cli([*redrive, "--all"], capsys)
    assert code == 0, err
    assert out.splitlines()[-1] == "published 1 event(s) to mentions from 1 dead letter(s)"
    code, out, err = cli([*redrive, "--all"], capsys)
    assert code == 0 and out == "published 0 event(s) to mentions from 0 dead letter(s)\n"
    again = Poison(set())
    asyncio.run(run_bus(journal, again))
    assert again.handled == ["test:3"]


def test_an_event_dead_lettered_twice_is_re_driven_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, journal = journal_config(tmp_path)
    asyncio.run(run_bus(journal, Poison({"test:7"}), [mention(7), mention(7)]))
    code, out, _ = cli(["dead-letters", "list", "--config", str(config)], capsys)
    assert len(out.splitlines()) == 2
    argv = ["dead-letters", "redrive", "--config", str(config), "--topic", "mentions.dlq"]
    code, out, err = cli([*argv, "--id", "test:7"], capsys)
    assert code == 0, err
    assert out.splitlines()[-1] == "published 1 event(s) to mentions from 2 dead letter(s)"
    fixed = Poison(set())
    asyncio.run(run_bus(journal, fixed))
    assert fixed.handled == ["test:7"]


def test_a_journal_in_use_by_a_running_process_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, journal = journal_config(tmp_path)
    asyncio.run(run_bus(journal, Poison({"test:1"}), [mention(1)]))

    async def while_running() -> list[tuple[int, str, str]]:
        bus = MemoryBus(capacity=100, journal=BusJournal(journal))
        bus.subscribe("mentions", "scorer", Poison(set()))
        await bus.start()  # holds the journal's lock, as `crisiswatch run` does
        try:
            results = []
            redrive = ["redrive", "--topic", "mentions", "--all"]
            for command in (["list"], redrive):
                argv = ["dead-letters", *command, "--config", str(config)]
                code = await asyncio.to_thread(main, argv)
                out, err = capsys.readouterr()
                results.append((code, out, err))
            return results
        finally:
            await bus.stop()
            await bus.close()

    for code, out, err in asyncio.run(while_running()):
        assert code == 2 and out == ""
        line = one_line(err)
        assert "is in use by a running `crisiswatch run`: stop it first" in line
    # stopped, its dead letter is still there, and still re-drivable
    code, out, _ = cli(["dead-letters", "list", "--config", str(config)], capsys)
    assert "Mention:test:1" in one_line(out)


def test_no_journal_or_a_config_without_one_is_said_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, journal = journal_config(tmp_path)
    code, out, err = cli(["dead-letters", "list", "--config", str(config)], capsys)
    assert code == 2 and out == ""
    assert one_line(err).startswith(f"crisiswatch dead-letters list: no bus journal at {journal}")
    assert not journal.exists()  # not made by looking
    off = tmp_path / "off.yaml"
    off.write_text(config.read_text() + "bus:\n  journal: 'off'\n")
    code, out, err = cli(["dead-letters", "list", "--config", str(off)], capsys)
    assert code == 2 and "keeps no bus journal" in one_line(err)


async def test_a_journal_redrive_is_audited_and_a_dry_run_is_not(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, a redrive (which can open incidents and send alerts) left no trace of who
    re-drove what: now one audit entry per redrive, read through ``GET /audit``."""
    journal = tmp_path / "j.bus-journal"
    config = tmp_path / "c.yaml"
    config.write_text(f"database:\n  url: '{db_url}'\nbus:\n  journal: '{journal}'\n")
    await migrated(db_url)
    await run_bus(journal, Poison({"test:1", "test:3"}), [mention(i) for i in range(4)])
    redrive = ["dead-letters", "redrive", "--config", str(config), "--topic", "mentions"]

    code, out, err = await cli_async([*redrive, "--all", "--dry-run"], capsys)
    assert code == 0 and "would publish 2 event(s)" in out, err
    assert await redrives_audited(db_url) == []

    with closing(sqlite3.connect(journal)) as db:
        ids = dict(db.execute("SELECT key, id FROM bus_dead_letters").fetchall())
    code, out, err = await cli_async([*redrive, "--id", "test:3"], capsys)
    assert code == 0 and out.splitlines()[-1].startswith("published 1 event(s)"), err
    [entry] = await redrives_audited(db_url)
    assert {k: entry[k] for k in ("actor", "role", "action", "target_type", "target_id")} == {
        "actor": ACTOR,  # the operating-system user, as `templates seed` is recorded
        "role": "cli",
        "action": "dead_letters.redrive",
        "target_type": "dead_letters",
        "target_id": "mentions",
    }
    assert entry["outcome"] == "ok" and entry["detail"] is None and entry["before"] is None
    assert entry["after"] == {
        "command": "crisiswatch dead-letters redrive",
        "store": "journal",
        "published_to": f"the bus journal {journal}",
        "selection": {"ids": ["test:3"], "count": 1},
        "result": "done",
        "events_published": 1,
        "letters": {
            "count": 1,
            "first": [{"event_id": "test:3", "key": "test:3", "journal_id": ids["test:3"]}],
        },
        "not_redriven": {"count": 0, "first": []},
    }

    code, out, err = await cli_async([*redrive, "--all"], capsys)
    assert code == 0, err
    code, out, err = await cli_async([*redrive, "--all"], capsys)  # nothing left: no entry
    assert code == 0 and out.startswith("published 0 event(s)"), err
    entries = await redrives_audited(db_url)
    assert [e["after"]["letters"]["first"][0]["event_id"] for e in entries] == ["test:1", "test:3"]
    assert entries[0]["after"]["selection"] == "all"


def test_a_redrive_the_audit_log_cannot_take_publishes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, journal = journal_config(tmp_path)
    asyncio.run(run_bus(journal, Poison({"test:1"}), [mention(1)]))
    with closing(sqlite3.connect(journal)) as db:
        records = db.execute("SELECT count(*) FROM bus_records").fetchone()
    redrive = ["dead-letters", "redrive", "--topic", "mentions", "--all", "--config"]

    gone = tmp_path / "gone.yaml"
    gone.write_text(
        config.read_text().replace("cw.db", "elsewhere.db") + f"bus:\n  journal: '{journal}'\n"
    )
    code, out, err = cli([*redrive, str(gone)], capsys)
    assert code == 2 and out == ""
    line = one_line(err)
    assert f"no database at {tmp_path / 'elsewhere.db'}" in line and "nothing was published" in line
    assert not (tmp_path / "elsewhere.db").exists()  # not made by looking

    (tmp_path / "elsewhere.db").touch()  # there, never migrated
    code, out, err = cli([*redrive, str(gone)], capsys)
    assert code == 2 and out == ""
    line = one_line(err)
    assert "the database has no audit_log table: run `crisiswatch db upgrade` first" in line
    assert line.endswith("nothing was published")

    with closing(sqlite3.connect(journal)) as db:  # still there, still re-drivable
        assert db.execute("SELECT count(*) FROM bus_dead_letters").fetchone() == (1,)
        assert db.execute("SELECT count(*) FROM bus_records").fetchone() == records


def test_an_audit_entry_that_cannot_be_written_after_the_publish_says_what_was_published(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from api import audit

    config, journal = journal_config(tmp_path)
    asyncio.run(run_bus(journal, Poison({"test:1", "test:2"}), [mention(1), mention(2)]))

    def database_gone(*args: object, **kw: object) -> None:
        raise OperationalError("INSERT INTO audit_log", {}, Exception("disk I/O error"))

    monkeypatch.setattr(audit, "record", database_gone)  # after the check, before the entry
    argv = ["dead-letters", "redrive", "--config", str(config), "--topic", "mentions", "--all"]
    code, out, err = cli(argv, capsys)
    assert code == 1
    assert out.splitlines()[-1] == "published 2 event(s) to mentions from 2 dead letter(s)"
    line = one_line(err)
    assert line.startswith("crisiswatch dead-letters redrive: NOT RECORDED in the audit log")
    assert "disk I/O error" in line
    assert "2 event(s) published to mentions from 2 dead letter(s) (test:1, test:2)" in line
    with closing(sqlite3.connect(journal)) as db:  # re-driven all the same
        assert db.execute("SELECT count(*) FROM bus_dead_letters").fetchone() == (0,)


def test_a_journal_redrive_that_fails_or_is_interrupted_is_audited_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from api import dead_letters

    config, journal = journal_config(tmp_path)
    asyncio.run(run_bus(journal, Poison({"test:1"}), [mention(1)]))

    def disk_full(*args: object) -> None:
        raise dead_letters.DeadLetterError(
            "cannot write the bus journal (database or disk is full): nothing was re-driven"
        )

    monkeypatch.setattr(dead_letters, "_journal_redrive", disk_full)
    argv = ["dead-letters", "redrive", "--config", str(config), "--topic", "mentions", "--all"]
    code, out, err = cli(argv, capsys)
    assert code == 2 and out.startswith("re-drive: ") and "nothing was re-driven" in one_line(err)
    db_url = f"sqlite+aiosqlite:///{tmp_path}/cw.db"
    [entry] = asyncio.run(redrives_audited(db_url, via_api=False))
    after = entry["after"]
    assert (after["result"], after["events_published"]) == ("failed", 0)
    assert after["not_redriven"]["count"] == 1 and after["letters"]["count"] == 1
    assert entry["detail"].startswith("DeadLetterError: cannot write the bus journal")

    def ctrl_c(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(dead_letters, "_journal_redrive", ctrl_c)
    assert cli(argv, capsys)[0] == 130
    interrupted = asyncio.run(redrives_audited(db_url, via_api=False))[0]
    assert interrupted["after"]["result"] == "interrupted"
    assert interrupted["after"]["events_published"] is None
    assert interrupted["detail"] == (
        "KeyboardInterrupt; it is not known which of the letters were published"
    )


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["list", "--topic", "nope"], "'nope' is not a topic"),
        (["list", "--since", "yesterday"], "is not an ISO time"),
        (["list", "--limit", "0"], "0 is not 1 or more"),
        (["redrive", "--topic", "mentions"], "one of the arguments --id --all is required"),
        (["redrive", "--all"], "--topic"),
    ],
)
def test_bad_arguments_are_usage_errors(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["dead-letters", *argv])
    assert exit_.value.code == 2 and says in capsys.readouterr().err


def test_a_journal_written_before_dead_letters_had_a_time_is_listed_and_upgraded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, journal = journal_config(tmp_path)
    with closing(sqlite3.connect(journal)) as db, db:
        db.execute(
            "CREATE TABLE bus_dead_letters (id INTEGER PRIMARY KEY, topic TEXT NOT NULL,"
            " grp TEXT NOT NULL, key TEXT, value BLOB NOT NULL, reason TEXT NOT NULL,"
            " partition INTEGER NOT NULL, offset INTEGER NOT NULL)"
        )
        db.execute(
            "INSERT INTO bus_dead_letters VALUES (1, 'mentions', 'scorer', 'k', ?, 'bad', 0, 4)",
            (b"\xff not utf-8",),
        )
    _, out, _ = cli(["dead-letters", "list", "--config", str(config), "--json"], capsys)
    record = json.loads(one_line(out))
    assert record["when"] is None and record["event_id"] is None
    assert record["value_encoding"] == "base64" and record["value"] == "/yBub3QgdXRmLTg="
    _, out, _ = cli(["dead-letters", "list", "--config", str(config)], capsys)
    assert one_line(out).startswith("-  mentions  scorer  key=k  event=-  error: bad")

    # the bus adds the column at its next start, and writes the time of the new ones
    asyncio.run(run_bus(journal, Poison({"test:2"}), [mention(2)]))
    _, out, _ = cli(["dead-letters", "list", "--config", str(config)], capsys)
    old, new = out.splitlines()
    assert old.startswith("-  ") and not new.startswith("-  ")


# --- Kafka --------------------------------------------------------------------------------


def kafka_db(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/k.db"


def kafka_yaml(tmp_path: Path, cfg: BusConfig) -> Path:
    """The config of the distributed processes: ``cfg``'s broker, and a database whose
    audit log records the redrives (``kafka_db``, migrated by the test)."""
    config = tmp_path / "k.yaml"
    config.write_text(
        f"database:\n  url: {kafka_db(tmp_path)}\n"
        "bus:\n  kind: kafka\n"
        f"  bootstrap_servers: '{cfg.bootstrap_servers}'\n"
        f"  topic_prefix: '{cfg.topic_prefix}'\n"
        f"  partitions: {cfg.partitions}\n"
    )
    return config


async def cli_async(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, argv)
    out, err = capsys.readouterr()
    return code, out, err


async def read_topic(cfg: BusConfig, topic: str) -> list[Any]:
    """Every record of ``topic`` (physical name) up to its current end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=cfg.bootstrap_servers, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not tps:
            await consumer.topics()
            tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp, start in (await consumer.beginning_offsets(tps)).items():
            consumer.seek(tp, start)
        records: list[Any] = []

        async def read() -> None:
            while any([await consumer.position(tp) < ends[tp] for tp in tps]):
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(m for m in batch if m.offset < ends[consumer_tp(m)])

        def consumer_tp(m: Any) -> TopicPartition:
            return TopicPartition(m.topic, m.partition)

        await asyncio.wait_for(read(), TIMEOUT)
        return records
    finally:
        await consumer.stop()


async def wait_for_letters(
    config: Path, count: int, capsys: pytest.CaptureFixture[str]
) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while True:
        code, out, err = await cli_async(
            ["dead-letters", "list", "--config", str(config), "--json"], capsys
        )
        assert code == 0, err
        records = [json.loads(line) for line in out.splitlines()]
        if len(records) >= count or asyncio.get_running_loop().time() > deadline:
            return records
        await asyncio.sleep(0.2)


@pytest.mark.kafka
async def test_kafka_dead_letters_are_listed_and_re_driven_once(
    kafka_config: BusConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = kafka_yaml(tmp_path, kafka_config)
    db = await migrated(kafka_db(tmp_path))
    first = Poison({"test:1", "test:3"})
    bus = KafkaBus(kafka_config, consumer_options=FAST_GROUPS, poll_timeout=0.5)
    bus.subscribe("mentions", "scorer", first, retry=FAST_RETRY)
    await bus.start()
    try:
        await bus.publish_many("mentions", [(f"test:{i}", mention(i)) for i in range(5)])
        records = await wait_for_letters(config, 2, capsys)
    finally:
        await bus.stop()
    assert sorted(r["event_id"] for r in records) == ["test:1", "test:3"]
    one = next(r for r in records if r["event_id"] == "test:1")
    assert one["store"] == "kafka" and one["topic"] == "mentions" and one["key"] == "test:1"
    assert one["group"] == "scorer" and one["reason"].startswith("permanent: cannot score")
    assert one["value"] == mention(1).model_dump_json() and not one["cut"]
    assert one["headers"]["topic"] == "mentions" and one["dlq_offset"] >= 0
    assert datetime.fromisoformat(one["when"]) > datetime.now(UTC) - timedelta(minutes=5)

    code, out, err = await cli_async(["dead-letters", "list", "--config", str(config)], capsys)
    assert code == 0 and len(out.splitlines()) == 2 and "2 dead letter(s) in Kafka" in err
    assert all("  mentions  scorer  key=test:" in line for line in out.splitlines())

    redrive = ["dead-letters", "redrive", "--config", str(config), "--topic", "mentions"]
    code, out, err = await cli_async([*redrive, "--id", "test:1", "--dry-run"], capsys)
    assert code == 0 and "would publish 1 event(s)" in out, err
    assert await redrives_audited(db, via_api=False) == []
    code, out, err = await cli_async([*redrive, "--id", "test:1"], capsys)
    assert code == 0, err
    assert out.splitlines()[-1] == "published 1 event(s) to mentions from 1 dead letter(s)"
    code, out, err = await cli_async([*redrive, "--id", "test:1"], capsys)
    assert code == 2 and "no dead letter of mentions holds" in one_line(err)
    # the refused one published nothing: no entry
    [entry] = await redrives_audited(db, via_api=False)
    assert (entry["actor"], entry["role"], entry["target_type"], entry["target_id"]) == (
        ACTOR,
        "cli",
        "dead_letters",
        "mentions",
    )
    after = entry["after"]
    assert (after["store"], after["result"], after["events_published"]) == ("kafka", "done", 1)
    assert after["published_to"] == kafka_config.topic_prefix + "mentions"
    assert after["selection"] == {"ids": ["test:1"], "count": 1}
    assert after["letters"] == {
        "count": 1,
        "first": [
            {
                "event_id": "test:1",
                "key": "test:1",
                "dlq_partition": one["dlq_partition"],
                "dlq_offset": one["dlq_offset"],
            }
        ],
    }
    assert after["not_redriven"] == {"count": 0, "first": []} and after["unmarked"] == 0
    assert entry["outcome"] == "ok" and entry["detail"] is None

    mentions = await read_topic(kafka_config, kafka_config.topic_prefix + "mentions")
    again = [m for m in mentions if m.key == b"test:1"]
    assert len(again) == 2  # the first publish, and the re-driven one
    assert again[1].value == mention(1).model_dump_json().encode()
    # its key took it to the partition of the first
    assert again[0].partition == again[1].partition

    code, out, _ = await cli_async(["dead-letters", "list", "--config", str(config)], capsys)
    assert "Mention:test:3" in one_line(out)
    code, out, err = await cli_async([*redrive, "--all"], capsys)
    assert code == 0 and out.splitlines()[-1].startswith("published 1 event(s)"), err
    code, out, err = await cli_async([*redrive, "--all"], capsys)
    assert code == 0 and out == "published 0 event(s) to mentions from 0 dead letter(s)\n"
    entries = await redrives_audited(db)  # the one with nothing to publish: no entry
    assert [(e["after"]["selection"], e["after"]["events_published"]) for e in entries] == [
        ("all", 1),
        ({"ids": ["test:1"], "count": 1}, 1),
    ]

    # the cause fixed, the group handles them (once each, whatever it had handled)
    fixed = Poison(set())
    bus = KafkaBus(kafka_config, consumer_options=FAST_GROUPS, poll_timeout=0.5)
    bus.subscribe("mentions", "scorer", fixed, retry=FAST_RETRY)
    await bus.start()
    try:
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while sorted(fixed.handled) != ["test:1", "test:3"]:
            assert asyncio.get_running_loop().time() < deadline, fixed.handled
            await asyncio.sleep(0.1)
    finally:
        await bus.stop()


@pytest.mark.kafka
async def test_a_cut_kafka_dead_letter_is_re_driven_whole_from_its_topic(
    kafka_config: BusConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = kafka_yaml(tmp_path, kafka_config)
    db = await migrated(kafka_db(tmp_path))
    bus = KafkaBus(kafka_config)  # creates the topics
    await bus.start()
    await bus.stop()
    prefix = kafka_config.topic_prefix
    whole = mention(9).model_dump_json().encode()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_config.bootstrap_servers)
    await producer.start()
    try:
        original = await producer.send_and_wait(prefix + "mentions", whole, key=b"test:9")
        headers = {
            "reason": "too large",
            "group": "scorer",
            "topic": "mentions",
            "partition": str(original.partition),
            "offset": str(original.offset),
            "size": str(len(whole)),
        }
        await producer.send_and_wait(
            prefix + dlq_topic("mentions"),
            whole[:10],
            key=b"test:9",
            headers=[(k, v.encode()) for k, v in headers.items()],
        )
        # and one whose record is gone (an offset its topic never had)
        headers["offset"] = "999999"
        await producer.send_and_wait(
            prefix + dlq_topic("mentions"),
            whole[:10],
            key=b"test:9",
            headers=[(k, v.encode()) for k, v in headers.items()],
        )
    finally:
        await producer.stop()

    code, out, err = await cli_async(["dead-letters", "list", "--config", str(config)], capsys)
    assert code == 0 and all("(cut: " in line for line in out.splitlines()), err
    argv = ["dead-letters", "redrive", "--config", str(config), "--topic", "mentions", "--all"]
    code, out, err = await cli_async(argv, capsys)
    assert code == 1
    assert out.splitlines()[-1] == "published 1 event(s) to mentions from 1 dead letter(s)"
    assert "1 cut dead letter(s) of mentions not re-driven" in one_line(err)
    records = await read_topic(kafka_config, prefix + "mentions")
    assert [m.value for m in records] == [whole, whole]
    [entry] = await redrives_audited(db, via_api=False)
    after = entry["after"]
    assert (after["result"], after["events_published"]) == ("partial", 1)
    assert after["letters"]["count"] == 2 and after["not_redriven"]["count"] == 1
    assert after["not_redriven"]["first"][0]["dlq_offset"] == 1  # the one whose record is gone
    assert entry["detail"] == "1 cut letter(s) whose record is gone"
    # the one re-driven is marked; the lost one stays listed
    code, out, _ = await cli_async(["dead-letters", "list", "--config", str(config)], capsys)
    assert "(cut: " in one_line(out)


@pytest.mark.kafka
def test_an_unreachable_broker_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support import free_port

    config = tmp_path / "k.yaml"
    config.write_text(f"bus:\n  kind: kafka\n  bootstrap_servers: '127.0.0.1:{free_port()}'\n")
    code, out, err = cli(["dead-letters", "list", "--config", str(config)], capsys)
    assert code == 1 and out == ""
    assert one_line(err).startswith("crisiswatch dead-letters list: cannot reach Kafka at")
