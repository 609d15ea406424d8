"""What the sensitivity presets (``detector.sensitivity``: fewer, balanced, more) do to the
alerts of a stream, every story taken as negative (the worst case: the tier is then the
spread level from 2 up), without the classifier.

By default a generated stream of small stories, as a brand's watch sees them (300
stories over 10 days, Pareto sizes: most of 2 to 5 mentions, a few hundred at most;
seeded); ``--input`` takes a replay stream or an export in the wire format instead, and
``--config`` the detector section to start from (its ``sensitivity`` is replaced)::

    PYTHONPATH=. python bench/detector_presets.py
    PYTHONPATH=. python bench/detector_presets.py --input EXPORT.jsonl --config my.yaml

Prints, per preset, the stories that reached tier 2 and tier 3 and the tier >= 2 alerts
(a story's tier rising to 2 or more).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from api.bench import WATCH, iter_stream
from api.settings import load_settings
from core.events import Author, Mention, ScoredMention, Sentiment
from sentiment.detector.config import DetectorConfig
from sentiment.detector.detector import Detector

PRESETS = ("fewer", "balanced", "more")
NEGATIVE = Sentiment(
    label="negative",
    probs={"negative": 0.9, "neutral": 0.05, "positive": 0.05},
    model="bench-fixed",
    version="0",
)
WORDS = [
    "acme",
    "charger",
    "phone",
    "store",
    "order",
    "delivery",
    "battery",
    "screen",
    "camera",
    "speaker",
    "kitchen",
    "garden",
    "office",
    "train",
    "weather",
    "music",
    "price",
    "app",
    "review",
    "friend",
    "weekend",
    "photo",
    "design",
    "color",
    "lamp",
    "chair",
    "river",
    "table",
    "window",
    "paper",
]


def generated(seed: int = 3, stories: int = 300, days: float = 10.0) -> list[Mention]:
    """Small stories of unrelated texts (no two join by text), reposts after each root."""
    rng = random.Random(seed)
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    out: list[Mention] = []
    for s in range(stories):
        start = t0 + timedelta(minutes=rng.uniform(0, days * 1440))
        size = min(int(rng.paretovariate(1.2) * 2), 3000)
        pace = rng.choice([3, 10, 30, 120, 600])  # mean minutes to a repost
        root = Mention(
            id=f"x:s{s}",
            source="x",
            text=" ".join(rng.sample(WORDS, 8)) + " refund",
            lang="en",
            created_at=start,
            author=Author(id=f"a{s}"),
        )
        out.append(root)
        for i in range(size):
            out.append(
                Mention(
                    id=f"x:s{s}-{i}",
                    source="x",
                    created_at=start + timedelta(minutes=rng.expovariate(1 / pace)),
                    author=Author(id=f"s{s}u{i}"),
                    repost_of=root.id,
                )
            )
    return sorted(out, key=lambda m: m.created_at)


def alerts(mentions: Iterable[Mention], config: DetectorConfig) -> dict[str, int]:
    detector = Detector(config)
    tier2: set[str] = set()
    tier3: set[str] = set()
    raised = 0
    last: dict[str, int] = {}
    for m in mentions:
        scored = ScoredMention(mention=m.model_copy(update={"watch": WATCH}), sentiment=NEGATIVE)
        for s in detector.observe(scored):
            if s.kind == "surge":
                continue
            if s.tier >= 2 and s.tier > last.get(s.story_root, 0):
                raised += 1
            last[s.story_root] = s.tier
            if s.tier >= 2:
                tier2.add(s.story_root)
            if s.tier >= 3:
                tier3.add(s.story_root)
    return {"stories_tier2": len(tier2), "stories_tier3": len(tier3), "tier2_alerts": raised}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--input", type=Path, help="a stream in the wire format (JSONL)")
    parser.add_argument("--config", type=Path, help="crisiswatch config (its detector)")
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args(argv)

    base = load_settings(args.config).detector
    mentions = [m for _, m, _ in iter_stream(args.input, None)] if args.input else generated()
    stories = len({m.id for m in mentions if m.parent_id is None})
    print(f"{len(mentions):,} mentions, {stories:,} roots", file=sys.stderr)
    rows = {}
    for preset in PRESETS:
        config = DetectorConfig.model_validate({**base.model_dump(), "sensitivity": preset})
        rows[preset] = alerts(mentions, config)
    print(f"{'preset':>9} {'stories at tier 2':>18} {'at tier 3':>10} {'tier>=2 alerts':>15}")
    for preset, row in rows.items():
        print(
            f"{preset:>9} {row['stories_tier2']:>18} {row['stories_tier3']:>10} "
            f"{row['tier2_alerts']:>15}"
        )
    if args.json:
        args.json.write_text(json.dumps({"input": str(args.input), "presets": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
