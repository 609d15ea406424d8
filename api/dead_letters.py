"""``crisiswatch dead-letters``: see the events the bus dead-lettered, and publish them
again once their cause is fixed.

Where they are kept:

* Kafka (``bus.kind: kafka``): the topics ``<prefix><topic>.dlq``, each record with the
  event's key and value and headers ``reason``, ``group``, ``topic``, ``partition``,
  ``offset`` (and ``size`` when the value was cut to its first 64 KiB). ``redrive``
  publishes a letter's value to its topic with its key, then writes a marker into the
  same ``.dlq`` partition (an empty record with a header ``redriven`` = the
  letter's offset); ``list`` and ``redrive`` skip the letters a marker names, so a second
  ``redrive`` publishes nothing twice. A cut letter is re-driven from the whole record,
  read back at its topic, partition and offset (while the topic's retention keeps it).
* The embedded process (``bus.kind: memory``): the bus journal's ``bus_dead_letters``
  table (``core.bus.journal``, the last 1,000). ``redrive`` appends the values to the
  journal's topic and deletes their letters in one transaction: the next ``crisiswatch
  run`` delivers them. The journal is locked by a running ``crisiswatch run`` (SQLite's
  exclusive mode: not even a reader gets in), so both commands refuse while it runs: stop
  it first (its dead letters are kept).

Re-driving is safe: every stage is idempotent on the event's id. Letters holding the
same key and value (one event dead-lettered twice) are published once.

A redrive (not ``--dry-run``) is recorded in the audit log of ``database.url`` (``api.audit``,
``GET /audit``): one entry, action ``dead_letters.redrive``, actor ``cli:<OS user>`` (as
``crisiswatch templates seed``), target the topic, and in ``after`` the letters taken and
those not re-driven (the first ``AUDIT_LISTED`` of each, and their count), how many events
were published and ``result``: ``done``, ``partial``, ``failed`` or ``interrupted``
(``detail`` says why). The order: the audit log is checked first (the database reachable,
its ``audit_log`` table there and writable), and a redrive it cannot take publishes
nothing; the entry is written once the publish is over, with what it did (the table is
append-only: an entry written before could not say how it ended). Should that write fail
all the same (the database gone meanwhile), the command says what it published and that
it is not recorded, exit 1.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sqlite3
import sys
from collections.abc import Coroutine, Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO, TypeVar

from pydantic import BaseModel

from api.settings import Settings
from core.bus.base import decode_event, dlq_topic
from core.events import TOPIC_TYPES, ScoredMention

T = TypeVar("T")

AUDIT_ACTION = "dead_letters.redrive"
AUDIT_LISTED = 50
"""Letters named in an audit entry's lists (``letters``, ``not_redriven``); the rest are
counted."""
COMMAND = "crisiswatch dead-letters redrive"

REDRIVEN = "redriven"
"""The header of a marker record in a ``.dlq`` partition: the offset of the letter it
re-drove."""
_REASON_SHOWN = 300  # characters of a reason in a listing line (--json has all of it)
_NO_PROGRESS_S = 30.0  # seconds a read of the .dlq topics may go without a record


class DeadLetterError(Exception):
    """Said in one line; ``code`` is the exit status (2: a usage or setting problem, 1:
    the broker or a publish failed)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Letter:
    """One dead letter, wherever it is kept."""

    topic: str
    group: str
    key: str | None
    value: bytes
    reason: str
    partition: int
    offset: int
    when: datetime | None
    size: int | None = None  # cut (Kafka): the whole value's length
    journal_id: int | None = None
    dlq_partition: int | None = None
    dlq_offset: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    event_type: str | None = None
    event_id: str | None = None

    def __post_init__(self) -> None:
        if self.size is not None:
            return  # a cut value decodes as nothing
        try:
            event = decode_event(self.topic, self.value)
        except ValueError:
            return
        self.event_type = type(event).__name__
        self.event_id = _event_id(event)

    def to_json(self) -> dict[str, Any]:
        try:
            value, encoding = self.value.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            value, encoding = base64.b64encode(self.value).decode("ascii"), "base64"
        record: dict[str, Any] = {
            "store": "journal" if self.journal_id is not None else "kafka",
            "when": _iso(self.when),
            "topic": self.topic,
            "group": self.group,
            "key": self.key,
            "event_type": self.event_type,
            "event_id": self.event_id,
            "reason": self.reason,
            "partition": self.partition,
            "offset": self.offset,
            "value": value,
            "value_encoding": encoding,
            "cut": self.size is not None,
            "size": self.size if self.size is not None else len(self.value),
        }
        if self.journal_id is not None:
            record["journal_id"] = self.journal_id
        else:
            record["dlq_partition"] = self.dlq_partition
            record["dlq_offset"] = self.dlq_offset
            record["headers"] = self.headers
        return record

    def line(self) -> str:
        event = f"{self.event_type}:{_one_line(self.event_id or '')}" if self.event_type else "-"
        reason = _one_line(self.reason)
        if len(reason) > _REASON_SHOWN:
            reason = reason[: _REASON_SHOWN - 1] + "\u2026"
        cut = f" (cut: {self.size} bytes)" if self.size is not None else ""
        return (
            f"{_iso(self.when) or '-'}  {self.topic}  {self.group}  "
            f"key={_one_line(self.key) if self.key is not None else '-'}  "
            f"event={event}{cut}  error: {reason}"
        )


def _event_id(event: BaseModel) -> str | None:
    if isinstance(event, ScoredMention):
        return event.mention.id
    value = getattr(event, "id", None)
    return value if isinstance(value, str) else None


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _one_line(text: str) -> str:
    """Whitespace runs as one space, control characters as ``?``: a value cannot start a
    line of its own in a listing."""
    return "".join(c if c.isprintable() else "?" for c in " ".join(text.split()))


def parse_topic(value: str) -> str:
    """An argparse type: a logical topic (``mentions``, ``scored``, ``signals``); its
    ``.dlq`` name is taken too."""
    topic = value.strip().removesuffix(".dlq")
    if topic not in TOPIC_TYPES:
        import argparse

        known = ", ".join(sorted(TOPIC_TYPES))
        raise argparse.ArgumentTypeError(f"{value!r} is not a topic: use {known}")
    return topic


def parse_since(value: str) -> datetime:
    """An argparse type: an ISO 8601 time (``2026-05-01T12:00``, ``...Z``, an offset);
    without a zone, UTC."""
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        import argparse

        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO time (2026-05-01T12:00:00Z)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


# --- the commands ---------------------------------------------------------------------


def list_letters(
    settings: Settings,
    *,
    topic: str | None,
    since: datetime | None,
    limit: int | None,
    as_json: bool,
    out: TextIO,
) -> int:
    """Write the dead letters not yet re-driven, oldest first (``limit``: the newest N of
    them); a summary line goes to stderr. Returns how many were written."""
    topics = [topic] if topic is not None else sorted(TOPIC_TYPES)
    letters, where = _read(settings, topics)
    if since is not None:
        letters = [x for x in letters if x.when is not None and x.when >= since]
    if limit is not None:
        letters = letters[-limit:]
    for letter in letters:
        out.write(json.dumps(letter.to_json(), ensure_ascii=False) if as_json else letter.line())
        out.write("\n")
    print(f"{len(letters)} dead letter(s) in {where}", file=sys.stderr)
    return len(letters)


def redrive(
    settings: Settings,
    *,
    topic: str,
    ids: Sequence[str] | None,
    dry_run: bool,
    out: TextIO,
) -> int:
    """Publish the chosen letters of ``topic`` (``ids``: those holding these event ids;
    None: all) back to ``topic`` and record that they were; ``dry_run``: only say which.
    Returns the number of events published (or that would be)."""
    path = _journal(settings)
    if path is None:
        return _on_kafka(settings, _kafka_redrive(settings, topic, ids, dry_run, out))
    unrecorded = None
    with closing(_open_journal(path)) as db:
        letters = _journal_letters(db, path, [topic])
        chosen = _choose(letters, topic, ids)
        values = _distinct(chosen)
        real = not dry_run and bool(chosen)
        if real:
            asyncio.run(audit_ready(settings))
        _show(chosen, dry_run, out)
        if real:
            run = _Redrive("journal", topic, f"the bus journal {path}", ids, chosen)
            try:
                _journal_redrive(db, topic, values, chosen)
            except BaseException as exc:  # a DeadLetterError: rolled back, nothing re-driven
                run.ended(exc, published=0 if isinstance(exc, DeadLetterError) else None)
                _raise_recorded(asyncio.run(_record(settings, run)), exc)
            run.ended(None, published=len(values))
            unrecorded = asyncio.run(_record(settings, run))
    _summary(out, topic, len(values), len(chosen), dry_run)
    if unrecorded is not None:
        raise DeadLetterError(unrecorded, code=1)
    return len(values)


def _read(settings: Settings, topics: list[str]) -> tuple[list[Letter], str]:
    path = _journal(settings)
    if path is None:
        return _on_kafka(settings, _kafka_letters(settings, topics))
    with closing(_open_journal(path)) as db:
        return _journal_letters(db, path, topics), f"the bus journal {path}"


def _choose(letters: list[Letter], topic: str, ids: Sequence[str] | None) -> list[Letter]:
    if ids is None:
        return letters
    wanted = set(ids)
    chosen = [x for x in letters if x.event_id in wanted]
    missing = sorted(wanted - {x.event_id for x in chosen})
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise DeadLetterError(
            f"no dead letter of {topic} holds the event(s) {shown} (re-driven already, or "
            f"not an event that decodes: see `crisiswatch dead-letters list --topic {topic}`; "
            "--all takes every one); nothing was published"
        )
    return chosen


def _distinct(letters: Iterable[Letter]) -> list[tuple[str | None, bytes]]:
    """The (key, value) pairs to publish: one per event, however often it was lettered."""
    return list(dict.fromkeys((x.key, x.value) for x in letters))


def _show(chosen: list[Letter], dry_run: bool, out: TextIO) -> None:
    for letter in chosen:
        out.write(f"{'would re-drive' if dry_run else 're-drive'}: {letter.line()}\n")


def _summary(out: TextIO, topic: str, published: int, letters: int, dry_run: bool) -> None:
    verb = "would publish" if dry_run else "published"
    out.write(
        f"{verb} {published} event(s) to {topic} from {letters} dead letter(s)"
        f"{' (dry run: nothing written)' if dry_run else ''}\n"
    )


# --- the embedded bus journal ----------------------------------------------------------


def _journal(settings: Settings) -> Path | None:
    """The journal file of an embedded config; None for Kafka."""
    from api.runtime import journal_path

    if settings.bus.kind == "kafka":
        return None
    path = journal_path(settings)
    if path is None:
        raise DeadLetterError(
            "this config keeps no bus journal (bus.journal off, or the database is not a "
            "SQLite file): the in-process bus's dead letters were only in its memory and "
            "its log; for the Kafka bus, give its config (bus.kind: kafka)"
        )
    return path


def _open_journal(path: Path) -> sqlite3.Connection:
    """The journal, locked as the bus locks it (``core.bus.journal``): a running
    ``crisiswatch run`` holds it, and none starts while this command does."""
    if not path.is_file():
        raise DeadLetterError(
            f"no bus journal at {path}: is this the config `crisiswatch run` uses? (the "
            "journal is made at its first start)"
        )
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=1.0)
    db.isolation_level = None
    try:
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        db.execute("BEGIN IMMEDIATE")
        db.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        db.close()
        if "locked" in str(exc):
            raise DeadLetterError(
                f"the bus journal {path} is in use by a running `crisiswatch run`: stop it "
                "first (SIGTERM; its dead letters are kept), then run this again"
            ) from exc
        raise DeadLetterError(f"the bus journal {path} cannot be read ({exc})") from exc
    return db


def _journal_letters(db: sqlite3.Connection, path: Path, topics: list[str]) -> list[Letter]:
    try:
        return _journal_rows(db, topics)
    except sqlite3.Error as exc:  # a damaged page
        raise DeadLetterError(f"the bus journal {path} cannot be read ({exc})") from exc


def _journal_rows(db: sqlite3.Connection, topics: list[str]) -> list[Letter]:
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_schema")}
    if "bus_dead_letters" not in tables:  # a journal of a release that kept none
        return []
    columns = {row[1] for row in db.execute("PRAGMA table_info(bus_dead_letters)")}
    db.row_factory = sqlite3.Row
    try:
        rows = db.execute("SELECT * FROM bus_dead_letters ORDER BY id").fetchall()
    finally:
        db.row_factory = None
    letters = []
    for row in rows:
        if row["topic"] not in topics:
            continue
        at = row["at"] if "at" in columns else None  # NULL: kept before its time was
        letters.append(
            Letter(
                topic=row["topic"],
                group=row["grp"],
                key=row["key"],
                value=bytes(row["value"]),
                reason=row["reason"],
                partition=row["partition"],
                offset=row["offset"],
                when=datetime.fromtimestamp(at, UTC) if at is not None else None,
                journal_id=row["id"],
            )
        )
    return letters


def _journal_redrive(
    db: sqlite3.Connection,
    topic: str,
    values: list[tuple[str | None, bytes]],
    letters: list[Letter],
) -> None:
    """Append ``values`` to ``topic`` after everything it holds and delete the letters:
    one transaction. The next start of the bus reads them back; every group of the topic
    is at or before the offset they get (``JournalTopic.end``), so each gets them."""
    try:
        db.execute("BEGIN IMMEDIATE")
        (end,) = db.execute(
            "SELECT max(coalesce((SELECT max(offset) + 1 FROM bus_records WHERE topic = ?), 0),"
            " coalesce((SELECT max(next) FROM bus_positions WHERE topic = ?), 0))",
            (topic, topic),
        ).fetchone()
        db.executemany(
            "INSERT INTO bus_records (topic, offset, key, value) VALUES (?, ?, ?, ?)",
            [(topic, end + i, key, value) for i, (key, value) in enumerate(values)],
        )
        db.executemany(
            "DELETE FROM bus_dead_letters WHERE id = ?", [(x.journal_id,) for x in letters]
        )
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise DeadLetterError(
            f"cannot write the bus journal ({exc}): nothing was re-driven"
        ) from exc


# --- Kafka ------------------------------------------------------------------------------


async def _kafka_letters(settings: Settings, topics: list[str]) -> tuple[list[Letter], str]:
    from aiokafka import AIOKafkaConsumer

    cfg = settings.bus
    async with _Client(AIOKafkaConsumer(**_consumer_options(settings)), cfg.bootstrap_servers) as c:
        letters = await _read_dlq(c, settings, topics)
    names = ", ".join(_dlq_name(settings, t) for t in topics)
    return letters, f"Kafka at {cfg.bootstrap_servers} ({names})"


async def _kafka_redrive(
    settings: Settings, topic: str, ids: Sequence[str] | None, dry_run: bool, out: TextIO
) -> int:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from core.bus.kafka import client_options

    servers = settings.bus.bootstrap_servers
    async with _Client(AIOKafkaConsumer(**_consumer_options(settings)), servers) as consumer:
        chosen = _choose(await _read_dlq(consumer, settings, [topic]), topic, ids)
        lost = await _whole_values(consumer, settings, topic, chosen)
    ready = [x for x in chosen if all(x is not gone for gone in lost)]
    values = _distinct(ready)
    real = bool(ready) and not dry_run
    if real:
        await audit_ready(settings)
    _show(ready, dry_run, out)
    problems = []
    if lost:
        problems.append(
            f"{len(lost)} cut dead letter(s) of {topic} not re-driven: their whole record is "
            f"gone from {settings.bus.topic_prefix}{topic} (retention), only its first 64 KiB "
            f"is in {_dlq_name(settings, topic)} (offsets "
            f"{', '.join(str(x.dlq_offset) for x in lost[:5])}{', …' if len(lost) > 5 else ''})"
        )
    if real:
        run = _Redrive("kafka", topic, settings.bus.topic_prefix + topic, ids, chosen, lost)
        sent: _Sent | None = None
        try:
            producer = AIOKafkaProducer(**client_options(settings.bus), acks="all")
            async with _Client(producer, servers):
                sent = await _publish(producer, settings, topic, values, ready)
        except BaseException as exc:  # the producer did not start, a cancel (Ctrl-C)
            if sent is None:
                run.ended(exc, published=0 if isinstance(exc, DeadLetterError) else None)
            else:  # published, then its stop failed
                run.sent(sent, exc)
            _raise_recorded(await _record(settings, run), exc)
        run.sent(sent, None)
        unrecorded = await _record(settings, run)
        if sent.unexpected is not None:
            _raise_recorded(unrecorded, sent.unexpected)
        if unrecorded is not None:
            problems.append(unrecorded)
        if sent.problem is not None:  # as before: no summary when a publish failed
            raise DeadLetterError("; ".join([sent.problem, *problems]), code=1)
    _summary(out, topic, len(values), len(ready), dry_run)
    if problems:
        raise DeadLetterError("; ".join(problems), code=1)
    return len(values)


def _on_kafka(settings: Settings, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work``; a broker failing meanwhile is one line (exit 1)."""
    from aiokafka.errors import KafkaError

    try:
        return asyncio.run(work)
    except KafkaError as exc:
        raise DeadLetterError(
            f"Kafka at {settings.bus.bootstrap_servers} failed: {type(exc).__name__}: {exc}",
            code=1,
        ) from exc


def _dlq_name(settings: Settings, topic: str) -> str:
    return settings.bus.topic_prefix + dlq_topic(topic)


def _consumer_options(settings: Settings) -> dict[str, Any]:
    from core.bus.kafka import client_options

    return {
        **client_options(settings.bus),
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
    }


class _Client:
    """``async with``: start an aiokafka client and stop it after; a broker that cannot
    be reached is a ``DeadLetterError`` (exit 1)."""

    def __init__(self, client: Any, servers: str) -> None:
        self.client = client
        self.servers = servers

    async def __aenter__(self) -> Any:
        from aiokafka.errors import KafkaError

        try:
            await self.client.start()
        except KafkaError as exc:
            with contextlib.suppress(Exception):
                await self.client.stop()
            raise DeadLetterError(f"cannot reach Kafka at {self.servers}: {exc}", code=1) from exc
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        await self.client.stop()


async def _read_dlq(consumer: Any, settings: Settings, topics: list[str]) -> list[Letter]:
    """Every letter of the ``.dlq`` topics of ``topics`` up to their current end, less
    the ones a marker says were re-driven; oldest first."""
    from aiokafka import TopicPartition

    physical = {_dlq_name(settings, t): t for t in topics}
    await consumer.topics()  # fetch the cluster's metadata
    tps = []
    for name in physical:
        partitions = consumer.partitions_for_topic(name)
        if not partitions:
            print(f"no topic {name} on the broker (no dead letters yet?)", file=sys.stderr)
            continue
        tps += [TopicPartition(name, p) for p in sorted(partitions)]
    if not tps:
        return []
    consumer.assign(tps)
    ends = await consumer.end_offsets(tps)
    # (seek_to_beginning() races with the reset the assignment started: an explicit seek)
    for tp, start in (await consumer.beginning_offsets(tps)).items():
        consumer.seek(tp, start)
    letters: list[Letter] = []
    redriven: set[tuple[str, int, int]] = set()
    left = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _NO_PROGRESS_S
    while left:
        got = await consumer.getmany(*left, timeout_ms=1000)
        if any(got.values()):
            deadline = loop.time() + _NO_PROGRESS_S
        elif loop.time() > deadline:
            raise DeadLetterError(
                f"Kafka at {settings.bus.bootstrap_servers} gave no record of "
                f"{', '.join(sorted({tp.topic for tp in left}))} for {_NO_PROGRESS_S:.0f} s",
                code=1,
            )
        for tp, records in got.items():
            for m in records:
                if m.offset >= ends[tp]:
                    continue
                headers = {k: v.decode("utf-8", "replace") for k, v in m.headers or ()}
                if REDRIVEN in headers:
                    with contextlib.suppress(ValueError):
                        redriven.add((tp.topic, tp.partition, int(headers[REDRIVEN])))
                    continue
                letters.append(_kafka_letter(physical[tp.topic], tp.partition, m, headers))
        for tp in list(left):
            if await consumer.position(tp) >= ends[tp]:
                left.discard(tp)
    letters = [
        x
        for x in letters
        if (_dlq_name(settings, x.topic), x.dlq_partition, x.dlq_offset) not in redriven
    ]
    letters.sort(key=lambda x: (x.when or datetime.min.replace(tzinfo=UTC), x.dlq_offset or 0))
    return letters


def _number(text: str | None) -> int:
    try:
        return int(text) if text is not None else -1
    except ValueError:
        return -1


def _kafka_letter(topic: str, dlq_partition: int, m: Any, headers: dict[str, str]) -> Letter:
    size = headers.get("size")
    return Letter(
        topic=topic,
        group=headers.get("group", "?"),
        key=m.key.decode("utf-8", "replace") if m.key is not None else None,
        value=m.value if m.value is not None else b"",
        reason=headers.get("reason", ""),
        partition=_number(headers.get("partition")),
        offset=_number(headers.get("offset")),
        when=datetime.fromtimestamp(m.timestamp / 1000, UTC) if m.timestamp else None,
        size=_number(size) if size is not None else None,
        dlq_partition=dlq_partition,
        dlq_offset=m.offset,
        headers=headers,
    )


async def _whole_values(
    consumer: Any, settings: Settings, topic: str, chosen: list[Letter]
) -> list[Letter]:
    """Give each cut letter its whole key and value, read at its topic, partition and
    offset; returns the ones whose record is gone."""
    from aiokafka import TopicPartition

    lost: list[Letter] = []
    for letter in [x for x in chosen if x.size is not None]:
        tp = TopicPartition(settings.bus.topic_prefix + topic, letter.partition)
        record = None
        if letter.partition >= 0 and letter.offset >= 0:
            consumer.assign([tp])
            start = (await consumer.beginning_offsets([tp]))[tp]
            end = (await consumer.end_offsets([tp]))[tp]
            if start <= letter.offset < end:
                consumer.seek(tp, letter.offset)
                got = await consumer.getmany(tp, timeout_ms=10_000, max_records=1)
                record = next(iter(got.get(tp, [])), None)
        if record is None or record.offset != letter.offset or record.value is None:
            lost.append(letter)
            continue
        letter.key = record.key.decode("utf-8", "replace") if record.key is not None else None
        letter.value = record.value
    return lost


@dataclass
class _Sent:
    """What ``_publish`` did: the letters whose value went through (``done``) and not
    (``failed``), how many events went through, how many markers were not written, and the
    failure said in a line (``problem``) or one to raise as it is (``unexpected``)."""

    done: list[Letter]
    failed: list[Letter]
    events: int
    unmarked: int
    problem: str | None = None
    unexpected: BaseException | None = None


async def _publish(
    producer: Any,
    settings: Settings,
    topic: str,
    values: list[tuple[str | None, bytes]],
    letters: list[Letter],
) -> _Sent:
    """Publish ``values`` to ``topic``, then mark the letters whose value went through (a
    marker per letter, in its ``.dlq`` partition). A failure leaves the rest unmarked: a
    later run publishes them (at least once; the stages are idempotent)."""
    from aiokafka.errors import KafkaError

    physical = settings.bus.topic_prefix + topic
    outcomes = await asyncio.gather(
        *(
            producer.send_and_wait(physical, value, key=key.encode() if key is not None else None)
            for key, value in values
        ),
        return_exceptions=True,
    )
    failed = {
        pair
        for pair, outcome in zip(values, outcomes, strict=True)
        if isinstance(outcome, BaseException)
    }
    done = [x for x in letters if (x.key, x.value) not in failed]
    dlq = _dlq_name(settings, topic)
    marked = await asyncio.gather(
        *(
            producer.send_and_wait(
                dlq,
                b"",
                partition=x.dlq_partition,
                headers=[(REDRIVEN, str(x.dlq_offset).encode())],
            )
            for x in done
        ),
        return_exceptions=True,
    )
    unmarked = sum(isinstance(o, BaseException) for o in marked)
    sent = _Sent(
        done=done,
        failed=[x for x in letters if (x.key, x.value) in failed],
        events=len(values) - len(failed),
        unmarked=unmarked,
    )
    errors = [o for o in (*outcomes, *marked) if isinstance(o, BaseException)]
    if errors:
        first = errors[0]
        if not isinstance(first, KafkaError | OSError):
            sent.unexpected = first
            return sent
        sent.problem = (
            f"{len(failed)} of {len(values)} event(s) not published to {topic} and "
            f"{unmarked} re-driven letter(s) not marked ({type(first).__name__}: {first}): "
            "run the same command again (a stage ignores an event it handled)"
        )
    return sent


# --- the audit log ---------------------------------------------------------------------


def _ref(letter: Letter) -> dict[str, Any]:
    """A letter as an audit entry names it: its event and where it is kept."""
    ref: dict[str, Any] = {
        "event_id": letter.event_id[:200] if letter.event_id is not None else None,
        "key": letter.key[:200] if letter.key is not None else None,
    }
    if letter.journal_id is not None:
        ref["journal_id"] = letter.journal_id
    else:
        ref["dlq_partition"] = letter.dlq_partition
        ref["dlq_offset"] = letter.dlq_offset
    return ref


def _bounded(letters: Sequence[Letter]) -> dict[str, Any]:
    return {"count": len(letters), "first": [_ref(x) for x in letters[:AUDIT_LISTED]]}


@dataclass
class _Redrive:
    """One redrive, as its audit entry keeps it (``ended`` or ``sent`` says how it went)."""

    store: str  # "kafka" or "journal"
    topic: str
    published_to: str
    ids: Sequence[str] | None
    letters: list[Letter]
    lost: list[Letter] = field(default_factory=list)  # cut letters whose record is gone
    result: str = "interrupted"
    published: int | None = None  # events; None: not known (interrupted)
    not_redriven: list[Letter] = field(default_factory=list)
    unmarked: int = 0
    detail: str | None = None

    def ended(self, error: BaseException | None, *, published: int | None) -> None:
        """Every letter re-driven (``error`` None), none (``published`` 0), or not known
        (``published`` None: interrupted)."""
        self.published = published
        if error is None:
            self.not_redriven = list(self.lost)
            self.result = "partial" if self.lost else "done"
        elif published == 0:
            self.not_redriven = list(self.letters)
            self.result = "failed"
        else:
            self.result = "interrupted"
        self._explain(error)

    def sent(self, sent: _Sent, error: BaseException | None) -> None:
        """The Kafka publish went as ``sent`` says (then ``error``, if not None)."""
        self.published = sent.events
        self.not_redriven = [*sent.failed, *self.lost]
        self.unmarked = sent.unmarked
        if not self.not_redriven:
            self.result = "done"
        else:
            self.result = "partial" if sent.done else "failed"
        problems = [sent.problem] if sent.problem else []
        if sent.unexpected is not None:
            problems.append(_said(sent.unexpected))
        if self.lost:
            problems.append(f"{len(self.lost)} cut letter(s) whose record is gone")
        if error is not None:
            problems.append(_said(error))
        self.detail = "; ".join(problems)[:500] or None

    def _explain(self, error: BaseException | None) -> None:
        problems = [f"{len(self.lost)} cut letter(s) whose record is gone"] if self.lost else []
        if error is not None:
            problems.append(_said(error))
        if self.result == "interrupted":
            problems.append("it is not known which of the letters were published")
        self.detail = "; ".join(problems)[:500] or None

    def after(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "command": COMMAND,
            "store": self.store,
            "published_to": self.published_to,
            "selection": "all"
            if self.ids is None
            else {"ids": [i[:200] for i in self.ids[:AUDIT_LISTED]], "count": len(self.ids)},
            "result": self.result,
            "events_published": self.published,
            "letters": _bounded(self.letters),
            "not_redriven": _bounded(self.not_redriven),
        }
        if self.store == "kafka":
            entry["unmarked"] = self.unmarked
        return entry

    def what(self) -> str:
        """What was published, said in a line (for an entry that could not be written)."""
        shown = ", ".join(x.event_id or f"key {x.key}" for x in self.letters[:10])
        more = f" and {len(self.letters) - 10} more" if len(self.letters) > 10 else ""
        letters = f"{len(self.letters)} dead letter(s) ({shown}{more})"
        if self.published is None:
            return (
                f"interrupted while publishing {letters} to {self.topic}: some may have "
                "been published"
            )
        missed = f"; {len(self.not_redriven)} not re-driven" if self.not_redriven else ""
        return f"{self.published} event(s) published to {self.topic} from {letters}{missed}"


def _said(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def audit_ready(settings: Settings) -> None:
    """Refuse (``DeadLetterError``) a redrive that the audit log could not record: a
    SQLite database file that is not there, a database that cannot be reached, not
    migrated, or whose ``audit_log`` this user may not add to. Nothing is written."""
    from sqlalchemy import inspect
    from sqlalchemy.engine import Connection
    from sqlalchemy.exc import SQLAlchemyError

    from api.audit import AuditEntry
    from api.cli import _check_database_url
    from core.db import database_unavailable, make_engine, sqlite_file

    url = settings.database.url.get_secret_value()
    _check_database_url(url)  # a ConfigError: said in a line, exit 2
    path = sqlite_file(url)
    if path is not None and not path.is_file():
        raise DeadLetterError(
            f"no database at {path}: a redrive is recorded in the audit log of the database "
            "the processes use (database.url; `crisiswatch db upgrade` makes it); nothing "
            "was published"
        )
    table = AuditEntry.__tablename__

    def writable(connection: Connection) -> str | None:
        if not inspect(connection).has_table(table):
            return f"the database has no {table} table: run `crisiswatch db upgrade` first"
        if connection.dialect.name == "postgresql":
            allowed = connection.exec_driver_sql(
                f"SELECT has_table_privilege('{table}', 'INSERT')"
            ).scalar()
            if not allowed:
                return f"this database user may not add to {table} (INSERT)"
        return None

    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            problem = await conn.run_sync(writable)
    except (OSError, SQLAlchemyError) as exc:
        code = 1 if database_unavailable(exc) else 2
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise DeadLetterError(
            f"cannot reach the database for the audit log ({type(exc).__name__}: "
            f"{reason[0] if reason else 'no reason given'}): nothing was published",
            code=code,
        ) from exc
    finally:
        await engine.dispose()
    if problem is not None:
        raise DeadLetterError(
            f"{problem} (a redrive is recorded in the audit log); nothing was published"
        )


async def _record(settings: Settings, run: _Redrive) -> str | None:
    """Write ``run``'s audit entry; None when written, else what to tell the operator
    (whatever failed: the events are out, and the operator must learn which)."""
    from api import audit
    from api.seed import cli_principal
    from core.clock import SystemClock
    from core.db import make_engine, make_sessionmaker, unit_of_work

    engine = make_engine(settings.database.url.get_secret_value())
    try:
        async with unit_of_work(make_sessionmaker(engine)) as session:
            audit.record(
                session, cli_principal(), AUDIT_ACTION, "dead_letters", run.topic,
                at=SystemClock().now(), after=run.after(), detail=run.detail,
            )  # fmt: skip
    except Exception as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return (
            f"NOT RECORDED in the audit log ({type(exc).__name__}: "
            f"{reason[0] if reason else 'no reason given'}): {run.what()}; record who "
            "re-drove them by hand"
        )
    finally:
        await engine.dispose()
    return None


def _raise_recorded(unrecorded: str | None, error: BaseException) -> NoReturn:
    """Raise ``error`` (the redrive's), saying too that its entry was not written."""
    if unrecorded is None:
        raise error
    if isinstance(error, DeadLetterError):
        raise DeadLetterError(f"{error}; {unrecorded}", code=1) from error
    print(f"{COMMAND}: {unrecorded}", file=sys.stderr)
    raise error
