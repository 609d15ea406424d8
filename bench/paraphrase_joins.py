"""What paraphrase joining does to a replay's stories, at several thresholds.

Takes the first ``--stories`` truth stories of a replay stream, embeds the texts of its
mentions without a parent with the shipped embedding model (as the scorer would with
``scorer.embedder: e5-embed``), and runs the detector over the stream at each
``--threshold`` (``detector.paraphrase_threshold``). The truth holds one story per repost
cascade, so any cascade that ends in a story with another one is a join the truth does
not know: sometimes the same event told twice (what the join is for), sometimes two
different claims (a false join). It prints, per threshold, the stories formed, the
cascades joined to another, and a few joined pairs of root texts to judge by eye.

    PYTHONPATH=. python bench/paraphrase_joins.py \
        --input ../shared/data/replay/twitter-train.jsonl.gz \
        --truth ../shared/data/replay/twitter-train-truth.csv \
        --config deploy/config/replay-twitter.yaml --json bench/results/paraphrase-twitter.json
"""

from __future__ import annotations

import json
import sys
import time

from api.bench import NEUTRAL, WATCH, iter_stream, load_truth
from api.settings import load_settings
from bench.benchlib import held_to_the_end, story_parser
from core.events import Mention, ScoredMention
from sentiment.config import MODELS_DIR
from sentiment.detector.config import DetectorConfig
from sentiment.detector.detector import Detector
from sentiment.embedder import SentenceEmbedder


def run(
    mentions: list[tuple[Mention, str]], vectors: dict[str, str], config: DetectorConfig
) -> tuple[int, list[list[str]]]:
    """(stories formed, the groups of truth cascades that share a story)."""
    detector = Detector(config, generation="")
    for mention, _root in mentions:
        scored = ScoredMention(
            mention=mention.model_copy(update={"watch": WATCH}),
            sentiment=NEUTRAL,
            embedding=vectors.get(mention.id),
        )
        detector.observe(scored)
    cascades_of: dict[str, set[str]] = {}
    for mention, root in mentions:
        story = detector.story_of(WATCH.id, mention.id)
        if story is not None:
            cascades_of.setdefault(story, set()).add(root)
    joined = [sorted(roots) for roots in cascades_of.values() if len(roots) > 1]
    return len(cascades_of), joined


def main(argv: list[str] | None = None) -> int:
    parser = story_parser(__doc__)
    parser.add_argument("--threshold", type=float, nargs="+", default=[0.86, 0.88, 0.9, 0.92, 0.94])
    parser.add_argument("--examples", type=int, default=5)
    args = parser.parse_args(argv)

    settings = load_settings(args.config)
    base = held_to_the_end(settings.detector)
    truth = load_truth(args.truth, args.stories)
    mentions = [(m, root) for _, m, root in iter_stream(args.input, set(truth))]
    texts = {m.id: m.text for m, _ in mentions if m.parent_id is None and m.text.strip()}
    root_text = {root: texts.get(root, "") for root in truth}
    embedder = SentenceEmbedder(
        MODELS_DIR / "e5-embed.json", min_chars=settings.scorer.embed_min_chars, workers=2
    )
    started = time.perf_counter()
    packed = embedder.embed(list(texts.values()))
    spent = time.perf_counter() - started
    vectors = {key: v for key, v in zip(texts, packed, strict=True) if v is not None}
    print(
        f"{len(truth)} truth stories, {len(mentions):,} mentions, {len(texts):,} texts "
        f"without a parent, {len(vectors):,} embedded in {spent:.1f} s "
        f"({len(texts) / max(spent, 1e-9):.0f} texts/s)",
        file=sys.stderr,
    )
    results: list[tuple[float | None, int, list[list[str]]]] = [(None, *run(mentions, {}, base))]
    for threshold in args.threshold:
        config = base.model_copy(  # one threshold for every language here
            update={"paraphrase_threshold": threshold, "paraphrase_threshold_by_lang": {}}
        )
        results.append((threshold, *run(mentions, vectors, config)))
    print(f"{'threshold':>10} {'stories':>8} {'cascades joined':>16}")
    for threshold, stories, groups in results:
        label = "off" if threshold is None else f"{threshold:.2f}"
        print(f"{label:>10} {stories:>8} {sum(len(g) for g in groups):>16}")
    for threshold, _, groups in results[1:]:
        if groups:
            print(f"\njoined at {threshold:.2f} (first {args.examples} groups):")
        for group in groups[: args.examples]:
            for root in group[:3]:
                print(f"  - {root_text.get(root, '')[:110]!r}")
            print()
    if args.json:
        joined = {root for _, _, groups in results for group in groups for root in group}
        result = {
            "input": str(args.input),
            "truth_stories": len(truth),
            "texts_embedded": len(vectors),
            "embed_texts_per_s": round(len(texts) / max(spent, 1e-9)),
            "rows": [
                {
                    "threshold": threshold,
                    "stories": stories,
                    "cascades_joined": sum(len(g) for g in groups),
                    "groups": groups,
                }
                for threshold, stories, groups in results
            ],
            "root_texts": {root: root_text[root] for root in sorted(joined)},
        }
        args.json.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
