"""How many stories a replay's cascades make when the detector gets them out of order.

Several scorers over Kafka can hand the detector a repost before its parent, or a copy
of a complaint before the complaint. This takes the first ``--stories`` truth stories of
a replay stream, displaces each mention by up to ``--shift`` places (a seeded random
delay), and counts the stories the detector ends with: in order, shuffled, and how many
folds and merges that took. The fewer stories beyond the in-order count, the better;
the truth is one story per cascade.

    PYTHONPATH=. python bench/story_order.py \
        --input ../shared/data/replay/twitter-train.jsonl.gz \
        --truth ../shared/data/replay/twitter-train-truth.csv \
        --config deploy/config/replay-twitter.yaml --json /tmp/story-order.json
"""

from __future__ import annotations

import json
import random
import sys
import time

from api.bench import NEUTRAL, WATCH, iter_stream, load_truth
from api.settings import load_settings
from bench.benchlib import held_to_the_end, story_parser
from core.events import Mention, ScoredMention
from sentiment.detector.config import DetectorConfig
from sentiment.detector.detector import Detector


def shuffled(mentions: list[Mention], shift: int, seed: int) -> list[Mention]:
    """Each mention moved later by up to ``shift`` places (a stable sort on i + delay)."""
    rng = random.Random(seed)
    keyed = [(i + rng.uniform(0, shift), i) for i in range(len(mentions))]
    return [mentions[i] for _, i in sorted(keyed)]


def count(mentions: list[Mention], config: DetectorConfig) -> dict[str, int]:
    detector = Detector(config, generation="")
    merges = 0
    for m in mentions:
        scored = ScoredMention(mention=m.model_copy(update={"watch": WATCH}), sentiment=NEUTRAL)
        merges += sum(1 for s in detector.observe(scored) if s.merged_into)
    ws = detector._watches[(WATCH.id, False)]
    by_story: dict[str, int] = {}
    for m in mentions:
        story = ws.index.story_of(m.id)
        if story is not None:
            by_story[story] = by_story.get(story, 0) + 1
    return {"stories": len(by_story), "merge_signals": merges}


def main(argv: list[str] | None = None) -> int:
    parser = story_parser(__doc__)
    parser.add_argument("--shift", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args(argv)

    config = held_to_the_end(load_settings(args.config).detector)
    truth = load_truth(args.truth, args.stories)
    mentions = [m for _, m, _ in iter_stream(args.input, set(truth))]
    print(f"{len(truth)} truth stories, {len(mentions):,} mentions", file=sys.stderr)
    rows = []
    started = time.perf_counter()
    in_order = count(mentions, config)
    rows.append({"shift": 0, **in_order})
    for shift in args.shift:
        rows.append({"shift": shift, **count(shuffled(mentions, shift, args.seed), config)})
        print(f"  shift {shift}: done ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    print(f"{'shift (places)':>14} {'stories':>8} {'beyond in order':>16} {'merges':>7}")
    for row in rows:
        beyond = row["stories"] - in_order["stories"]
        print(f"{row['shift']:>14} {row['stories']:>8} {beyond:>16} {row['merge_signals']:>7}")
    if args.json:
        result = {"input": str(args.input), "truth_stories": len(truth), "rows": rows}
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
