"""``crisiswatch backfill``: recent history for a watch, written as a mention stream.

The output is JSONL in the wire format, oldest first: give it to ``crisiswatch replay``
for a backtest, or POST it to a running instance's ``/ingest/mentions`` so the new watch
starts with a baseline.

The output is written under a temporary name beside it and renamed when the backfill
ends: one interrupted (Ctrl-C) or failing leaves an earlier output as it was, never a
half-written file. A folder that cannot take it is refused before any search. The report
(what was fetched, kept, repeated, dropped and why) goes to stderr; a backfill some of
whose searches failed writes what the others found, then raises ``BackfillError``.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import httpx

from api.settings import Settings
from core.clock import Clock, SystemClock
from core.metrics import Metrics
from listener.backfill import BackfillReport, Searchable, backfill, watch_queries
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


_shown = [0]  # the length of the bar's line on the screen


def _bar(done: int, total: int, what: str) -> None:
    width = 24
    filled = width * done // max(total, 1)
    line = f"backfill [{'#' * filled}{'-' * (width - filled)}] {done}/{total} {what}"
    print(
        f"\r{line.ljust(_shown[0])}",  # (spaces over the end of a longer line before)
        end="\n" if done == total else "",
        file=sys.stderr,
        flush=True,
    )
    _shown[0] = 0 if done == total else len(line)


async def run_backfill(
    settings: Settings,
    watch_id: str,
    since: timedelta,
    output: Path,
    *,
    http: httpx.AsyncClient | None = None,
    progress: bool = True,
    clock: Clock | None = None,
) -> int:
    """Write the watch's recent mentions to ``output``; returns how many. The report goes
    to stderr; ``BackfillError`` when the request cannot be served or a search failed
    (the mentions the others found are written first)."""
    watch = next((w for w in settings.listener.watches if w.id == watch_id), None)
    if watch is None:
        known = ", ".join(w.id for w in settings.listener.watches) or "none"
        raise BackfillError(f"no watch {watch_id!r} in the config (watches: {known})")
    if not watch_queries(watch):  # match_all with neither terms nor brand
        raise BackfillError(
            f"watch {watch_id!r} has no terms or brand to search for: a backfill asks the "
            "sources' search for them"
        )
    clock = clock or SystemClock()
    own = http is None
    client = http or httpx.AsyncClient(timeout=httpx.Timeout(30.0))
    report = BackfillReport()
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
        with _Replacing(output) as out:  # before searching: a bad --output fails now
            mentions = await backfill(
                searchable,
                watch,
                clock.now() - since,
                _bar if progress else None,
                report=report,
                clock=clock,
            )
            for mention in mentions:
                out.write(mention.model_dump_json(exclude_none=True) + "\n")
    finally:
        if own:
            await client.aclose()
    for line in report.lines():
        print(f"backfill: {line}", file=sys.stderr)
    if not report.complete:
        raise BackfillError(
            f"incomplete: {len(report.failed)} of {report.searches} searches failed (above); "
            f"{output} holds the {len(mentions)} mentions the others found: run it again "
            "to complete it (dedup drops what both runs find)"
        )
    return len(mentions)


class _Replacing:
    """A text file written under a temporary name beside ``path``, renamed to ``path``
    when the block ends without an error, removed otherwise."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> _Replacing:
        if self.path.is_dir():
            raise BackfillError(f"--output {self.path}: is a folder")
        self.direct = self.path.exists() and not self.path.is_file()
        if self.direct:  # /dev/stdout, a named pipe: written as they are, not renamed
            try:
                self.file = self.path.open("w", encoding="utf-8")
            except OSError as exc:
                raise BackfillError(
                    f"--output {self.path}: cannot write there ({exc.strerror})"
                ) from None
            return self
        try:
            fd, name = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".part", dir=self.path.parent
            )
        except OSError as exc:
            raise BackfillError(
                f"--output {self.path}: cannot write there ({exc.strerror})"
            ) from None
        self.temp = Path(name)
        self.file = os.fdopen(fd, "w", encoding="utf-8")
        return self

    def write(self, text: str) -> None:
        self.file.write(text)

    def __exit__(self, kind: type[BaseException] | None, error: object, _: object) -> None:
        try:
            self.file.close()
            if kind is None and not self.direct:
                umask = os.umask(0)
                os.umask(umask)
                self.temp.chmod(0o666 & ~umask)  # as open() would have made it
                os.replace(self.temp, self.path)
        except OSError as exc:
            if kind is None:
                raise BackfillError(
                    f"--output {self.path}: cannot write it ({exc.strerror})"
                ) from None
        finally:
            if not self.direct:
                self.temp.unlink(missing_ok=True)
        if isinstance(error, OSError):  # a full disk, a write refused
            raise BackfillError(
                f"--output {self.path}: cannot write it ({error.strerror})"
            ) from None
