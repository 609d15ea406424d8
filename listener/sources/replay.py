"""Replays a recorded mention stream: a .jsonl or .jsonl.gz file in the wire format.

One JSON object per line: ``{"id", "source", "text", "lang", "created_at",
"author": {"id", "followers"}, "repost_of"?, ...}`` (any ``core.events.Mention`` field).
Gzip is told by the content, not the name; a UTF-8 byte-order mark is skipped. The file
is streamed (chunks of lines read and parsed in a worker thread), never loaded whole; a
line longer than any mention (``MAX_LINE_BYTES``: a whole export as one JSON array) is
skipped a piece at a time, never held whole. A bad line is counted (``rejected``, metric
``mentions_rejected``), logged with its line number, and skipped; the replay goes on. A
file that cannot be read (missing, a truncated or corrupt gzip) is a ``SourceFatalError``.

Pacing: with ``speed`` S > 0 the event-time gaps between lines are replayed S times
faster through the injected clock (``max_gap_seconds`` shortens long quiet spells); with
``speed`` 0/None lines come as fast as they can be read. ``created_at`` is kept as
recorded (event time); the listener stamps ``received_at``.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import logging
import os
import threading
import zlib
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError

from core.clock import Clock
from core.events import Mention
from core.metrics import Metrics
from listener.config import ReplaySourceConfig
from listener.sources.base import SourceFatalError
from listener.validation import describe_errors, is_json_error

log = logging.getLogger(__name__)

_LOGGED_BAD_LINES = 20
_LOG_BAD_LINE_EVERY = 10_000


MAX_LINE_BYTES = 4 << 20
"""The longest line read as a mention: a valid one is at most about 300 KB of JSON
(``core.events``). A longer line (one JSON document of a whole export, a binary file) is
skipped as it is read, a piece at a time, never held whole."""
_SKIP_PIECE = 1 << 20


@dataclass(frozen=True)
class BadLine:
    line: int
    reason: str  # metric label: not_json | invalid | too_long
    message: str


class _Reader:
    """Blocking, line-by-line reader of a plain or gzip file; runs in a worker thread."""

    def __init__(self, path: os.PathLike[str] | str) -> None:
        self._raw: io.BufferedReader = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._stream: io.BufferedIOBase = self._raw
        if is_gzip(self._raw):  # by its content: a name can say .gz or not, wrongly
            self._stream = gzip.GzipFile(fileobj=self._raw, mode="rb")
        self.line_no = 0
        # a cancelled replay closes the file while a worker thread may still be reading it
        self._lock = threading.Lock()

    @property
    def position(self) -> int:
        """Bytes of the file on disk consumed so far (compressed bytes for .gz)."""
        return self._raw.tell()

    def read_chunk(self, max_lines: int) -> tuple[list[tuple[int, Mention | BadLine]], bool]:
        """Up to ``max_lines`` more lines parsed (blank ones skipped, with their line
        numbers), and whether the end of the file was reached."""
        out: list[tuple[int, Mention | BadLine]] = []
        with self._lock:
            for _ in range(max_lines):
                line = self._stream.readline(MAX_LINE_BYTES + 1)
                if not line:
                    return out, True
                self.line_no += 1
                if self.line_no == 1:
                    line = line.removeprefix(UTF8_BOM)  # saved by a Windows tool
                if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                    out.append((self.line_no, self._skip_long(line)))
                elif line.strip():
                    out.append((self.line_no, parse_line(self.line_no, line)))
        return out, False

    def _skip_long(self, start: bytes) -> BadLine:
        """The rest of a line longer than ``MAX_LINE_BYTES`` read and dropped."""
        size = len(start)
        while piece := self._stream.readline(_SKIP_PIECE):
            size += len(piece)
            if piece.endswith(b"\n"):
                break
        hint = (
            " (one JSON array? the input is JSONL: one mention per line)"
            if start.lstrip().startswith(b"[")
            else ""
        )
        return BadLine(
            self.line_no,
            "too_long",
            f"{size:,} bytes, longer than any mention ({MAX_LINE_BYTES:,} at most){hint}",
        )

    def close(self) -> None:
        with self._lock:
            if self._stream is not self._raw:
                self._stream.close()
            self._raw.close()


UTF8_BOM = b"\xef\xbb\xbf"
_GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(f: io.BufferedReader) -> bool:
    """Whether the file starts with gzip's magic bytes (read without consuming them)."""
    return f.peek(2)[:2] == _GZIP_MAGIC


def parse_line(line_no: int, line: bytes) -> Mention | BadLine:
    try:
        return Mention.model_validate_json(line)
    except ValidationError as exc:
        if is_json_error(exc):
            return BadLine(line_no, "not_json", f"not valid JSON: {describe_errors(exc)}")
        return BadLine(line_no, "invalid", f"not a valid mention: {describe_errors(exc)}")


class ReplaySource:
    name = "replay"

    def __init__(
        self,
        config: ReplaySourceConfig,
        clock: Clock,
        metrics: Metrics | None = None,
        *,
        chunk_lines: int = 500,
    ) -> None:
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.chunk_lines = chunk_lines
        # progress, for a CLI or the health endpoint
        self.total_bytes = 0
        self.bytes_read = 0
        self.lines_read = 0
        self.emitted = 0
        self.rejected = 0
        self.out_of_order = 0  # mentions older than one read before them
        self.loops = 0
        self.done = False
        self._stopped = False

    async def start(self) -> None:
        self._stopped = False
        try:
            self.total_bytes = os.stat(self.config.path).st_size
        except OSError as exc:
            raise SourceFatalError(
                f"replay file {self.config.path} cannot be read: {exc.strerror}"
            ) from exc

    async def stop(self) -> None:
        self._stopped = True

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def progress(self) -> float:
        """Share of the file read in the current pass, 0..1."""
        if not self.total_bytes:
            return 1.0 if self.done else 0.0
        return min(1.0, self.bytes_read / self.total_bytes)

    async def mentions(self) -> AsyncIterator[Mention]:
        # Each call replays from the start (dedup drops what an earlier call published).
        pacer = _Pacer(self.clock, self.config.speed, self.config.max_gap_seconds)
        shift = timedelta(0)
        period: timedelta | None = None
        self.done = False
        self.lines_read = self.bytes_read = self.emitted = self.rejected = self.loops = 0
        self.out_of_order = 0
        while not self._stopped:
            first: datetime | None = None
            last: datetime | None = None
            async with aclosing(self._one_pass()) as recorded:
                async for mention in recorded:
                    first = first or mention.created_at
                    if last is not None and mention.created_at < last:
                        self.out_of_order += 1  # event time runs on: its forecasts may be lost
                    last = mention.created_at if last is None else max(last, mention.created_at)
                    if self.loops:
                        mention = _relabel(mention, self.loops, shift)
                    await pacer.wait_for(mention.created_at)
                    if self.stopped:  # stop() was called while we waited
                        break
                    self.emitted += 1
                    yield mention
            limit_hit = self.config.limit is not None and self.lines_read >= self.config.limit
            if not self.config.loop or self._stopped or limit_hit or first is None:
                break
            if period is None:
                assert last is not None
                period = (last - first) + timedelta(seconds=1)
            self.loops += 1
            shift = period * self.loops
            log.info("replay of %s: starting loop %d", self.config.path, self.loops + 1)
        self.done = True
        self._report()

    async def _one_pass(self) -> AsyncGenerator[Mention, None]:
        try:
            reader = await asyncio.to_thread(_Reader, self.config.path)
        except OSError as exc:
            raise SourceFatalError(
                f"replay file {self.config.path} cannot be opened: {exc.strerror}"
            ) from exc
        limit = self.config.limit
        base = self.lines_read  # lines read by earlier loops
        try:
            while not self._stopped:
                want = self.chunk_lines
                if limit is not None:
                    want = min(want, limit - self.lines_read)
                    if want <= 0:
                        return
                try:
                    chunk, eof = await asyncio.to_thread(reader.read_chunk, want)
                except (OSError, EOFError, zlib.error) as exc:
                    raise SourceFatalError(
                        f"replay file {self.config.path} is unreadable after line "
                        f"{reader.line_no}: {type(exc).__name__}: {exc}"
                    ) from exc
                self.bytes_read = reader.position
                for line_no, item in chunk:
                    self.lines_read = base + line_no
                    if isinstance(item, BadLine):
                        self._reject(item)
                        continue
                    yield item
                self.lines_read = base + reader.line_no
                if eof:
                    return
        finally:
            await asyncio.to_thread(reader.close)

    def _reject(self, bad: BadLine) -> None:
        self.rejected += 1
        if self.metrics is not None:
            self.metrics.mentions_rejected.labels(self.name, bad.reason).inc()
        if self.rejected <= _LOGGED_BAD_LINES or self.rejected % _LOG_BAD_LINE_EVERY == 0:
            log.warning(
                "replay %s line %d rejected (%d so far): %s",
                self.config.path,
                bad.line,
                self.rejected,
                bad.message,
            )
        if self.rejected == _LOGGED_BAD_LINES:
            log.warning(
                "replay %s: further bad lines are logged every %d",
                self.config.path,
                _LOG_BAD_LINE_EVERY,
            )

    def _report(self) -> None:
        report = log.warning if self.rejected else log.info
        report(
            "replay of %s finished: %d lines read, %d mentions, %d rejected",
            self.config.path,
            self.lines_read,
            self.emitted,
            self.rejected,
        )


class _Pacer:
    """Waits so that event-time gaps pass ``speed`` times faster on the clock."""

    def __init__(self, clock: Clock, speed: float | None, max_gap: float | None) -> None:
        self.clock = clock
        self.speed = speed or 0.0
        self.max_gap = timedelta(seconds=max_gap) if max_gap else None
        self._event_anchor: datetime | None = None
        self._wall_anchor: datetime | None = None
        self._latest: datetime | None = None

    async def wait_for(self, event_time: datetime) -> None:
        if self.speed <= 0:
            return
        if self._event_anchor is None or self._wall_anchor is None or self._latest is None:
            self._event_anchor = self._latest = event_time
            self._wall_anchor = self.clock.now()
            return
        gap = event_time - self._latest
        if self.max_gap is not None and gap > self.max_gap:
            self._event_anchor += gap - self.max_gap  # skip the quiet spell
        self._latest = max(self._latest, event_time)
        due = self._wall_anchor + (event_time - self._event_anchor) / self.speed
        delay = (due - self.clock.now()).total_seconds()
        if delay > 0:
            await self.clock.sleep(delay)


_MAX_ID = 512  # Mention.id, reply_to and repost_of


def looped_id(value: str, loop: int) -> str:
    """``<id>~<loop>``, still a valid id when ``<id>`` is near the 512-character limit: the
    end of a long id gives way to a digest of all of it (distinct, and the same for the
    parent references, which go through here too)."""
    suffix = f"~{loop}"
    if len(value) + len(suffix) <= _MAX_ID:
        return value + suffix
    digest = hashlib.blake2b(value.encode(), digest_size=8).hexdigest()
    return f"{value[: _MAX_ID - len(suffix) - len(digest) - 1]}~{digest}{suffix}"


def _relabel(mention: Mention, loop: int, shift: timedelta) -> Mention:
    """A later loop's copy: distinct ids (dedup would drop them), times moved forward."""

    def rid(value: str | None) -> str | None:
        return None if value is None else looped_id(value, loop)

    return mention.model_copy(
        update={
            "id": rid(mention.id),
            "reply_to": rid(mention.reply_to),
            "repost_of": rid(mention.repost_of),
            "created_at": mention.created_at + shift,
        }
    )
