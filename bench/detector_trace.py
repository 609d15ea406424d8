"""Trace the detector on a replay stream: every Signal in full, and sampled decisions.

A regression check for detector speed work: the trace of a faster detector must be
byte-identical to the trace of the one before. Writes one line per Signal (its JSON) and
one line per sampled decision (``evaluate`` at 10, 30 and 60 minutes after each truth
story's t0: the whole heat snapshot), gzip-compressed, and prints its SHA-256 with the
detector's CPU rate (time inside ``Detector.observe`` only).

``--sentiment mixed`` gives each mention a deterministic pseudo-random sentiment (by a
CRC of its id: negative, neutral, positive or abstained, with varying probabilities), so
the tier, negative-share and evidence paths are traced too; ``neutral`` is what
``crisiswatch bench detection`` feeds.

    PYTHONPATH=. python bench/detector_trace.py \
        --input ../shared/data/replay/twitter-train.jsonl.gz \
        --truth ../shared/data/replay/twitter-train-truth.csv \
        --config deploy/config/replay-twitter.yaml --out /tmp/trace.gz
    PYTHONPATH=. python bench/detector_trace.py --compare /tmp/before.gz /tmp/after.gz
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import heapq
import json
import sys
import time
import zlib
from datetime import timedelta
from pathlib import Path

from api.bench import AGES_MINUTES, NEUTRAL, WATCH, iter_stream, load_truth
from api.settings import load_settings
from core.events import Label, ScoredMention, Sentiment
from sentiment.detector.detector import Detector

LABELS: tuple[Label, ...] = ("negative", "neutral", "positive")


def pseudo_sentiment(mention_id: str) -> Sentiment:
    crc = zlib.crc32(mention_id.encode())
    kind = crc % 10
    p = (crc >> 8) % 1000 / 1000
    if kind == 9:
        return Sentiment(
            label="neutral",
            probs={"negative": 0.2, "neutral": 0.6, "positive": 0.2},
            model="trace:abstain",
            version="0",
        )
    label = LABELS[0] if kind < 4 else LABELS[1] if kind < 7 else LABELS[2]
    rest = (1 - p) / 2
    probs: dict[Label, float] = {x: rest for x in LABELS}
    probs[label] = p
    return Sentiment(label=label, probs=probs, model="trace", version="0")


def trace(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    truth = load_truth(args.truth, args.stories)
    detector = Detector(settings.detector)
    due: list[tuple[object, int, str]] = []
    for r in truth.values():
        for age in AGES_MINUTES:
            due.append((r.t0 + timedelta(minutes=age), age, r.root))
    heapq.heapify(due)
    digest = hashlib.sha256()
    signals = samples = n = 0
    cpu = 0.0
    wall = 0.0
    with gzip.open(args.out, "wt", encoding="utf-8") as out:

        def write(line: str) -> None:
            digest.update(line.encode())
            out.write(line)

        def sample(until: object) -> None:
            nonlocal samples
            while due and due[0][0] <= until:  # type: ignore[operator]
                at, age, root = heapq.heappop(due)
                story = detector.story_of(WATCH.id, root)
                decision = None if story is None else detector.evaluate(WATCH.id, story, at=at)  # type: ignore[arg-type]
                write(f"sample {age} {root} {decision!r}\n")
                samples += 1

        subset = set(truth) if args.stories is not None else None
        for _line, mention, _root in iter_stream(args.input, subset):
            mention = mention.model_copy(update={"watch": WATCH})
            sentiment = NEUTRAL if args.sentiment == "neutral" else pseudo_sentiment(mention.id)
            scored = ScoredMention(mention=mention, sentiment=sentiment)
            sample(mention.created_at)
            t, c = time.perf_counter(), time.thread_time()
            emitted = detector.observe(scored)
            wall += time.perf_counter() - t
            cpu += time.thread_time() - c
            n += 1
            for s in emitted:
                write(s.model_dump_json() + "\n")
                signals += 1
        if due:
            sample(max(d[0] for d in due))  # type: ignore[type-var]
    result = {
        "trace": str(args.out),
        "sha256": digest.hexdigest(),
        "mentions": n,
        "signals": signals,
        "samples": samples,
        "detector_cpu_seconds": round(cpu, 3),
        "detector_wall_seconds": round(wall, 3),
        "mentions_per_cpu_s": round(n / cpu) if cpu else None,
        "mentions_per_wall_s": round(n / wall) if wall else None,
    }
    print(json.dumps(result))
    return 0


def compare(a: Path, b: Path) -> int:
    with gzip.open(a, "rt", encoding="utf-8") as fa, gzip.open(b, "rt", encoding="utf-8") as fb:
        for n, (la, lb) in enumerate(zip(fa, fb, strict=False), start=1):
            if la != lb:
                print(f"line {n} differs:\n  {a}: {la[:400]}\n  {b}: {lb[:400]}")
                return 1
        rest_a, rest_b = fa.read(1), fb.read(1)
        if rest_a or rest_b:
            print(f"{a if rest_a else b} is longer")
            return 1
    print(f"identical: {a} {b}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--input", type=Path)
    p.add_argument("--truth", type=Path)
    p.add_argument("--config", type=Path)
    p.add_argument("--stories", type=int)
    p.add_argument("--sentiment", choices=("neutral", "mixed"), default="neutral")
    p.add_argument("--out", type=Path)
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    args = p.parse_args()
    if args.compare:
        return compare(*args.compare)
    if not (args.input and args.truth and args.out):
        p.error("--input, --truth and --out are needed (or --compare A B)")
    return trace(args)


if __name__ == "__main__":
    sys.exit(main())
