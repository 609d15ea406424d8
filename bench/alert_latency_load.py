"""Alert latency under load: mention in -> chat HTTP call done, at 10 %, 50 % and 90 % of
the embedded pipeline's measured maximum throughput.

For each load level a fresh embedded ``Runtime`` (every role in this process, memory bus,
SQLite in a temp dir, the shipped classifier) gets a mix of

* background traffic: Twitter15/16 cascades with a distinct English tweet as each text (as
  in ``bench/pipeline_throughput.py``), on a catch-all watch that excludes the crisis
  brands, and
* ``--crises`` crisis streams (``bench/alert_latency.py``: each a complaint that spreads
  to tier 3, one watch each, alerts to five team channels by signed webhook to a local
  uvicorn receiver),

all laid over the same 8 minutes of event time (crisis dynamics are the same at every
level), and pushed into ``ListenerService.ingest`` at a steady wall rate of
``level x --max-rate`` mentions/s for about ``--seconds`` s. The background's size is what
makes the rate. Latency per alert = the delivery's ``sent_at`` (after the receiver
answered) minus the deciding mention's ``received_at`` (when ``ingest`` took it);
every first alert of an incident at a tier, on every channel.

100 % is measured first, in the same run on the same box: the same mix (``--crises``
crises, ``--measure-mentions`` mentions in all) pushed as fast as the listener takes it,
its rate counted until the last alert's HTTP call is done. (Until 2026-11-28 it was read
from ``bench/results/pipeline_throughput.json``, measured on whatever box ran that: on a
slower one "90 %" was above its capacity, and the latencies were those of a growing
queue.) ``--max-rate N`` takes N mentions/s instead; ``--max-rate committed`` the embedded
end-to-end rate of ``pipeline_throughput.json``, and says on which machine it was measured.

    PYTHONPATH=. python bench/alert_latency_load.py            # ~3 min
    PYTHONPATH=. python bench/alert_latency_load.py --quick    # ~1 min

Prints a table; writes ``bench/results/alert_latency_load.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.alert_latency import alert_latencies, alert_rows, settings, stream_for
from bench.benchlib import (
    RESULTS,
    bench_main,
    bench_parser,
    box_busy,
    check_data,
    distinct_text_stream,
    machine,
    our_cpu,
    progress,
    table,
)
from core.events import Mention

EVENT_WINDOW = timedelta(minutes=8)  # a crisis stream spans 7 minutes of event time
CRISIS_SIZE = 261  # 20 chatter + the root + 240 follow-ups


def background(n: int, start: datetime) -> list[Mention]:
    """``n`` background mentions, their event times squeezed into ``EVENT_WINDOW``."""
    if n <= 0:
        return []
    raw = distinct_text_stream(n)
    t0, t1 = raw[0].created_at, raw[-1].created_at
    span = max((t1 - t0).total_seconds(), 1.0)
    scale = EVENT_WINDOW.total_seconds() / span
    out = []
    for m in raw:
        offset = (m.created_at - t0).total_seconds() * scale
        out.append(m.model_copy(update={"created_at": start + timedelta(seconds=offset)}))
    return out


async def level(
    fraction: float, rate: float | None, args: argparse.Namespace, receiver: Any
) -> dict[str, Any]:
    """One load level: ``rate`` mentions/s for about ``--seconds`` s; None: the maximum,
    ``--measure-mentions`` pushed as fast as the listener takes them."""
    from api.runtime import Runtime
    from core.bus.memory import MemoryBus
    from listener.config import WatchConfig

    brands = [f"Brand{k:02d}" for k in range(args.crises)]
    total = args.measure_mentions if rate is None else round(rate * args.seconds)
    start = datetime.now(UTC) - timedelta(minutes=10)
    crises = [m for k, b in enumerate(brands) for m in stream_for(b, start, k)]
    noise = background(total - len(crises), start)
    merged = sorted(crises + noise, key=lambda m: m.created_at)
    with tempfile.TemporaryDirectory() as tmp:
        s = settings(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", receiver.url, brands)
        bg = WatchConfig(id="bg", match_all=True, exclude=[b.lower() for b in brands])
        listener_cfg = s.listener.model_copy(update={"watches": [*s.listener.watches, bg]})
        s = s.model_copy(update={"listener": listener_cfg})
        runtime = Runtime(s, migrate=True)
        await runtime.start()
        try:
            assert isinstance(runtime.bus, MemoryBus) and runtime.listener is not None
            runtime.classifier.classify([m.text for m in noise[:256]], ["en"] * len(noise[:256]))
            pace = "as fast as it goes" if rate is None else f"at {rate:,.0f}/s"
            progress(
                f"{fraction:.0%} load: {len(merged):,} mentions ({len(crises):,} in "
                f"{len(brands)} crises) {pace}"
            )
            cpu0, box0, t0 = our_cpu(runtime.classifier), box_busy(), time.perf_counter()
            sent = 0
            while sent < len(merged):
                due = len(merged)
                if rate is not None:
                    due = min(due, int(rate * (time.perf_counter() - t0)) + 1)
                if due <= sent:
                    await asyncio.sleep(0.005)
                    continue
                upto = min(due, sent + 200)
                await runtime.listener.ingest(merged[sent:upto])
                sent = upto
            pushed = time.perf_counter() - t0
            await runtime.bus.join()
            assert runtime.alerter is not None
            await runtime.alerter.sent()
            await runtime.alerter.deliver()
            elapsed = time.perf_counter() - t0
            cpu, box = our_cpu(runtime.classifier) - cpu0, box_busy() - box0
            rows, events = await alert_rows(runtime)
        finally:
            await runtime.stop()
    measured = alert_latencies(rows, events)
    return {
        "fraction_of_max": fraction,
        "target_rate_per_s": None if rate is None else round(rate, 1),
        "achieved_push_rate_per_s": round(len(merged) / pushed, 1),
        "end_to_end_per_s": round(len(merged) / elapsed, 1),
        "mentions": len(merged),
        "crisis_mentions": len(crises),
        "push_seconds": round(pushed, 2),
        "drained_seconds": round(elapsed, 2),
        "cores_used": round(cpu / elapsed, 2),
        "whole_box_busy_cores": round(box / elapsed, 2),
        **measured,
    }


def committed_rate() -> tuple[float, dict[str, Any]]:
    """The embedded end-to-end rate in ``pipeline_throughput.json``, and its machine."""
    path = RESULTS / "pipeline_throughput.json"
    try:
        embedded = json.loads(path.read_text())["embedded"]
        return float(embedded["end_to_end_mentions_per_s"]), dict(embedded.get("machine") or {})
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise SystemExit(
            f"--max-rate committed: no embedded result in {path} ({exc}); run "
            "bench/pipeline_throughput.py --mode embedded first, or leave --max-rate out "
            "(measured in this run)"
        ) from None


def max_rate_arg(value: str) -> float | str:
    """``--max-rate``: mentions/s (a positive number) or ``committed``."""
    if value == "committed":
        return value
    try:
        rate = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither mentions/s nor 'committed'"
        ) from None
    if not rate > 0 or rate == float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r}: mentions/s must be a positive number")
    return rate


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.support import http_receiver

    check_data()
    result: dict[str, Any] = {
        "what": "decisive mention in -> alert HTTP call done, embedded, at fractions of the "
        "measured maximum end-to-end throughput",
        "machine": machine(),
        "crises": args.crises,
        "levels": [],
    }
    async with http_receiver(lambda: datetime.now(UTC)) as receiver:
        if args.max_rate is None:
            progress("measuring the maximum: the same mix, as fast as it goes")
            top_run = await level(1.0, None, args, receiver)
            top = top_run["end_to_end_per_s"]
            result["max_rate_from"] = "measured in this run"
            result["max_run"] = top_run
        elif args.max_rate == "committed":
            top, where = committed_rate()
            result["max_rate_from"] = (
                f"pipeline_throughput.json ({where.get('cpu', '?')}, {where.get('at', '?')})"
            )
        else:
            top = float(args.max_rate)
            result["max_rate_from"] = "--max-rate"
        result["max_rate_per_s"] = top
        for fraction in args.levels:
            result["levels"].append(await level(fraction, fraction * top, args, receiver))
        result["receiver_requests"] = len(receiver.requests)
        result["bad_signatures"] = receiver.bad_signatures
    result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def render(result: dict[str, Any]) -> str:
    rows = []
    for lv in result["levels"]:
        o, up, al = (
            lv["overall"],
            lv["mention_to_incident_update"],
            lv["incident_update_to_http_done"],
        )
        rows.append(
            [
                f"{lv['fraction_of_max']:.0%}",
                lv["target_rate_per_s"],
                lv["achieved_push_rate_per_s"],
                o.get("n"),
                o.get("p50_s"),
                o.get("p90_s"),
                o.get("p99_s"),
                up.get("p99_s"),
                al.get("p99_s"),
                f"{lv['cores_used']} / {lv['whole_box_busy_cores']}",
            ]
        )
    top = result.get("max_run")
    measured = (
        ""
        if top is None
        else f" (alert p99 at that rate {top['overall'].get('p99_s')} s, {top['cores_used']} cores)"
    )
    return (
        f"alert latency, embedded, {result['crises']} crises per level; max throughput "
        f"{result['max_rate_per_s']:,.0f} mentions/s, "
        f"{result.get('max_rate_from', 'pipeline_throughput.json')}{measured}\n"
        + table(
            [
                "load",
                "target /s",
                "pushed /s",
                "alerts",
                "p50 s",
                "p90 s",
                "p99 s",
                "upstream p99 s",
                "alerting p99 s",
                "cores: ours / box",
            ],
            rows,
        )
        + "\n(upstream: mention in -> incident opened/upgraded; alerting: that -> HTTP done)"
    )


def main() -> None:
    parser = bench_parser(
        __doc__, "alert_latency_load", "6 s per level, 2 crises, the maximum from 6,000 mentions"
    )
    parser.add_argument(
        "--max-rate",
        type=max_rate_arg,
        help="mentions/s taken as 100 %%, or 'committed' (pipeline_throughput.json's "
        "embedded rate); default: measured first in this run",
    )
    parser.add_argument(
        "--measure-mentions",
        type=int,
        default=15_000,
        help="mentions (crises included) pushed to measure the maximum",
    )
    parser.add_argument("--levels", type=float, nargs="+", default=[0.1, 0.5, 0.9])
    parser.add_argument("--crises", type=int, default=3, help="crisis streams per level")
    parser.add_argument(
        "--seconds",
        type=float,
        default=12,
        help="push time per level (the data holds 49,461 distinct texts: 90 %% of 4,000/s "
        "for 12 s fits)",
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.crises, args.measure_mentions = 6, 2, 6_000
    bench_main("alert_latency_load", args, run, render)


if __name__ == "__main__":
    main()
