"""``crisiswatch bench detection``: detection quality and speed on a replay with known answers.

Two passes over the same stream (``--input``, the replay wire format) scored against the
truth CSV (``--truth``: ``story_root, t0, final_size, t10_min, t50_min, t90_min, tier``):

1. **Detector alone** (model excluded): the stream is parsed up front in chunks and fed
   straight into ``Detector.observe`` with a fixed neutral sentiment; only the time inside
   ``observe`` counts.
2. **Whole replay** (``crisiswatch replay``: listener -> scorer with its classifier ->
   detector over the in-process bus); its output file is what the story-level scores are
   computed from, exactly as a held-out check would compute them. ``--detector-only``
   skips it and scores the first pass's Signals instead (spread does not depend on
   sentiment, so the spread scores are the same; the tier alerts are not measured).

A story is *called* when a line of the output first says ``spread`` 3 for its root; it is
a true call when its truth tier is 3. Its predicted size at 10, 30 and 60 minutes is the
``predicted_size`` of its root's latest line at or before ``t0`` + that age: both passes
have the detector report every story's forecast at those ages
(``detector.forecast_report_minutes``, as ``crisiswatch replay`` does by default).
``--stories N`` keeps the first N stories of the truth (by ``t0``) and their mentions:
quick runs while tuning.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import heapq
import itertools
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from pydantic import ValidationError

from api.settings import InputError, Settings
from core.events import Mention, ScoredMention, Sentiment, WatchMatch
from listener.sources.replay import UTF8_BOM, is_gzip
from listener.validation import describe_errors
from sentiment.classifier import Classifier
from sentiment.detector.detector import Detector

AGES_MINUTES = (10, 30, 60)
WATCH = WatchMatch(id="all")
NEUTRAL = Sentiment(
    label="neutral",
    probs={"negative": 0.0, "neutral": 1.0, "positive": 0.0},
    model="bench-fixed",
    version="0",
)


@dataclass(frozen=True)
class Truth:
    root: str
    t0: datetime
    final_size: int
    t10_min: float
    t50_min: float
    tier: int


@dataclass
class StoryCalls:
    """What a run said about one story root."""

    first_spread3: datetime | None = None
    max_spread: int = 0
    max_tier: int = 0
    # (at, predicted size) of every line that had one, in the order written
    sizes: list[tuple[datetime, float]] = field(default_factory=list)

    def size_at(self, at: datetime) -> float | None:
        """The predicted size of the latest line at or before ``at`` (of those written
        at the same instant, the last)."""
        best: tuple[datetime, float] | None = None
        for when, size in self.sizes:
            if when <= at and (best is None or when >= best[0]):
                best = (when, size)
        return None if best is None else best[1]


@dataclass
class RunOutput:
    calls: dict[str, StoryCalls] = field(default_factory=dict)
    tier_alerts: int = 0  # a story's tier rising to 2 or more
    last_tier: dict[str, int] = field(default_factory=dict)

    def add(
        self, root: str, at: datetime, tier: int, spread: int, predicted: float | None = None
    ) -> None:
        story = self.calls.setdefault(root, StoryCalls())
        if predicted is not None:
            story.sizes.append((at, predicted))
        if spread >= 3 and story.first_spread3 is None:
            story.first_spread3 = at
        story.max_spread = max(story.max_spread, spread)
        story.max_tier = max(story.max_tier, tier)
        if tier >= 2 and tier > self.last_tier.get(root, 0):
            self.tier_alerts += 1
        self.last_tier[root] = tier


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def load_truth(
    path: Path, stories: int | None = None, *, sizes_only: bool = False
) -> dict[str, Truth]:
    """The truth rows (the first ``stories`` by t0 when given). ``sizes_only``: only
    ``story_root``, ``t0`` and ``final_size`` are needed (the others default to unknown)."""
    if not path.exists():
        raise InputError(f"truth file {path} does not exist")
    try:
        rows = _truth_rows(path, sizes_only)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:  # a folder, not UTF-8 text
        if isinstance(exc, UnicodeDecodeError):
            reason: object = f"not UTF-8 text (byte {exc.start})"
        elif isinstance(exc, csv.Error):  # a NUL byte, a field too long: not a CSV
            reason = f"not a CSV ({exc})"
        else:
            reason = exc.strerror or exc
        raise InputError(f"cannot read truth file {path}: {reason}") from None
    rows.sort(key=lambda r: r.t0)
    if stories is not None:
        rows = rows[:stories]
    return {r.root: r for r in rows}


TRUTH_COLUMNS = ("story_root", "t0", "final_size", "t10_min", "t50_min", "tier")
"""The truth CSV's columns (comma-separated, a header line first; others are ignored):
the story's root mention id (as in the stream), its first mention (ISO 8601 with an
offset), its final number of reposts, the minutes after ``t0`` at which 10 % and 50 % of
them were reached, and its tier 1-3 (3: the stories a spread-3 call should catch).
``fit-size`` needs only the first three."""
_SIZES_COLUMNS = TRUTH_COLUMNS[:3]


def _truth_rows(path: Path, sizes_only: bool) -> list[Truth]:
    rows: list[Truth] = []
    seen: dict[str, int] = {}
    needed = _SIZES_COLUMNS if sizes_only else TRUTH_COLUMNS
    with path.open(newline="", encoding="utf-8-sig") as f:  # (a byte-order mark: Excel's)
        reader = csv.DictReader(f)
        header = ", ".join(reader.fieldnames or ()) or "none"
        for row in reader:
            n = reader.line_num
            for column in needed:
                if not (row.get(column) or "").strip():
                    raise InputError(
                        f"{path} line {n}: no {column} (the header has: {header}; a truth "
                        f"CSV is comma-separated with the columns {', '.join(needed)})"
                    )
            truth = _truth_row(path, n, row, sizes_only)
            if truth.root in seen:
                raise InputError(
                    f"{path} line {n}: story_root {truth.root!r} again (first on line "
                    f"{seen[truth.root]}): one row per story"
                )
            seen[truth.root] = n
            rows.append(truth)
    if not rows:
        raise InputError(f"{path} has no story (a header line, then one row per story)")
    return rows


def _truth_row(path: Path, n: int, row: dict[str, str], sizes_only: bool) -> Truth:
    """One row (its columns present); a bad value is named with its column.
    ``sizes_only``: the other columns are not read (unknown: NaN minutes, tier 0)."""

    def bad(column: str, what: str) -> InputError:
        return InputError(f"{path} line {n}: {column}: {row[column].strip()!r} is not {what}")

    try:
        t0 = _time(row["t0"].strip())
    except ValueError:
        raise bad("t0", "an ISO 8601 time (2026-01-05T09:00:00Z)") from None
    if t0.tzinfo is None:
        raise bad("t0", "a time with an offset (Z, +08:00): one without is not guessed")
    try:
        final_size = int(row["final_size"])
    except ValueError:
        raise bad("final_size", "a whole number of reposts") from None
    if final_size < 0:
        raise bad("final_size", "a number of reposts (0 or more)")
    minutes: dict[str, float] = {"t10_min": math.nan, "t50_min": math.nan}
    for column in () if sizes_only else ("t10_min", "t50_min"):
        value = (row.get(column) or "").strip()
        try:
            minutes[column] = float(value) if value else math.nan
        except ValueError:
            raise bad(column, "minutes after t0") from None
        if value and not (math.isfinite(minutes[column]) and minutes[column] >= 0):
            raise bad(column, "minutes after t0 (0 or more)")
    tier = 0
    if not sizes_only and (row.get("tier") or "").strip():
        try:
            tier = int(row["tier"])
        except ValueError:
            tier = -1
        if tier not in (1, 2, 3):
            raise bad("tier", "1, 2 or 3 (3: a story a spread-3 call should catch)")
    return Truth(
        root=row["story_root"].strip(),
        t0=t0,
        final_size=final_size,
        t10_min=minutes["t10_min"],
        t50_min=minutes["t50_min"],
        tier=tier,
    )


def read_replay_output(path: Path) -> RunOutput:
    """The lines ``crisiswatch replay`` wrote (``story_root, at, tier, spread,
    predicted_size``)."""
    out = RunOutput()
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                size = d.get("predicted_size")
                out.add(
                    d["story_root"],
                    _time(d["at"]),
                    int(d["tier"]),
                    int(d["spread"]),
                    None if size is None else float(size),
                )
    return out


# --------------------------------------------------------------------------- the stream


def _open(path: Path) -> BinaryIO:
    """As ``crisiswatch replay`` reads it: gzip told by the content, not the name."""
    raw = path.open("rb")
    if is_gzip(raw):
        raw.close()
        return cast(BinaryIO, gzip.open(path, "rb"))
    return raw


def iter_stream(path: Path, roots: set[str] | None) -> Iterator[tuple[bytes, Mention, str]]:
    """(raw line, mention, story root) of the stream; only the given roots' cascades
    when ``roots`` is not None. A mention's root follows its ``repost_of``/``reply_to``
    chain (its own id when it has no known parent)."""
    root_of: dict[str, str] = {}
    n = 0
    try:
        with _open(path) as f:
            for n, line in enumerate(f, start=1):
                if n == 1:
                    line = line.removeprefix(UTF8_BOM)
                if not line.strip():
                    continue
                try:
                    m = Mention.model_validate_json(line)
                except ValidationError as exc:
                    raise InputError(_not_a_mention(path, n, exc)) from None
                parent = m.parent_id
                root = root_of.get(parent, parent) if parent is not None else m.id
                root_of[m.id] = root
                if roots is None or root in roots:
                    yield line, m, root
    except (OSError, EOFError) as exc:  # a folder, a truncated or corrupt gzip
        raise InputError(
            f"cannot read {path}"
            + (f" after line {n}" if n else "")
            + f": {getattr(exc, 'strerror', None) or exc or type(exc).__name__}"
        ) from None


def _not_a_mention(path: Path, n: int, exc: ValidationError) -> str:
    """Why line ``n`` is refused, as the replay logs it; on line 1, what the file looks
    like when it is not JSONL (one JSON array, a CSV)."""
    from api.replay import input_shape

    shape = input_shape(path) if n == 1 else None
    return f"{path} line {n}: not a mention ({describe_errors(exc)})" + (
        f": {shape}" if shape else ""
    )


# --------------------------------------------------------------------------- pass 1


@dataclass
class DetectorPass:
    mentions: int
    seconds: float  # wall time inside the detector
    cpu_seconds: float  # CPU time of this thread inside the detector (robust on a busy box)
    output: RunOutput
    first_at: datetime | None
    last_at: datetime | None
    stories_held_max: int
    roots_seen: set[str] = field(default_factory=set)  # truth roots the stream has
    out_of_order: int = 0  # mentions older than one before them in the stream

    @property
    def rate(self) -> float:
        return self.mentions / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_rate(self) -> float:
        return self.mentions / self.cpu_seconds if self.cpu_seconds > 0 else 0.0


@dataclass
class SizeInputs:
    """What a detector pass takes for fitting a size model: at each of ``ages``
    (minutes after a story's first mention), (mentions, features) per story root."""

    ages: tuple[float, ...]
    taken: dict[tuple[str, float], tuple[int, list[float]]] = field(default_factory=dict)


def run_detector_pass(
    settings: Settings,
    stream: Path,
    truth: dict[str, Truth],
    *,
    subset: bool,
    progress: bool = True,
    copy_to: IO[bytes] | None = None,
    size_inputs: SizeInputs | None = None,
) -> DetectorPass:
    """``size_inputs``: also take every story's size-model inputs at its ages."""
    from api.replay import with_forecast_reports

    detector = Detector(with_forecast_reports(settings, AGES_MINUTES).detector)
    out = RunOutput()
    due: list[tuple[datetime, float, str]] = []
    for r in truth.values():
        for age in size_inputs.ages if size_inputs else ():
            due.append((r.t0 + timedelta(minutes=age), age, r.root))
    heapq.heapify(due)
    spent = 0.0
    n = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    held_max = 0
    started = last_report = time.monotonic()

    def sample(until: datetime) -> None:
        while due and due[0][0] <= until:
            at, age, root = heapq.heappop(due)
            story = detector.story_of(WATCH.id, root)
            if story is None:
                continue
            if size_inputs is not None:
                got = detector.size_inputs(WATCH.id, story, at)
                if got is not None:
                    size_inputs.taken[(root, age)] = got

    perf, cpu = time.perf_counter, time.thread_time
    spent_cpu = 0.0
    roots_seen: set[str] = set()
    out_of_order = 0
    lines = iter_stream(stream, set(truth) if subset else None)
    # decoded a batch at a time (``detector.max_batch``), as the detector stage takes
    # them from the bus, and then observed: the detector's time is its own, not that of
    # a parse between each two of its mentions
    observe = detector.observe
    while batch := list(itertools.islice(lines, settings.detector.max_batch)):
        taken = _scored(batch)
        if not due:
            # nothing to sample between two mentions: the batch is observed in one go and
            # timed once (a clock read per mention would cost about 2 % of the detector)
            t, c = perf(), cpu()
            answers = [observe(scored) for _, scored, _ in taken]
            spent += perf() - t
            spent_cpu += cpu() - c
        else:
            answers = []
            for _, scored, _ in taken:
                sample(scored.mention.created_at)
                t, c = perf(), cpu()
                answers.append(observe(scored))
                spent += perf() - t
                spent_cpu += cpu() - c
        for (line, scored, root), signals in zip(taken, answers, strict=True):
            mention = scored.mention
            if root in truth:
                roots_seen.add(root)
            if last_at is not None and mention.created_at < last_at:
                out_of_order += 1
            if copy_to is not None:
                copy_to.write(line if line.endswith(b"\n") else line + b"\n")
            n += 1
            for s in signals:
                out.add(s.story_root, s.at, s.tier, s.spread, s.heat.predicted_size)
            first_at = first_at or mention.created_at
            last_at = mention.created_at if last_at is None else max(last_at, mention.created_at)
            if n % 1000 == 0:
                held_max = max(held_max, detector.stories_active)
                if progress and time.monotonic() - last_report >= 5:
                    last_report = time.monotonic()
                    print(
                        f"bench: detector pass {n:,} mentions, "
                        f"{n / spent if spent else 0:,.0f} mentions/s in the detector, "
                        f"{time.monotonic() - started:.0f} s",
                        file=sys.stderr,
                        flush=True,
                    )
    for key in detector.holding():  # the end of the input: what waits is taken in
        for s in detector.settle(key):
            out.add(s.story_root, s.at, s.tier, s.spread, s.heat.predicted_size)
    if last_at is not None:
        sample(last_at + timedelta(days=365))
    held_max = max(held_max, detector.stories_active)  # (a stream under 1,000 mentions)
    return DetectorPass(
        n, spent, spent_cpu, out, first_at, last_at, held_max, roots_seen, out_of_order
    )


# --------------------------------------------------------------------------- scores


def _scored(
    batch: list[tuple[bytes, Mention, str]],
) -> list[tuple[bytes, ScoredMention, str]]:
    """A batch of the stream as the detector takes it: each mention of the bench's one
    watch, scored neutral (the first pass measures spread, not sentiment)."""
    return [
        (line, ScoredMention(mention=m.model_copy(update={"watch": WATCH}), sentiment=NEUTRAL), r)
        for line, m, r in batch
    ]


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def score(truth: dict[str, Truth], output: RunOutput, days: float) -> dict[str, Any]:
    tp = fp = fn = 0
    leads: list[float] = []
    before_t50 = before_t10 = 0
    confusion = {str(t): {str(s): 0 for s in range(4)} for t in (1, 2, 3)}
    for root, r in truth.items():
        calls = output.calls.get(root, StoryCalls())
        confusion[str(r.tier)][str(calls.max_spread)] += 1
        called = calls.first_spread3
        if r.tier == 3:
            if called is None:
                fn += 1
                continue
            tp += 1
            lead = (r.t0 + timedelta(minutes=r.t50_min) - called).total_seconds() / 60
            leads.append(lead)
            before_t50 += lead > 0
            before_t10 += called < r.t0 + timedelta(minutes=r.t10_min)
        elif called is not None:
            fp += 1
    unmatched = sum(1 for root, c in output.calls.items() if root not in truth and c.first_spread3)
    precision = _share(tp, tp + fp)
    recall = _share(tp, tp + fn)
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision is not None and recall is not None and precision + recall > 0
        else None
    )
    errors: dict[str, Any] = {}
    for age in AGES_MINUTES:
        rel: list[float] = []
        big: list[float] = []
        unpredicted = 0
        for root, r in truth.items():
            if r.final_size <= 0:
                continue
            told = output.calls.get(root)
            p = None if told is None else told.size_at(r.t0 + timedelta(minutes=age))
            if p is None:
                unpredicted += 1
                continue
            # predicted_size counts the root, final_size its reposts
            rel.append(abs(max(p - 1.0, 0.0) - r.final_size) / r.final_size)
            if r.tier == 3:
                big.append(rel[-1])
        errors[str(age)] = {
            "median_relative_error": _median(rel),
            "stories_predicted": len(rel),
            "stories_without_prediction": unpredicted,
            "median_relative_error_tier3": _median(big),
        }
    tier3 = tp + fn
    n_calls = tp + fp
    return {
        "stories": len(truth),
        "tier3_stories": tier3,
        "spread3": {
            "true_calls": tp,
            "false_calls": fp,
            "missed": fn,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "calls_on_unknown_roots": unmatched,
        },
        "confusion_truth_tier_by_max_spread": confusion,
        "lead_minutes_before_t50": {
            "median": _median(leads),
            "share_of_tier3_before_t50": _share(before_t50, tier3),
            "share_of_tier3_before_t10": _share(before_t10, tier3),
        },
        "false_spread3_calls_per_100_stories": 100 * fp / len(truth) if truth else None,
        "spread3_calls_per_day": n_calls / days if days > 0 else None,
        "tier_alerts_per_day": output.tier_alerts / days if days > 0 else None,
        "predicted_size": errors,
    }


# --------------------------------------------------------------------------- command


def _fmt(value: Any, spec: str = ".3f") -> str:
    if value is None:
        return "-"
    return format(value, spec) if isinstance(value, float) else str(value)


def render(result: dict[str, Any]) -> str:
    s = result["scores"]
    sp = s["spread3"]
    lead = s["lead_minutes_before_t50"]
    lines = [
        f"stories {s['stories']:,} (tier 3: {s['tier3_stories']:,}"
        + (
            f"; {result['truth_stories_not_in_input']:,} not in the input"
            if result.get("truth_stories_not_in_input")
            else ""
        )
        + f"); {result['mentions']:,} mentions over {result['days']:.1f} days",
        f"spread-3 calls vs tier 3   P {_fmt(sp['precision'])}  R {_fmt(sp['recall'])}  "
        f"F1 {_fmt(sp['f1'])}  (TP {sp['true_calls']}, FP {sp['false_calls']}, "
        f"FN {sp['missed']})",
        f"lead before T50            median {_fmt(lead['median'], '.1f')} min; "
        f"tier-3 called before T50 {_fmt(lead['share_of_tier3_before_t50'], '.0%')}, "
        f"before T10 {_fmt(lead['share_of_tier3_before_t10'], '.0%')}",
        f"false spread-3 calls       {_fmt(s['false_spread3_calls_per_100_stories'], '.2f')}"
        f" per 100 stories; spread-3 calls/day {_fmt(s['spread3_calls_per_day'], '.2f')}; "
        f"tier>=2 alerts/day {_fmt(s['tier_alerts_per_day'], '.2f')}",
    ]
    for age, e in s["predicted_size"].items():
        lines.append(
            f"predicted size at {age:>2} min  median rel. error "
            f"{_fmt(e['median_relative_error'], '.1%')} ({e['stories_predicted']:,} stories, "
            f"{e['stories_without_prediction']:,} without; "
            f"tier 3: {_fmt(e['median_relative_error_tier3'], '.1%')})"
        )
    lines.append("confusion (rows: truth tier; columns: max spread 0 1 2 3)")
    for tier, row in s["confusion_truth_tier_by_max_spread"].items():
        lines.append(f"  tier {tier}: " + " ".join(f"{row[str(c)]:>6}" for c in range(4)))
    t = result["throughput"]
    lines.append(
        f"throughput: detector alone {_fmt(t['detector_mentions_per_s'], ',.0f')} mentions/s"
        f" wall, {_fmt(t['detector_mentions_per_cpu_s'], ',.0f')} per CPU second (one core, "
        f"model excluded); whole replay "
        f"{_fmt(t['replay_mentions_per_s'], ',.0f')} mentions/s; "
        f"stories held at most {t['stories_held_max']:,}"
    )
    return "\n".join(lines)


def bench_detection(
    settings: Settings,
    stream: Path,
    truth_path: Path,
    *,
    stories: int | None = None,
    detector_only: bool = False,
    replay_output: Path | None = None,
    progress: bool = True,
    config_given: bool = False,
    classifier: Classifier | None = None,
) -> dict[str, Any]:
    """Both passes (see the module docstring) and their scores, as a JSON-able dict."""
    if not stream.exists():
        raise InputError(f"bench input {stream} does not exist")
    truth = load_truth(truth_path, stories)
    subset = stories is not None
    with tempfile.TemporaryDirectory(prefix="crisiswatch-bench-") as tmp:
        replay_input = stream
        copy: IO[bytes] | None = None
        if subset and not detector_only:
            replay_input = Path(tmp) / "subset.jsonl"
            copy = replay_input.open("wb")
        try:
            first = run_detector_pass(
                settings, stream, truth, subset=subset, progress=progress, copy_to=copy
            )
        finally:
            if copy is not None:
                copy.close()
        starts = [r.t0 for r in truth.values()]
        # the stories' arrival span (a few late reposts years on do not stretch the month)
        days = (max(starts) - min(starts)).total_seconds() / 86400 if starts else 0.0
        replay_rate: float | None = None
        output = first.output
        if not detector_only:
            from api.replay import run_replay

            out_path = replay_output or Path(tmp) / "replay.jsonl"
            summary = asyncio.run(
                run_replay(
                    settings,
                    replay_input,
                    out_path,
                    progress=progress,
                    config_given=config_given,
                    classifier=classifier,
                    # the ages scored, whatever the config reports at (as the first pass)
                    forecast_at=AGES_MINUTES,
                )
            )
            replay_rate = summary.rate
            output = read_replay_output(out_path)
    missing = len(truth) - len(first.roots_seen)
    if missing:
        print(
            f"bench: warning: {missing:,} of the {len(truth):,} truth stories have no mention "
            "in the input (story_root must be the id of the story's first mention in the "
            "stream, such as weibo:4875123): they count as never called",
            file=sys.stderr,
        )
    if first.out_of_order:
        print(
            f"bench: warning: {first.out_of_order:,} mentions came after a later one: the "
            "input is not sorted by created_at, so the calls and forecasts are not what a "
            "sorted stream would give",
            file=sys.stderr,
        )
    scores = score(truth, output, days)
    if detector_only:  # the first pass's sentiment is fixed (neutral): no tier is measured
        scores["tier_alerts_per_day"] = None
    return {
        "input": str(stream),
        "truth": str(truth_path),
        "stories_option": stories,
        "scored_from": "detector pass" if detector_only else "replay output",
        "mentions": first.mentions,
        "days": days,
        "truth_stories_not_in_input": missing,
        "mentions_out_of_order": first.out_of_order,
        "scores": scores,
        "throughput": {
            "detector_mentions_per_s": first.rate,
            "detector_mentions_per_cpu_s": first.cpu_rate,
            "detector_seconds": first.seconds,
            "replay_mentions_per_s": replay_rate,
            "stories_held_max": first.stories_held_max,
        },
    }
