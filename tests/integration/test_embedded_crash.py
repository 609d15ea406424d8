"""The embedded process (``crisiswatch run``: every stage in one process over the memory
bus and SQLite) killed with SIGKILL mid-stream, then started again on the same files.

With the default config (``bus.journal: auto``) the bus keeps a journal beside the SQLite
database (``core.bus.journal``) and the detector keeps each watch's state in the database,
so the second process takes back every event the first one had accepted and not handled,
and resumes the crisis story where it was. The test, with a real process and the shipped
sentiment model:

1. pushes the first part of the crisis (``test_faults.py``'s stream) through the signed
   webhook and waits for its tier-2 alerts (sent and recorded: none is in flight later);
2. pushes a few thousand chatter mentions of a second watch, then the rest of the
   crisis, and kills the process (``kill -9``) as soon as the last push is accepted; the
   files show the stream was still being handled (the detector had counted only part of
   it, the crisis was not at tier 3) and that each accepted mention not counted yet was
   in the bus journal;
3. starts the process again and waits until it has caught up (every bus group at lag 0,
   the outbox empty); the recovery time is printed (a number to read, not an assertion);
4. checks that every mention each watch matched was counted exactly once by the detector
   (its saved state: the mention ids of its stories, and each story's mention count), that
   the crisis is one incident at tier 3 whose Signals carry one generation (the story was
   resumed, not started afresh), and that every alert was delivered and none twice.

The chatter goes to a second watch so that the crisis is detected exactly as it is
without it (the acme watch's rates stay the same), and it is pushed before the rest of
the crisis, so that the kill lands while the stages are busy with it and never while an
alert is being sent (one sent and not yet recorded as sent would be sent again after
``alerts.delivery.claim_timeout``: at-least-once by design).

The process logs to ``<tmp_path>/crisiswatch.log``; its tail is printed when the test fails.
With ``bus.journal: "off"`` in ``embedded_config`` (the memory bus as it was before the
journal: nothing on disk, the detector's state in memory) it fails: the mentions in flight
are lost, the crisis stays at tier 2.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from alerts.models import Delivery, Incident, IncidentEvent
from api.settings import load_settings
from core.bus.base import decode_event
from core.db import make_engine, make_sessionmaker
from core.events import Author, Mention, ScoredMention
from listener.webhook import signed_headers
from sentiment.detector.snapshot import STATE_FORMAT, SnapshotCodec
from sentiment.detector.stories import Story
from tests.process_support import Processes, RoleProcess, child_env, write_config
from tests.support import (
    CHANNELS,
    INGEST_SECRET,
    Receiver,
    chatter,
    crisis_stream,
    fault_alerts_config,
    free_port,
    http_receiver,
    report,
    wait_until,
)

pytestmark = [pytest.mark.faults, pytest.mark.model]

# as in test_faults.py (not imported from there: mypy would check its imports too)
ROOT_STORY = "acme:bluesky:root-1"
BEFORE_TIER_3 = 24  # mentions of the_stream() that put the crisis at tier 2, not 3

CHATTER_WATCH = "globex"
CHATTER = 3_000  # chatter mentions pushed before the rest of the crisis
PUSH_SIZE = 1_000  # mentions per webhook request (listener.webhook.max_items)
GROUPS = {("mentions", "scorer"), ("scored", "detector"), ("signals", "alerter")}

# the chatter's words: nine picked at random make texts that are never near-duplicates
WORDS = " ".join(
    (
        "phone laptop tablet camera battery screen charger cable speaker update app store",
        "price launch review unboxing delivery box colour design weight keyboard mouse",
        "headphones warranty firmware discount bundle preorder shop queue event keynote",
        "stream video photo night mode zoom lens sensor chip speed memory storage cloud sync",
        "backup music podcast game controller watch band strap fitness sleep tracker heart",
        "rate steps walk run bike swim coffee morning evening weekend friend family office",
        "school travel airport train city beach mountain river garden kitchen sofa lamp desk",
    )
).split()


# -- the stream ---------------------------------------------------------------------------


def the_stream() -> list[Mention]:
    """The e2e crisis in event time that ended a few minutes ago (the detector works in
    event time, so tiers are reached without waiting; the alerter's clock is the system's)."""
    start = datetime.now(UTC) - timedelta(minutes=10)
    stream = chatter(start) + crisis_stream(start + timedelta(minutes=1))
    stream.sort(key=lambda m: m.created_at)
    return stream


def chatter_of_globex(start: datetime, n: int) -> list[Mention]:
    """``n`` posts about Globex, each its own story (``WORDS``), spread over the ten
    minutes of the crisis stream. (Seeded: the same texts, the same sentiment, every run.)"""
    rng = random.Random(20261127)
    out = []
    for i in range(n):
        words = " ".join(rng.choice(WORDS) for _ in range(9))
        out.append(
            Mention(
                id=f"mastodon:globex{i}",
                source="mastodon",
                text=f"Globex {words} {i}",
                lang="en",
                created_at=start + timedelta(seconds=600 * i / n),
                author=Author(id=f"g{i}", followers=10 + i % 500),
            )
        )
    return out


# -- the process --------------------------------------------------------------------------


def embedded_config(db: Path, receiver: Receiver) -> dict[str, Any]:
    """``crisiswatch run``'s config: SQLite, the signed webhook, two watches, and the
    fault tests' alert routing (webhooks to the receiver, teams, tier-3 escalation). The
    bus is left as it comes: the memory bus, with its journal (``bus.journal: auto``)."""
    return {
        "log_level": "INFO",
        "database": {"url": f"sqlite+aiosqlite:///{db}"},
        "listener": {
            "watches": [
                {"id": "acme", "brand": "Acme", "terms": ["acme"]},
                {"id": CHATTER_WATCH, "brand": "Globex", "terms": ["globex"]},
            ],
            "webhook": {"enabled": True, "secret": INGEST_SECRET, "max_items": PUSH_SIZE},
        },
        "detector": {"max_wait_seconds": 0.05},
        "alerts": fault_alerts_config(receiver),
    }


@dataclass
class Counted:
    """One watch in the detector's saved state: the mention ids its stories hold, and the
    sum of their stories' mention counts."""

    ids: list[str] = field(default_factory=list)
    heat: int = 0


@dataclass
class Embedded:
    """One ``crisiswatch run`` (restartable), its database and what was pushed to it."""

    process: RoleProcess
    db: Path
    config: Path
    receiver: Receiver
    matched: dict[str, set[str]] = field(default_factory=dict)  # watch -> mention ids

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.process.port}"

    async def start(self) -> float:
        """Start the process; the monotonic time it was started (returns once ready)."""
        started = time.monotonic()
        self.process.process.start()
        await asyncio.to_thread(
            self.process.process.wait_for, self.process.ready, "readiness (/readyz 200)"
        )
        return started

    async def push(self, client: httpx.AsyncClient, mentions: list[Mention]) -> None:
        """Through the signed webhook, ``PUSH_SIZE`` at a time; each request accepted
        (2xx) before the next. Notes which watches each mention was published to."""
        for i in range(0, len(mentions), PUSH_SIZE):
            batch = mentions[i : i + PUSH_SIZE]
            body = json.dumps({"mentions": [m.model_dump(mode="json") for m in batch]}).encode()
            headers = signed_headers(INGEST_SECRET, body, datetime.now(UTC))
            response = await client.post(
                f"{self.base}/ingest/mentions",
                content=body,
                headers={**headers, "content-type": "application/json"},
            )
            assert response.is_success, (response.status_code, response.text[:500])
            results = response.json()["results"]
            assert [r["outcome"] for r in results] == ["published"] * len(batch), results
            for result in results:
                for watch in result["watches"]:
                    self.matched.setdefault(watch, set()).add(result["id"])

    def lags(self) -> dict[tuple[str, str], float]:
        """``crisiswatch_bus_consumer_lag`` of each (topic, group) ({} when not up)."""
        try:
            text = httpx.get(f"{self.base}/metrics", timeout=2.0).text
        except httpx.HTTPError:
            return {}
        found: dict[tuple[str, str], float] = {}
        for line in text.splitlines():
            if not line.startswith("crisiswatch_bus_consumer_lag{"):
                continue
            key, _, value = line.rpartition(" ")
            labels = dict(
                part.split("=", 1) for part in key[key.index("{") + 1 : -1].split(",") if part
            )
            found[(labels["topic"].strip('"'), labels["group"].strip('"'))] = float(value)
        return found

    async def rows(self) -> tuple[list[Incident], list[Delivery], list[IncidentEvent]]:
        engine = make_engine(f"sqlite+aiosqlite:///{self.db}")
        try:
            async with make_sessionmaker(engine)() as session:
                return (
                    list((await session.scalars(select(Incident))).all()),
                    list((await session.scalars(select(Delivery))).all()),
                    list((await session.scalars(select(IncidentEvent))).all()),
                )
        finally:
            await engine.dispose()

    async def pending(self) -> int:
        _, deliveries, _ = await self.rows()
        return sum(1 for d in deliveries if d.status == "pending")

    def counted(self) -> dict[str, Counted]:
        """What the detector's saved state (``detector_state``, ``detector_story_state``)
        holds of each watch's mentions."""
        codec = SnapshotCodec(load_settings(self.config).detector.effective())
        out: dict[str, Counted] = {}
        with closing(sqlite3.connect(self.db, timeout=30)) as db:
            formats = dict(
                db.execute("SELECT watch_id, format FROM detector_state WHERE NOT drill")
            )
            parts = db.execute(
                "SELECT watch_id, story_id, state FROM detector_story_state WHERE NOT drill"
            ).fetchall()
        for watch_id, fmt in formats.items():
            assert fmt in (0, STATE_FORMAT), f"watch {watch_id}: state format {fmt}"
            out[watch_id] = Counted()
        for watch_id, story_id, blob in parts:
            part = codec.loads(bytes(blob))  # (Story, its _Tracked, its indexed texts)
            assert isinstance(part, tuple) and len(part) == 3, type(part)
            story, tracked = part[0], part[1]
            assert isinstance(story, Story) and story.id == story_id
            c = out.setdefault(watch_id, Counted())
            c.ids.extend(story.mention_ids)
            c.heat += tracked.heat.mentions
        return out


@dataclass
class Journal:
    """What a killed process's bus journal holds: the events of each topic not yet
    handled by every group reading it, and the ids of the mentions among them by watch."""

    sizes: dict[str, int] = field(default_factory=dict)
    mentions: dict[str, set[str]] = field(default_factory=dict)

    def ids(self, watch: str) -> set[str]:
        return self.mentions.get(watch, set())


def read_journal(db: Path, into: Path) -> Journal:
    """The journal beside ``db`` (``bus.journal: auto``), read from a copy in ``into``, so
    that the next process finds the files exactly as the killed one left them."""
    journal = db.with_name(db.name + ".bus-journal")
    assert journal.exists(), f"no bus journal beside the database ({journal})"
    into.mkdir()
    for suffix in ("", "-wal"):  # the database file and its write-ahead log
        source = journal.with_name(journal.name + suffix)
        if source.exists():
            shutil.copyfile(source, into / (journal.name + suffix))
    with closing(sqlite3.connect(into / journal.name)) as copy:
        rows = copy.execute("SELECT topic, value FROM bus_records").fetchall()
    found = Journal()
    for topic, value in rows:
        found.sizes[topic] = found.sizes.get(topic, 0) + 1
        event = decode_event(topic, bytes(value))
        mention = event.mention if isinstance(event, ScoredMention) else event
        if isinstance(mention, Mention) and mention.watch is not None:
            found.mentions.setdefault(mention.watch.id, set()).add(mention.id)
    return found


@asynccontextmanager
async def embedded(procs: Processes, tmp_path: Path) -> AsyncIterator[Embedded]:
    async with http_receiver(lambda: datetime.now(UTC)) as receiver:
        db = tmp_path / "crisiswatch.db"
        config = write_config(tmp_path / "crisiswatch.yaml", embedded_config(db, receiver))
        port = free_port()
        argv = [sys.executable, "-m", "api.cli", "run", "--config", str(config)]
        managed = procs.add("crisiswatch", [*argv, "--port", str(port)], child_env())
        e = Embedded(RoleProcess(managed, port), db, config, receiver)
        try:
            yield e
        finally:  # before the receiver goes: no alert sent into the void
            await asyncio.to_thread(managed.stop)


# -- the test -----------------------------------------------------------------------------


async def test_embedded_process_killed_mid_stream_loses_nothing(
    procs: Processes, tmp_path: Path, capsys: Any
) -> None:
    stream = the_stream()
    first, rest = stream[:BEFORE_TIER_3], stream[BEFORE_TIER_3:]
    bulk = chatter_of_globex(stream[0].created_at, CHATTER)
    async with embedded(procs, tmp_path) as e, httpx.AsyncClient(timeout=60.0) as client:
        await e.start()

        # the crisis's first part: handled, its tier-2 alerts sent and recorded
        await e.push(client, first)

        async def tier_2_recorded() -> bool:
            tier_2 = any(b["alert"]["tier"] == 2 for _, b in e.receiver.requests)
            return tier_2 and not await e.pending()

        await wait_until(tier_2_recorded, 60, "the tier-2 alerts, sent and recorded")

        # chatter, then the rest of the crisis; killed as soon as the last push is accepted
        await e.push(client, bulk)
        await e.push(client, rest)
        await asyncio.to_thread(e.process.process.kill)

        matched = {w: len(ids) for w, ids in e.matched.items()}
        assert e.matched == {
            "acme": {m.id for m in stream},
            CHATTER_WATCH: {m.id for m in bulk},
        }, matched
        expected = sum(matched.values())
        at_kill = await asyncio.to_thread(e.counted)
        counted = sum(len(c.ids) for c in at_kill.values())
        journal = await asyncio.to_thread(read_journal, e.db, tmp_path / "journal-at-kill")
        incidents, _, _ = await e.rows()
        # mid-stream: part of the stream not handled yet, the crisis below tier 3 ...
        assert counted < expected, f"the stream was handled before the kill: {counted}"
        assert not any(b["alert"]["tier"] == 3 for _, b in e.receiver.requests)
        assert [(i.story_id, i.tier) for i in incidents] == [(ROOT_STORY, 2)]
        # ... and what was not counted yet is on disk: in the journal (or counted already)
        for watch, ids in e.matched.items():
            nowhere = ids - set(at_kill.get(watch, Counted()).ids) - journal.ids(watch)
            assert not nowhere, (
                f"watch {watch}: {len(nowhere)} accepted mention(s) neither counted nor in "
                f"the bus journal at the kill, e.g. {sorted(nowhere)[:5]}"
            )
        report(
            capsys,
            f"embedded kill -9: the detector had counted {counted} of the {expected} "
            f"mentions (acme {len(at_kill.get('acme', Counted()).ids)} of {matched['acme']}); "
            f"events in the bus journal: {dict(sorted(journal.sizes.items()))}",
        )

        # the same command again, on the same files: until it has caught up
        restarted = await e.start()
        ready = time.monotonic()

        async def caught_up() -> bool:
            lags = await asyncio.to_thread(e.lags)
            if not lags.keys() >= GROUPS or any(lags.values()):
                return False
            return not await e.pending()

        back = await wait_until(caught_up, 120, "the restarted process to catch up")
        report(
            capsys,
            f"embedded restart: ready {ready - restarted:.1f} s after its start, caught up "
            f"(every bus group at lag 0, the outbox empty) {back - restarted:.1f} s after it",
        )
        await asyncio.sleep(1.0)  # let any duplicate that would come, come

        # every mention each watch matched counted exactly once by the detector
        state = await asyncio.to_thread(e.counted)
        for watch, ids in e.matched.items():
            c = state.get(watch, Counted())
            missing = ids - set(c.ids)
            assert not missing, (
                f"watch {watch}: {len(missing)} of its {len(ids)} mentions not in the "
                f"detector's saved state, e.g. {sorted(missing)[:5]}"
            )
            assert len(c.ids) == len(ids), (
                f"watch {watch}: its stories hold {len(c.ids)} mention ids, {len(ids)} pushed"
            )
            assert c.heat == len(ids), (
                f"watch {watch}: its stories counted {c.heat} mentions, {len(ids)} pushed"
            )

        # one crisis, one incident, at tier 3, its Signals of one generation (resumed)
        incidents, deliveries, events = await e.rows()
        assert [(i.story_id, i.tier, i.watch_id) for i in incidents] == [(ROOT_STORY, 3, "acme")]
        signals = sorted(
            ev.signal_id for ev in events if ev.signal_id and ev.incident_id == incidents[0].id
        )
        generations = {s.rpartition("#")[2].rpartition(".")[0] for s in signals}
        assert signals and len(generations) == 1, (
            f"the crisis's Signals come from {len(generations)} detector generations "
            f"(its story started afresh after the restart): {signals}"
        )

        # every alert delivered, none twice
        not_sent = [
            (d.dedupe_key, d.status, d.last_error) for d in deliveries if d.status != "sent"
        ]
        assert not not_sent, f"alerts not delivered: {not_sent}"
        received: dict[str, list[str]] = {}
        for path, body in e.receiver.requests:
            received.setdefault(path, []).append(body["alert"]["idempotency_key"])
        for path, keys in received.items():
            twice = {k for k in keys if keys.count(k) > 1}
            assert not twice, f"{path}: the same alert arrived twice: {sorted(twice)}"
        for d in deliveries:
            assert d.dedupe_key in received.get(f"/{d.channel}", []), (
                f"alert {d.dedupe_key} is marked sent but never reached /{d.channel}"
            )
        for channel in CHANNELS:  # one alert per (incident, tier, channel)
            sent = [
                (b["alert"]["incident_id"], b["alert"]["tier"])
                for b in e.receiver.on(f"/{channel}")
                if not b["alert"]["reason"].startswith("TASK ")  # playbook reminders
            ]
            assert len(sent) == len(set(sent)), (channel, sent)
        for channel in ("pr", "legal", "exec"):
            assert any(
                b["alert"]["incident_id"] == incidents[0].id and b["alert"]["tier"] == 3
                for b in e.receiver.on(f"/{channel}")
            ), f"no tier-3 alert at /{channel}"
        assert e.receiver.bad_signatures == 0
