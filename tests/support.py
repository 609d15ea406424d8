"""Test helpers: a generated crisis stream and a real local HTTP receiver for alerts."""

from __future__ import annotations

import asyncio
import csv
import gzip
import importlib
import io
import json
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from alerts.notifiers.webhook import verify_signature
from core.clock import ManualClock
from core.events import Author, HeatFeatures, Mention, Signal, WatchMatch

RECEIVER_SECRET = "receiver-secret-0123456789"
INGEST_SECRET = "ingest-secret-0123456789"
RESPONDER_KEY = "responder-key-0123456789"
VIEWER_KEY = "viewer-key-0123456789abc"

SOURCES = ("bluesky", "mastodon", "reddit", "weibo")
NEGATIVE_TEXTS = (
    "My Acme X2 caught fire while charging, this is dangerous, Acme must recall it",
    "Same here, Acme X2 battery burning hot and smoking. Terrible, I want a refund",
    "Acme is ignoring the X2 fire reports. Worst customer service ever, refund now",
    "Acme手机充电起火，太危险了，必须召回，退款！",
)


def crisis_stream(start: datetime, *, n: int = 240, minutes: float = 6.0) -> list[Mention]:
    """A complaint about Acme and its spread: ``n`` follow-ups from ``n`` authors on four
    platforms within ``minutes`` (reposts, replies, independent posts), plus chatter."""
    root = Mention(
        id="bluesky:root-1",
        source="bluesky",
        url="https://bsky.example/root-1",
        text=NEGATIVE_TEXTS[0],
        lang="en",
        created_at=start,
        author=Author(id="victim", handle="victim", followers=1200),
    )
    out = [root]
    for i in range(n):
        at = start + timedelta(seconds=(i + 1) * minutes * 60 / n)
        source = SOURCES[i % len(SOURCES)]
        kind = i % 3
        # replies say their own thing; independent posts copy the complaint (near-duplicates)
        text = (
            NEGATIVE_TEXTS[i % len(NEGATIVE_TEXTS)]
            if kind == 1
            else (f"{NEGATIVE_TEXTS[0]} #{source}{i % 7}")
        )
        out.append(
            Mention(
                id=f"{source}:m{i}",
                source=source,
                text="" if kind == 0 else text,
                lang="zh" if "手机" in text else "en",
                created_at=at,
                author=Author(id=f"u{i}", handle=f"user{i}", followers=100 + 37 * i),
                repost_of=root.id if kind == 0 else None,
                reply_to=root.id if kind == 1 else None,
            )
        )
    return out


def chatter(start: datetime, n: int = 20) -> list[Mention]:
    return [
        Mention(
            id=f"mastodon:chat{i}",
            source="mastodon",
            text="Loving my new Acme phone, great camera" if i % 2 else "Acme event on Thursday",
            lang="en",
            created_at=start + timedelta(seconds=30 * i),
            author=Author(id=f"c{i}", followers=50),
        )
        for i in range(n)
    ]


def write_replay(
    folder: Path, mentions: list[Mention], truth: list[dict[str, object]]
) -> tuple[Path, Path]:
    """A replay stream (``stream.jsonl.gz``, in time order) and its truth CSV."""
    stream = folder / "stream.jsonl.gz"
    with gzip.open(stream, "wt", encoding="utf-8") as f:
        for m in sorted(mentions, key=lambda m: m.created_at):
            f.write(m.model_dump_json(exclude_none=True) + "\n")
    truth_path = folder / "truth.csv"
    with truth_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(truth[0]))
        writer.writeheader()
        writer.writerows(truth)
    return stream, truth_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n[faults] {line}")


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    """Poll until ``check``; returns the monotonic time it first held."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.1)
    return time.monotonic()


CHANNELS = ("cs", "pr", "marketing", "legal", "exec", "oncall")
"""The fault tests' alert channels (webhooks to a ``Receiver``, one path each)."""


def fault_alerts_config(receiver: Receiver) -> dict[str, Any]:
    """The fault tests' routing: a webhook channel per team, a rota, tier 3 escalated."""
    rota = {"start": "2026-01-01T09:00:00Z", "people": ["duty"]}
    return {
        "channels": {
            name: {"type": "webhook", "url": receiver.url(f"/{name}"), "secret": RECEIVER_SECRET}
            for name in CHANNELS
        },
        "people": {"duty": {"channels": ["oncall"]}},
        "teams": {
            "customer_service": {"channels": ["cs"], "rota": rota},
            "pr": {"channels": ["pr"], "rota": rota},
            "marketing": {"channels": ["marketing"]},
            "legal": {"channels": ["legal"], "rota": rota},
            "executives": {"channels": ["exec"], "rota": rota},
        },
        "escalation_policies": {
            "tier-3": {
                "steps": [
                    {"after": "PT10M", "notify": "on_call"},
                    {"after": "PT10M", "notify": "route"},
                ]
            }
        },
        "escalation": {1: None, 2: None, 3: "tier-3"},
        "tick_interval": 0.5,
    }


@dataclass
class Receiver:
    """What a chat channel's webhook endpoint received, verified."""

    port: int
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    bad_signatures: int = 0
    down: set[str] = field(default_factory=set)  # paths that answer 503 (an outage)
    refused: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str) -> list[dict[str, Any]]:
        return [body for p, body in self.requests if p == path]


@asynccontextmanager
async def http_receiver(now: Any) -> AsyncIterator[Receiver]:
    """A real HTTP server on 127.0.0.1 that records signed alert POSTs."""
    receiver = Receiver(port=free_port())

    async def hook(request: Request) -> JSONResponse:
        if request.url.path in receiver.down:
            receiver.refused += 1
            return JSONResponse({"error": "unavailable"}, status_code=503)
        body = await request.body()
        if not verify_signature(
            RECEIVER_SECRET,
            request.headers.get("x-crisiswatch-timestamp", ""),
            body,
            request.headers.get("x-crisiswatch-signature", ""),
            now=now().timestamp(),
        ):
            receiver.bad_signatures += 1
            return JSONResponse({"error": "bad signature"}, status_code=401)
        receiver.requests.append((request.url.path, json.loads(body)))
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/{path:path}", hook, methods=["POST"])])
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=receiver.port, log_level="warning", lifespan="off"
        )
    )
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    try:
        yield receiver
    finally:
        server.should_exit = True
        await task


def tier_signal(
    at: datetime, *, signal_id: str, story_id: str, tier: int, watch: str = "acme"
) -> Signal:
    """A detector Signal putting ``story_id`` of ``watch`` at ``tier`` (alerts tests)."""
    return Signal(
        id=signal_id,
        story_id=story_id,
        story_root="bsky:root",
        watch=WatchMatch(id=watch, brand="Acme"),
        tier=tier,
        previous_tier=0,
        spread=tier,
        heat=HeatFeatures(
            mentions=41,
            mentions_window=41,
            window_minutes=10,
            unique_authors=37,
            reach=10_000,
            negative_share=0.9,
        ),
        explanation="41 negative posts in 10 min",
        at=at,
        trigger_received_at=at,
    )


MODEL_MODULES = (
    "alerts.models",
    "alerts.acklinks",
    "alerts.templates.models",
    "alerts.workflow.models",
    "alerts.workflow.drills",
    "api.audit",
    "api.auth_lockouts",
    "api.seen_requests",
    "listener.cascade_store",
    "listener.cursors",
    "sentiment.detector.statestore",
)
"""Every module that declares tables on ``core.db.Base``."""


async def schema_diff(url: str, tables: set[str]) -> list[Any]:
    """Migrate the database at ``url``; how its ``tables`` differ from the models that
    declare them on ``Base`` (empty when the migrations build exactly those tables)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy.engine import Connection

    from core.db import Base, make_engine, upgrade_database

    for module in MODEL_MODULES:  # the whole metadata, whatever this test run imported so far
        importlib.import_module(module)  # (a foreign key to an unimported table cannot resolve)

    def diff(connection: Connection) -> list[Any]:
        def include_object(
            obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
        ) -> bool:
            # other stages' tables are checked by their own tests
            return type_ != "table" or name in tables

        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": include_object}
        )
        return list(compare_metadata(context, Base.metadata))

    engine = make_engine(url)
    try:
        await upgrade_database(engine)
        async with engine.connect() as conn:
            return await conn.run_sync(diff)
    finally:
        await engine.dispose()


def close_stdout(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Standard output as a pipe whose reader went away (every write raises
    ``BrokenPipeError``); returns the ``os.dup2`` calls made afterwards (``reader_gone``
    points stdout at the null device, so the exit's flush is quiet)."""

    class ClosedPipe(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self) -> int:
            return 1

    dup2: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "dup2", lambda a, b: dup2.append((a, b)))
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    return dup2


SOURCES_T0 = datetime(2024, 9, 9, 20, 30, tzinfo=UTC)
"""When the source tests' clocks start (the fixtures' items are dated around it)."""


class RecordingClock(ManualClock):
    """Sleeping moves time at once and is recorded (polling loops run without waiting)."""

    def __init__(self, start: datetime = SOURCES_T0) -> None:
        super().__init__(start)
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)


class OnePoll(ManualClock):
    """Ends a source's stream at its first sleep (the end of its first poll)."""

    class End(BaseException):
        pass

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)
        raise self.End
