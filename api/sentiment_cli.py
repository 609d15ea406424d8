"""``crisiswatch sentiment classify | eval | train``: the sentiment model from the command line.

Formats (stable: held-out sets are run through them):

* ``classify --input IN.jsonl --output OUT.jsonl``: input lines ``{"id", "text", "lang"?}``,
  output lines ``{"id", "label", "scores": {"negative", "neutral", "positive"}}`` in input
  order (plus ``"model"``, which ends in ``:abstain`` when the language is not read);
* ``eval --input LABELLED.jsonl``: input lines ``{"id"?, "text", "lang"?, "label"}``; prints
  macro recall, macro F1, accuracy and texts/s (model time, loading excluded). A set with
  only negative/positive gold labels is binary: the larger of those two scores decides.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from core.events import Sentiment
from sentiment.config import ScorerConfig
from sentiment.evaluation import decide, is_binary, report

CHUNK = 2048


class InputError(ValueError):
    """A line of the input file is not what the command expects."""


def add_parser(sub: Any) -> None:
    s = sub.add_parser("sentiment", help="classify, evaluate or retrain the sentiment model")
    s_sub = s.add_subparsers(dest="sentiment_command", required=True, metavar="SUBCOMMAND")
    c = s_sub.add_parser("classify", help="label a JSONL file of texts")
    c.add_argument("--input", type=Path, required=True, help='lines {"id","text","lang"?}')
    c.add_argument("--output", type=Path, required=True, help="JSONL out, one line per input")
    c.add_argument("--config", type=Path, help="YAML config (scorer.classifier)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    e = s_sub.add_parser("eval", help="score the model on a labelled JSONL file")
    e.add_argument("--input", type=Path, required=True, help='lines {"text","lang"?,"label"}')
    e.add_argument("--config", type=Path, help="YAML config (scorer.classifier)")
    e.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    t = s_sub.add_parser("train", help="rebuild the shipped weights (needs the train extra)")
    t.add_argument("--data", type=Path, default=Path("../shared/data/sentiment"))
    t.add_argument("--out", type=Path, required=True, help="directory for the model files")
    t.add_argument(
        "--graphs",
        type=Path,
        help="folder of exported English graphs (finetune output) to package instead of "
        "fine-tuning (which wants a GPU)",
    )
    t.add_argument("--version", default="2026.11.1")


class Progress:
    """A one-line progress bar on stderr (redrawn at most 10 times a second)."""

    def __init__(self, total: int, out: TextIO | None, what: str) -> None:
        self.total, self.out, self.what = total, out, what
        self.started = self.last = time.monotonic()
        self.done = 0

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.out is not None and (now - self.last > 0.1 or self.done >= self.total):
            self.last = now
            share = self.done / self.total if self.total else 1.0
            bar = "#" * int(share * 30)
            rate = self.done / max(now - self.started, 1e-9)
            self.out.write(
                f"\r{self.what} [{bar:<30}] {self.done:,}/{self.total:,} {rate:,.0f} texts/s"
            )
            if self.done >= self.total:
                self.out.write("\n")
            self.out.flush()


def read_lines(path: Path, *, labelled: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{number}: not JSON ({exc.msg})") from exc
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise InputError(f'{path}:{number}: needs an object with a string "text"')
            if row.get("lang") is not None and not isinstance(row["lang"], str):
                raise InputError(f'{path}:{number}: "lang" must be a string or absent')
            if not labelled and "id" not in row:
                raise InputError(f'{path}:{number}: needs an "id"')
            if labelled and row.get("label") not in ("negative", "neutral", "positive"):
                raise InputError(f'{path}:{number}: "label" must be negative/neutral/positive')
            rows.append(row)
    return rows


def classify_rows(
    classifier: Any, rows: list[dict[str, Any]], bar: Progress
) -> Iterator[Sentiment]:
    """Sentiments in row order; identical (text, lang) pairs are classified once per chunk."""
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        keys = [(r["text"], r.get("lang")) for r in chunk]
        distinct = list(dict.fromkeys(keys))
        results = classifier.classify([k[0] for k in distinct], [k[1] for k in distinct])
        known = dict(zip(distinct, results, strict=True))
        yield from (known[k] for k in keys)
        bar.advance(len(chunk))


def _load(config: Path | None) -> Any:
    from api.settings import load_settings
    from sentiment.transformer import load_classifier

    scorer: ScorerConfig = load_settings(config).scorer
    return load_classifier(scorer)


def run(args: argparse.Namespace) -> int:
    from sentiment.errors import ModelLoadError

    try:
        if args.sentiment_command == "train":
            from sentiment.training.run import train

            return train(args.data, args.out, graphs=args.graphs, version=args.version)
        if args.sentiment_command == "classify":
            return _classify(args)
        return _eval(args)
    except (InputError, ModelLoadError, FileNotFoundError) as exc:
        print(f"crisiswatch sentiment: {exc}", file=sys.stderr)
        return 2


def _classify(args: argparse.Namespace) -> int:
    rows = read_lines(args.input, labelled=False)
    classifier = _load(args.config)
    bar = Progress(len(rows), None if args.quiet else sys.stderr, "classify")
    with args.output.open("w", encoding="utf-8") as out:
        for row, s in zip(rows, classify_rows(classifier, rows, bar), strict=True):
            line = {"id": row["id"], "label": s.label, "scores": s.probs, "model": s.model}
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
    return 0


def _eval(args: argparse.Namespace) -> int:
    rows = read_lines(args.input, labelled=True)
    classifier = _load(args.config)
    bar = Progress(len(rows), None if args.quiet else sys.stderr, "eval")
    started = time.perf_counter()
    sentiments = list(classify_rows(classifier, rows, bar))
    seconds = time.perf_counter() - started
    gold = [r["label"] for r in rows]
    binary = is_binary(gold)
    pred = [decide(s.probs, binary) for s in sentiments]
    numbers: dict[str, Any] = report(gold, pred) | {
        "n": len(rows),
        "binary": binary,
        "abstained": sum(1 for s in sentiments if s.model.endswith(":abstain")),
        "texts_per_s": round(len(rows) / max(seconds, 1e-9), 1),
        "model": f"{classifier.name} {classifier.version}",
    }
    for key, value in numbers.items():
        print(f"{key:>13}: {value}")
    if args.json is not None:
        args.json.write_text(json.dumps(numbers, indent=1) + "\n", encoding="utf-8")
    return 0
