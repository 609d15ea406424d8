"""Memory of each process after one hour of replayed traffic: is the state bounded?

**What "one hour" is here.** The Weibo CED train stream has real texts on every repost and
real cascade timing, but one brand's hour of it is small (about 100 mentions on average,
1,355 in its busiest hour). To replay a busy hour, the ``--hours`` busiest hours of the
stream (default 40, about 44,000 mentions) are stacked onto ONE hour of event time: each
mention keeps its minute and second within its hour and its text, author and cascade
(``repost_of``). That is 60 minutes of event time at ~12 mentions/s on one catch-all watch
(a brand in the middle of several crises at once), sent as fast as the pipeline takes it
(accelerated: the hour replays in a minute or two of wall time; everything that is
bounded by event time — the detector's windows, story expiry — sees the full hour).

The processes are real ``crisiswatch`` processes fed through the signed webhook
(``POST /ingest/mentions``, batches of 500) in event-time order:

* **embedded**: ``crisiswatch run`` (every role, memory bus, SQLite);
* **kafka**: a Tansu broker and ``crisiswatch listener``, ``scorer``, ``detector`` and
  ``alerter`` (the alerter on SQLite: it gets only the few signals; PostgreSQL changes
  nothing about its memory).

At 10, 30 and 60 minutes of event time the feed pauses until the pipeline has handled
everything sent so far (embedded: ``crisiswatch_mentions_scored_total`` caught up; Kafka: the
detector group's committed offsets), then records each process's VmRSS and VmHWM (peak)
from ``/proc/<pid>/status``, its CPU seconds, and the detector's
``crisiswatch_stories_active``.

    PYTHONPATH=. python bench/memory_hour.py              # both modes, ~6 min
    PYTHONPATH=. python bench/memory_hour.py --quick      # 6 stacked hours, ~2 min

Prints a table; writes ``bench/results/memory_hour.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gzip
import json
import os
import re
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.benchlib import (
    WEIBO,
    Broker,
    bench_main,
    bench_parser,
    check_data,
    child_processes,
    db_upgrade,
    free_port,
    machine,
    proc_cpu,
    proc_memory,
    progress,
    role_process,
    stop_process,
    table,
    temp_dir,
    wait_ready,
)
from bench.pipeline_throughput import Offsets
from core.events import TOPIC_SCORED

SECRET = "bench-ingest-secret-0123456789"
MARKS = (10, 30, 60, 90, 120, 150, 180)  # minutes of event time
BATCH = 500
_HOUR = re.compile(rb'"created_at":\s*"([0-9T:-]{13})')


def stacked_hour(hours: int, start: datetime, slots: int = 1) -> list[dict[str, Any]]:
    """The ``hours`` x ``slots`` busiest hours of the Weibo stream laid onto ``slots`` hours
    from ``start`` (``hours`` onto each, by rank in turn), as wire-format dicts sorted by
    their new ``created_at``."""
    counts: collections.Counter[bytes] = collections.Counter()
    with gzip.open(WEIBO, "rb") as f:
        for line in f:
            m = _HOUR.search(line)
            if m:
                counts[m.group(1)] += 1
    chosen = {h: rank % slots for rank, (h, _) in enumerate(counts.most_common(hours * slots))}
    out = []
    with gzip.open(WEIBO, "rb") as f:
        for line in f:
            m = _HOUR.search(line)
            if m is None or m.group(1) not in chosen:
                continue
            row = json.loads(line)
            at = datetime.fromisoformat(row["created_at"].replace("Z", "+00:00"))
            into = at - at.replace(minute=0, second=0, microsecond=0)
            slot = timedelta(hours=chosen[m.group(1)])
            row["created_at"] = (start + slot + into).isoformat().replace("+00:00", "Z")
            out.append(row)
    out.sort(key=lambda r: r["created_at"])
    return out


def metric_sum(text: str, name: str) -> float:
    """Sum of every sample of ``name`` in a Prometheus text page."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Setup:
    """The processes of one mode, how to feed them, and how to tell they caught up."""

    def __init__(self, mode: str, tmp: Path) -> None:
        self.mode, self.tmp = mode, tmp
        self.broker: Broker | None = None
        self.procs: dict[str, tuple[subprocess.Popen[bytes], int, Path]] = {}
        self.offsets: Offsets | None = None
        self.prefix = f"mem{uuid.uuid4().hex[:6]}."

    def config(self) -> Path:
        cfg: dict[str, Any] = {
            "log_level": "WARNING",
            "database": {"url": f"sqlite+aiosqlite:///{self.tmp / f'{self.mode}.db'}"},
            "listener": {
                "watches": [{"id": "all", "match_all": True}],
                "webhook": {"enabled": True, "secret": SECRET},
            },
        }
        if self.broker is not None:
            cfg["bus"] = {
                "kind": "kafka",
                "bootstrap_servers": self.broker.bootstrap,
                "topic_prefix": self.prefix,
                "partitions": 6,
            }
        path = self.tmp / f"{self.mode}.yaml"
        path.write_text(json.dumps(cfg))  # JSON is YAML
        return path

    async def start(self) -> None:
        roles = ["run"]
        if self.mode == "kafka":
            self.broker = Broker(self.tmp)
            roles = ["alerter", "detector", "scorer", "listener"]
        config = self.config()
        if self.mode == "kafka":
            await asyncio.to_thread(db_upgrade, config)
        for role in roles:
            port, log = free_port(), self.tmp / f"{self.mode}-{role}.log"
            self.procs[role] = (role_process(role, config, port, log), port, log)
        for proc, port, log in self.procs.values():
            await asyncio.to_thread(wait_ready, port, proc, log)
        if self.broker is not None:
            self.offsets = Offsets(
                self.broker.bootstrap, self.prefix + "detector", self.prefix + TOPIC_SCORED, 6
            )
            await self.offsets.start()

    @property
    def ingest_port(self) -> int:
        return self.procs["run" if self.mode == "embedded" else "listener"][1]

    async def metrics(self, role: str) -> str:
        port = self.procs[role][1]
        async with httpx.AsyncClient() as client:
            return (await client.get(f"http://127.0.0.1:{port}/metrics", timeout=10)).text

    async def caught_up(self, published: int, limit: float = 300) -> float:
        """Wait until the detector has handled ``published`` events; returns the wait."""
        started = time.perf_counter()
        stories = -1.0
        while time.perf_counter() - started < limit:
            if self.offsets is not None:
                if await self.offsets.done() >= published:
                    return time.perf_counter() - started
            else:  # embedded: scored everything, and the detector's story count settled
                page = await self.metrics("run")
                held = metric_sum(page, "crisiswatch_stories_active")
                if metric_sum(page, "crisiswatch_mentions_scored_total") >= published:
                    if held == stories:
                        return time.perf_counter() - started
                    stories = held
            await asyncio.sleep(0.5)
        raise SystemExit(f"{self.mode}: pipeline did not catch up within {limit:.0f} s")

    async def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for role, (proc, _, _) in self.procs.items():
            out[role] = proc_memory(proc.pid) | {"cpu_s": round(proc_cpu(proc.pid), 1)}
            for kind, child in child_processes(proc.pid).items():  # its classifier's process
                out[f"{role}: {kind}"] = proc_memory(child) | {"cpu_s": round(proc_cpu(child), 1)}
        if self.broker is not None:
            out["broker"] = proc_memory(self.broker.proc.pid) | {
                "cpu_s": round(proc_cpu(self.broker.proc.pid), 1)
            }
        page = await self.metrics("run" if self.mode == "embedded" else "detector")
        out["stories_active"] = int(metric_sum(page, "crisiswatch_stories_active"))
        return out

    async def stop(self) -> None:
        if self.offsets is not None:
            await self.offsets.stop()
        for proc, _, _ in self.procs.values():
            stop_process(proc)
        if self.broker is not None:
            self.broker.stop()


async def run_mode(
    mode: str, stream: list[dict[str, Any]], start: datetime, end_minute: int
) -> dict[str, Any]:
    from listener.webhook import signed_headers

    with temp_dir(f"cw-bench-mem-{mode}-") as tmp:
        setup = Setup(mode, Path(tmp))
        progress(f"{mode}: starting the processes")
        await setup.start()
        try:
            snapshots: dict[str, Any] = {"0": await setup.snapshot()}
            url = f"http://127.0.0.1:{setup.ingest_port}/ingest/mentions"
            published, marks = 0, [m for m in MARKS if m < end_minute]
            wall0 = time.perf_counter()
            async with httpx.AsyncClient(timeout=120) as client:
                for i in range(0, len(stream), BATCH):
                    batch = stream[i : i + BATCH]
                    minute = (
                        datetime.fromisoformat(batch[0]["created_at"].replace("Z", "+00:00"))
                        - start
                    ).total_seconds() / 60
                    while marks and minute >= marks[0]:
                        waited = await setup.caught_up(published)
                        snapshots[str(marks[0])] = await setup.snapshot() | {
                            "mentions_sent": published,
                            "wall_s": round(time.perf_counter() - wall0, 1),
                            "caught_up_wait_s": round(waited, 1),
                        }
                        progress(f"{mode}: {marks[0]} min of event time, {published:,} mentions")
                        marks.pop(0)
                    body = json.dumps({"mentions": batch}).encode()
                    headers = signed_headers(SECRET, body, datetime.now(UTC))
                    headers["content-type"] = "application/json"
                    r = await client.post(url, content=body, headers=headers)
                    r.raise_for_status()
                    published += int(r.json()["published"])
            waited = await setup.caught_up(published)
            snapshots[str(end_minute)] = await setup.snapshot() | {
                "mentions_sent": published,
                "wall_s": round(time.perf_counter() - wall0, 1),
                "caught_up_wait_s": round(waited, 1),
            }
            progress(f"{mode}: {end_minute} min of event time, {published:,} mentions")
        finally:
            await setup.stop()
    return {"mentions": published, "snapshots": snapshots}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    check_data()
    slots = args.event_hours
    start = (datetime.now(UTC) - timedelta(hours=slots + 1)).replace(
        minute=0, second=0, microsecond=0
    )
    progress(f"stacking the {args.hours * slots} busiest hours of {WEIBO.name} onto {slots} h")
    stream = stacked_hour(args.hours, start, slots)
    result: dict[str, Any] = {
        "what": "VmRSS/VmHWM per process at 10/30/60 min of event time",
        "one_hour": f"the {args.hours * slots} busiest hours of the Weibo CED train stream, "
        f"{args.hours} stacked onto each hour of {slots} h of event time: {len(stream):,} "
        "mentions, sent as fast as accepted",
        "machine": machine(),
        "modes": {},
    }
    for mode in args.modes:
        result["modes"][mode] = await run_mode(mode, stream, start, 60 * slots)
    result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def render(result: dict[str, Any]) -> str:
    rows = []
    marks: list[str] = []
    for mode, r in result["modes"].items():
        snaps = r["snapshots"]
        marks = list(snaps)
        last = snaps[marks[-1]]
        for role in [k for k in snaps["0"] if k != "stories_active"]:
            rss = [snaps[m].get(role, {}).get("VmRSS") for m in marks]
            end = last.get(role, {})
            rows.append([mode, role, *rss, end.get("VmHWM"), end.get("cpu_s")])
        held = [snaps[m]["stories_active"] for m in marks]
        rows.append([mode, "(detector: stories held)", *held, None, None])
    headers = ["mode", "process", *(f"RSS MB at {m} min" for m in marks), "peak MB", "CPU s"]
    return f"{result['one_hour']}\n" + table(headers, rows)


def main() -> None:
    parser = bench_parser(__doc__, "memory_hour", "6 stacked hours")
    parser.add_argument("--hours", type=int, default=40, help="busiest hours stacked per hour")
    parser.add_argument(
        "--event-hours", type=int, default=2, help="hours of event time (2: past the caps)"
    )
    parser.add_argument(
        "--modes", nargs="+", choices=("embedded", "kafka"), default=["embedded", "kafka"]
    )
    args = parser.parse_args()
    if args.quick:
        args.hours, args.event_hours = 6, 1
    bench_main("memory_hour", args, run, render)


if __name__ == "__main__":
    main()
