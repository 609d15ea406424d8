"""``crisiswatch replay``: the real listener -> scorer -> detector path, in event time.

Runs over the in-process bus as fast as the machine allows and writes one JSON line per
change of a story's tier or spread level::

    {"story_root": "...", "at": "2026-01-05T00:13:02.000Z", "tier": 2, "spread": 3,
     "predicted_size": 812.0}

and one line per story that has a forecast at each of ``forecast_at`` minutes after its
first mention (10, 30 and 60 by default; ``detector.forecast_report_minutes``), stamped
1 ms before that age, with its levels unchanged and ``"forecast_minutes"`` added: the
latest line of a story at or before ``t0 + age`` holds its forecast at that age, not the
one of its last level change.

This output is how detection quality is measured: keep the format stable.

``--output -`` writes the lines to standard output as they come (the progress lines, the
log and the summary go to stderr): not atomic, so a failed replay leaves the lines before
the failure there; a reader that goes away (``| head``) stops the replay (exit 141).
``--input -`` reads standard input, plain or gzip (told by its content): it is copied to a
temporary file first (``$TMPDIR``), then replayed from there (messages name that file); so
is a pipe given by name (``<(zcat …)``, a FIFO).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gzip
import json
import shutil
import sys
import tempfile
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from pydantic import ValidationError

from api.output import OutputError, atomic_output, is_same_file, is_stdio, standard_output
from api.settings import ConfigError, InputError, Settings, format_validation_error
from core.bus.memory import MemoryBus
from core.clock import SystemClock
from core.events import TOPIC_SIGNALS, Signal
from core.metrics import Metrics
from listener.config import ReplaySourceConfig, WatchConfig
from listener.dedup import Deduplicator
from listener.service import ListenerService
from listener.sources.base import SourceFatalError
from listener.sources.replay import ReplaySource
from sentiment.classifier import Classifier
from sentiment.detector.config import DetectorConfig
from sentiment.detector.service import DetectorService
from sentiment.embedder import load_embedder
from sentiment.scorer import ScorerService
from sentiment.transformer import close_classifier, load_classifier

CATCH_ALL = WatchConfig(id="all", brand="", match_all=True)
REPLAY_GROUP = "replay-writer"
FORECAST_AT_MINUTES = (10.0, 30.0, 60.0)


JSONL_FORMAT = (
    "The input is JSONL, one mention per line as POST /ingest/mentions takes them: "
    '{"id": "<source>:<native id>", "source", "created_at" (with an offset), '
    '"text", "lang", "author": {"id", "followers"}, "repost_of"} (README, '
    '"Ingesting mentions from other systems")'
)
"""What a replay input's lines must be, for the messages about an input of no mention."""


def counted(n: int, word: str, plural: str | None = None) -> str:
    """``1 bad line``, ``2 bad lines`` (``plural``: when not ``word`` + ``s``)."""
    return f"{n:,} {word if n == 1 else plural or word + 's'}"


class ReplayError(RuntimeError):
    """The replay could not go through (an unreadable input, an output that cannot be
    created or is the input): its output was not written."""


@dataclass
class ReplaySummary:
    lines: int
    mentions: int
    rejected: int
    duplicates: int
    signals: int
    forecasts: int
    stories_tiered: int
    seconds: float
    output: Path
    out_of_order: int = 0  # mentions older than one before them in the input
    dropped: int = 0  # events a stage could not handle (dead-lettered), so not in the output
    # mentions dated far ahead of the stream that the next mention did not follow: the
    # detector counted them at the stream's time (``detector.future_tolerance_minutes``)
    future_dated: int = 0
    # what the input looks like when no line of it was a mention (``input_shape``)
    shape: str | None = None

    @property
    def rate(self) -> float:
        return self.mentions / self.seconds if self.seconds > 0 else 0.0

    def render(self) -> str:
        them, were = ("it", "was") if self.future_dated == 1 else ("them", "were")
        return (
            f"replay done: {counted(self.mentions, 'mention')} "
            f"({counted(self.rejected, 'bad line')}, {counted(self.duplicates, 'duplicate')}) "
            f"in {self.seconds:.1f} s = {self.rate:,.0f} mentions/s; "
            f"{counted(self.signals, 'change')} and {counted(self.forecasts, 'forecast')} "
            f"written to {'stdout' if is_stdio(self.output) else self.output} "
            f"({counted(self.stories_tiered, 'story', 'stories')} reached tier >= 1)"
            + (
                f"\nwarning: no line of the input is a mention ({self.rejected:,} bad), so "
                f"nothing was replayed{': ' + self.shape if self.shape else ''}. " + JSONL_FORMAT
                if self.rejected and not self.mentions
                else ""
            )
            + (
                f"\nwarning: {counted(self.dropped, 'event')} could not be handled and "
                f"{'was' if self.dropped == 1 else 'were'} dropped (the log above says why): "
                f"the output misses {'it' if self.dropped == 1 else 'them'}"
                if self.dropped
                else ""
            )
            + (
                f"\nwarning: {counted(self.out_of_order, 'mention')} came after a later one: "
                "the input is not sorted by created_at, so levels and forecasts are not what a "
                "sorted replay would give"
                + (
                    " (it looks newest first, as many exports are: reverse it, such as with "
                    "tac EXPORT.jsonl > SORTED.jsonl)"
                    if self.out_of_order >= 0.9 * (self.mentions - 1)
                    else " (sort it by time first)"
                )
                if self.out_of_order
                else ""
            )
            + (
                f"\nwarning: {counted(self.future_dated, 'mention')} dated far ahead of the "
                f"stream (a bad timestamp: the mentions after {them} were not) {were} "
                f"counted at the stream's time instead (the log above names {them})"
                if self.future_dated
                else ""
            )
        )


def _format_time(signal: Signal) -> str:
    return signal.at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def signal_line(signal: Signal) -> dict[str, Any]:
    predicted = signal.heat.predicted_size
    line: dict[str, Any] = {
        "story_root": signal.story_root,
        "at": _format_time(signal),
        "tier": signal.tier,
        "spread": signal.spread,
        "predicted_size": None if predicted is None else round(float(predicted), 1),
    }
    if signal.forecast_minutes is not None:
        line["forecast_minutes"] = signal.forecast_minutes
    return line


def with_forecast_reports(settings: Settings, minutes: Sequence[float] | None) -> Settings:
    """``settings`` whose detector reports every story's forecast (quiet stories too) at
    the ages ``minutes``; None: the config's ``forecast_report_minutes`` where it sets
    some, else ``FORECAST_AT_MINUTES``. What a replay writes and ``bench detection``
    scores. Raises ``ConfigError`` for ages the config would refuse."""
    detector = settings.detector
    if minutes is None:
        if detector.forecast_report_minutes:
            return settings
        minutes = FORECAST_AT_MINUTES
    data = detector.model_dump()
    data.update(forecast_report_minutes=sorted(set(minutes)), forecast_report_quiet=True)
    try:
        checked = DetectorConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, None)) from None
    return settings.model_copy(update={"detector": checked})


class _Writer:
    def __init__(self, out: IO[str], stop: Callable[[], Awaitable[None]]) -> None:
        self.out = out
        self.stop = stop  # stops the input: the output cannot take more
        self.count = 0
        self.forecasts = 0
        self.tiered: set[str] = set()
        self.failed: OSError | None = None

    async def handle(self, signals: list[Signal]) -> None:
        if self.failed is not None:
            return  # (the input is stopped; what is still in flight has nowhere to go)
        try:
            for signal in signals:
                self.out.write(json.dumps(signal_line(signal), ensure_ascii=False) + "\n")
                if signal.forecast_minutes is not None:
                    self.forecasts += 1
                    continue
                self.count += 1
                if signal.tier >= 1:
                    self.tiered.add(signal.story_root)
        except OSError as exc:  # a reader gone (stdout), a full disk: not worth a retry
            self.failed = exc
            await self.stop()

    def check(self, output: Path) -> None:
        """Raise what stopped the output: ``BrokenPipeError`` for a reader that went
        away (the command exits quietly with 141), ``ReplayError`` for anything else."""
        exc = self.failed
        if exc is None:
            return
        if isinstance(exc, BrokenPipeError) or exc.errno == errno.EPIPE:
            raise BrokenPipeError(errno.EPIPE, "the output's reader went away") from exc
        if is_stdio(output):  # (the lines before it are out)
            raise ReplayError(f"cannot write to stdout: {exc.strerror or exc}; stopped")
        raise ReplayError(f"cannot write {output}: {exc.strerror or exc}; no output written")


async def _progress(source: ReplaySource, writer: _Writer, started: float) -> None:
    while True:
        await asyncio.sleep(5)
        elapsed = time.monotonic() - started
        rate = source.emitted / elapsed if elapsed > 0 else 0.0
        print(
            f"replay: {source.progress:6.1%} of input, {counted(source.lines_read, 'line')}, "
            f"{rate:,.0f} mentions/s, {counted(writer.count, 'change')}, "
            f"{counted(writer.forecasts, 'forecast')}",
            file=sys.stderr,
            flush=True,
        )


async def run_replay(
    settings: Settings,
    input_path: Path,
    output_path: Path,
    *,
    limit: int | None = None,
    progress: bool = True,
    config_given: bool = False,
    classifier: Classifier | None = None,
    forecast_at: Sequence[float] | None = None,
    require_mentions: bool = False,
    shown_as: str | None = None,
) -> ReplaySummary:
    """Replay ``input_path`` and write tier/spread changes, and every story's forecast at
    the ages ``forecast_at`` (minutes; None: see ``with_forecast_reports``; empty: none),
    to ``output_path``. ``STDIO`` (``-``): standard input (copied to a temporary file
    first), standard output (written as it goes; a reader that goes away stops the
    replay with ``BrokenPipeError``). ``require_mentions``: an input of no mention at all
    (empty, or bad lines only) raises ``InputError`` and writes no output (``crisiswatch
    replay``; the benchmark's replay of a subset may hold none). ``shown_as``: what the
    messages call the input (standard input, a pipe: not the temporary copy)."""
    if is_stdio(input_path) or await asyncio.to_thread(_is_stream, input_path):
        # a pipe (``<(zcat …)``, a FIFO, /dev/stdin) cannot be read twice nor told where
        # it is: it is copied to a file first, as standard input is
        with tempfile.TemporaryDirectory(prefix="crisiswatch-replay-") as folder:
            spooled = Path(folder) / ("stdin" if is_stdio(input_path) else "input")
            await asyncio.to_thread(_spool, input_path, spooled)
            return await run_replay(
                settings,
                spooled,
                output_path,
                limit=limit,
                progress=progress,
                config_given=config_given,
                classifier=classifier,
                forecast_at=forecast_at,
                require_mentions=require_mentions,
                shown_as="standard input" if is_stdio(input_path) else str(input_path),
            )
    if not await asyncio.to_thread(input_path.exists):
        raise InputError(f"replay input {input_path} does not exist")
    if not is_stdio(output_path) and is_same_file(input_path, output_path):
        # (``crisiswatch replay`` and ``bench`` refuse it first: a flag error, exit 2)
        raise ReplayError(f"replay output {output_path} is the input: it would be overwritten")
    settings = with_forecast_reports(settings, forecast_at)
    watches = list(settings.listener.watches) if config_given else []
    listener_cfg = settings.listener.model_copy(update={"watches": watches or [CATCH_ALL]})
    # the output first: one that cannot be written fails before the model loads
    with _output(output_path) as out:
        metrics = Metrics()
        bus = MemoryBus(capacity=max(settings.bus.capacity, 2000), metrics=metrics)
        own_classifier = classifier is None
        if classifier is None:
            classifier = await asyncio.to_thread(load_classifier, settings.scorer)
        embedder = await asyncio.to_thread(load_embedder, settings.scorer)
        scorer = ScorerService(bus, classifier, settings.scorer, metrics, embedder)
        detector = DetectorService(bus, settings.detector, metrics, generation="")
        scorer.register()
        detector.register()
        source = ReplaySource(
            ReplaySourceConfig(path=input_path, speed=None, limit=limit), SystemClock(), metrics
        )
        listener = ListenerService(
            bus,
            listener_cfg,
            SystemClock(),
            metrics,
            Deduplicator(listener_cfg.dedup_capacity),
            sources=[],
        )
        started = time.monotonic()
        writer = _Writer(out, source.stop)
        bus.subscribe(TOPIC_SIGNALS, REPLAY_GROUP, writer.handle, max_batch=512)
        await bus.start()
        reporter = asyncio.create_task(_progress(source, writer, started)) if progress else None
        try:
            await source.start()
            await listener.run_source(source)
            await bus.join()
            # the end of the input: mentions the detector held back (dated far ahead,
            # waiting for the next one to tell whether time moved on) are taken in now
            await detector.settle()
            await bus.join()
        except SourceFatalError as exc:
            raise ReplayError(f"{exc}; no output written") from exc
        finally:
            if reporter is not None:
                reporter.cancel()
            await source.stop()
            await bus.stop()
            if own_classifier:
                await close_classifier(classifier)
        writer.check(output_path)
        if require_mentions and not source.emitted:  # (raised in the block: no output)
            read_to_limit = limit is not None and source.lines_read >= limit
            raise InputError(
                await asyncio.to_thread(
                    _no_mention,
                    input_path,
                    source.rejected,
                    shown_as or str(input_path),
                    limit if read_to_limit else None,
                )
            )
    duplicates = int(_counter_total(metrics, "crisiswatch_mentions_duplicate"))
    dropped = int(_counter_total(metrics, "crisiswatch_bus_dead_letters"))
    return ReplaySummary(
        lines=source.lines_read,
        mentions=source.emitted,
        rejected=source.rejected,
        duplicates=duplicates,
        signals=writer.count,
        forecasts=writer.forecasts,
        stories_tiered=len(writer.tiered),
        seconds=time.monotonic() - started,
        output=output_path,
        out_of_order=source.out_of_order,
        dropped=dropped,
        future_dated=detector.detector.future_dated,
        shape=await asyncio.to_thread(input_shape, input_path)
        if source.rejected and not source.emitted
        else None,
    )


def _no_mention(path: Path, rejected: int, shown_as: str, limit: int | None) -> str:
    """Why a replay of ``path`` (``shown_as`` in the message) read no mention: nothing in
    it, or every line bad (``limit``: only the first that many were read, ``--limit``)."""
    if not rejected:
        return f"no mention was read: replay input {shown_as} is empty; no output written"
    shape = input_shape(path)
    which = (
        f"none of the first {counted(limit, 'line')} (--limit {limit}) of replay input "
        f"{shown_as} is a mention"
        if limit is not None
        else f"every line of replay input {shown_as} is bad"
    )
    return (
        f"no mention was read: {which} "
        f"({counted(rejected, 'bad line')}, logged above){': ' + shape if shape else ''}. "
        f"{JSONL_FORMAT}; no output written"
    )


def input_shape(path: Path) -> str | None:
    """What a file none of whose lines is a mention looks like, told by its first
    non-blank line (plain or gzip): one JSON array, a CSV header; None: neither."""
    from listener.sources.replay import UTF8_BOM, is_gzip

    try:
        with path.open("rb") as raw:
            stream: IO[bytes] = raw
            if is_gzip(raw):
                stream = cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
            head = b""
            while not head.strip():
                head = stream.readline(4096)
                if not head:
                    return None
    except (OSError, EOFError, zlib.error):
        return None
    first = head.removeprefix(UTF8_BOM).strip()
    if first.startswith(b"["):
        return (
            "it is one JSON array; turn it into JSONL first, such as with "
            "jq -c '.[]' EXPORT.json > EXPORT.jsonl"
        )
    if not first.startswith(b"{") and any(sep in first for sep in (b",", b";", b"\t")):
        return (
            "its first line looks like a CSV header; write each row as a JSON mention, one per line"
        )
    return None


def _is_stream(path: Path) -> bool:
    """Whether ``path`` is a pipe or a device (not a file, not a folder)."""
    return path.exists() and not path.is_file() and not path.is_dir()


def _spool(source: Path, path: Path) -> None:
    """Copy ``source`` (standard input for ``STDIO``; bytes as they come: plain or gzip)
    to ``path``."""
    with path.open("wb") as fh:
        if is_stdio(source):
            shutil.copyfileobj(sys.stdin.buffer, fh, 1 << 20)
            return
        try:
            with source.open("rb") as stream:
                shutil.copyfileobj(stream, fh, 1 << 20)
        except OSError as exc:
            raise ReplayError(f"cannot read {source}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def _output(path: Path) -> Iterator[IO[str]]:
    """The output, as ``atomic_output`` writes it: under a temporary name, renamed to
    ``path`` once complete, so a replay that fails or is interrupted leaves no partial
    output that looks whole; and an earlier run's output is removed first, so none is
    scored as this one's. A device or a pipe (``/dev/stdout``), and standard output
    (``STDIO``, ``-``), are written as it goes."""
    if is_stdio(path):
        with standard_output() as out:
            yield out
        return
    try:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "it is a folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file():
            _remove(path)
    except OSError as exc:  # a folder, a parent that is a file, a folder not writable
        why = exc.strerror or str(exc)
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            why = f"{blocker} is a file, not a folder"
        raise ReplayError(f"cannot write {path}: {why}; nothing replayed") from None
    body_done = False
    try:
        with atomic_output(path) as out:
            yield out
            body_done = True
    except OutputError as exc:
        raise ReplayError(str(exc)) from None
    except OSError as exc:
        if not body_done:  # the replay's own error (a reader gone: BrokenPipeError)
            raise
        # the last lines written out, the file synced or renamed: a full disk, a device
        raise ReplayError(
            f"cannot write {path}: {exc.strerror or exc}; no output written"
        ) from None


def _remove(path: Path) -> None:
    """Remove an earlier run's output; a bind-mounted file (Docker ``-v file:file``), which
    cannot be removed, is emptied instead (``atomic_output`` overwrites it in place)."""
    try:
        path.unlink()
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise
        path.write_bytes(b"")


def _counter_total(metrics: Metrics, name: str) -> float:
    """The sum of a counter over all its labels."""
    return sum(
        sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == f"{name}_total"
    )
