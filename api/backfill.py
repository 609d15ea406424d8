"""``crisiswatch backfill``: recent history for a watch, written as a mention stream.

The output is JSONL in the wire format, oldest first: give it to ``crisiswatch replay``
for a backtest, or POST it to a running instance's ``/ingest/mentions`` so the new watch
starts with a baseline.
"""

from __future__ import annotations

import re
import sys
from datetime import timedelta
from pathlib import Path

import httpx

from api.settings import Settings
from core.clock import SystemClock
from core.metrics import Metrics
from listener.backfill import Searchable, backfill
from listener.cursors import MemoryCursorStore
from listener.sources.registry import build_sources

_DURATION = re.compile(r"^(\d+)([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
_MINUTES = {"m": 1, "h": 60, "d": 24 * 60}
MAX_SINCE_DAYS = 3650
"""How far back a backfill may reach (10 years: more than any source keeps searchable)."""


class BackfillError(ValueError):
    """The request cannot be served (unknown watch, no searchable source, bad duration)."""


def parse_duration(value: str) -> timedelta:
    """``90m``, ``24h``, ``7d``: more than nothing, at most ``MAX_SINCE_DAYS`` days."""
    match = _DURATION.match(value.strip())
    if not match:
        raise BackfillError(f"--since {value!r}: use a number and m, h or d (90m, 24h, 7d)")
    digits, unit = match.group(1).lstrip("0") or "0", match.group(2)
    most = MAX_SINCE_DAYS * _MINUTES["d"]
    # the length first: int() refuses thousands of digits, and timedelta() overflows
    if len(digits) > 12 or not 0 < int(digits) * _MINUTES[unit] <= most:
        raise BackfillError(f"--since {value!r}: more than 0, at most {MAX_SINCE_DAYS}d")
    return timedelta(**{_UNITS[unit]: int(digits)})


def _bar(done: int, total: int, what: str) -> None:
    width = 24
    filled = width * done // max(total, 1)
    print(
        f"\rbackfill [{'#' * filled}{'-' * (width - filled)}] {done}/{total} {what}",
        end="\n" if done == total else "",
        file=sys.stderr,
        flush=True,
    )


async def run_backfill(
    settings: Settings,
    watch_id: str,
    since: timedelta,
    output: Path,
    *,
    http: httpx.AsyncClient | None = None,
    progress: bool = True,
) -> int:
    """Write the watch's recent mentions to ``output``; returns how many."""
    watch = next((w for w in settings.listener.watches if w.id == watch_id), None)
    if watch is None:
        known = ", ".join(w.id for w in settings.listener.watches) or "none"
        raise BackfillError(f"no watch {watch_id!r} in the config (watches: {known})")
    clock = SystemClock()
    own = http is None
    client = http or httpx.AsyncClient(timeout=httpx.Timeout(30.0))
    try:
        built = build_sources(
            settings.listener.sources.model_copy(update={"replay": None, "demo": None}),
            clock,
            Metrics(),
            http=client,
            cursors=MemoryCursorStore(),
        )
        searchable = [s for s in built if isinstance(s, Searchable)]
        if not searchable:
            raise BackfillError(
                "no configured source can search: configure listener.sources.hackernews "
                "or listener.sources.reddit"
            )
        mentions = await backfill(
            searchable, watch, clock.now() - since, _bar if progress else None
        )
    finally:
        if own:
            await client.aclose()
    with output.open("w", encoding="utf-8") as out:
        for mention in mentions:
            out.write(mention.model_dump_json(exclude_none=True) + "\n")
    return len(mentions)
