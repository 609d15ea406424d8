"""Reload the shipped weights and reproduce the validation numbers written in their cards.

    python -m sentiment.training.verify [--data ../shared/data/sentiment] [--models DIR]

* English: each shipped transformer's card, through the same classifier the service runs,
  on ``en-val.jsonl``: macro recall, macro F1 and accuracy must match the card within
  ``--tolerance`` (int8 kernels differ slightly between CPUs); the same for the default
  cascade against the word model's card;
* Chinese: the shipped model on all of ``zh-train.jsonl`` must match the card's
  ``zh_train_fit``; the held-out number is reproduced by refitting on the fixed 8,000-post
  split (needs scikit-learn) and compared with ``zh_heldout``; so is the character 1-3-gram
  TF-IDF + LR baseline's (``zh_heldout_baseline``), the fair comparison on the same split;
  the shipped Chinese cascade (n-gram model + ``zh-e5-l6`` where it is unsure), through the
  service's classifier, on all of ``zh-train.jsonl`` must match ``zh-e5-l6.json``'s
  ``zh_train_fit_cascade`` (its held-out numbers come from the same recipe trained on
  8,000 posts on a GPU, kept in the card; they are not rebuilt here).

Prints a table; exits 1 when a number is off. A script, not a test: it needs the data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from core.events import LABELS
from sentiment.chinese import ChineseModel
from sentiment.config import MODELS_DIR, ClassifierConfig, ScorerConfig
from sentiment.encoder import EncoderModel
from sentiment.evaluation import decide, read_jsonl, report
from sentiment.training.run import ENGLISH_MODELS, cascade_report

KEYS = ("macro_recall", "macro_f1", "accuracy")


def compare(what: str, got: dict[str, Any], want: dict[str, Any], tolerance: float) -> bool:
    ok = all(abs(float(got[k]) - float(want[k])) <= tolerance for k in KEYS)
    shown = "  ".join(f"{k} {got[k]:.4f} (card {want[k]:.4f})" for k in KEYS)
    print(f"{'ok ' if ok else 'OFF'} {what:<28} {shown}")
    return ok


def cascade_fit(models: Path, rows: list[dict[str, Any]]) -> dict[str, float]:
    """The default classifier (Chinese cascade) on ``rows``, scored as a binary set."""
    from sentiment.transformer import load_classifier

    config = ScorerConfig(classifier=ClassifierConfig(model_dir=models))
    answers = load_classifier(config).classify([r["text"] for r in rows], ["zh"] * len(rows))
    return report([r["label"] for r in rows], [decide(a.probs, True) for a in answers])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/sentiment"))
    parser.add_argument("--models", type=Path, default=MODELS_DIR)
    parser.add_argument("--tolerance", type=float, default=0.005)
    args = parser.parse_args(argv)
    ok = True

    val = read_jsonl(args.data / "en-val.jsonl")
    for name in ENGLISH_MODELS:
        card = args.models / f"{name}.json"
        model = EncoderModel(card)
        probs = model.predict_proba([r["text"] for r in val])
        labels = model.card.labels
        got = report([r["label"] for r in val], [labels[i] for i in probs.argmax(axis=1)])
        ok &= compare(f"{card.stem} en-val", got, model.card.metrics["en_val"], args.tolerance)

    cascade = cascade_report(args.models, args.data)
    words = json.loads((args.models / "en-word-ngram.json").read_text(encoding="utf-8"))
    ok &= compare("cascade en-val", cascade, words["metrics"]["cascade_en_val"], args.tolerance)

    zh_rows = read_jsonl(args.data / "zh-train.jsonl")
    shipped = ChineseModel.load(args.models / "zh-char-ngram.json")
    from sentiment.training import chinese  # the scikit-learn part only below

    fit = chinese.evaluate(shipped, zh_rows)
    ok &= compare("zh shipped, zh-train fit", fit, shipped.metrics["zh_train_fit"], 1e-4)
    train_rows, held_out = chinese.split(zh_rows)
    probe = chinese.fit(train_rows, shipped.version, {})
    held = chinese.evaluate(probe, held_out)
    ok &= compare("zh refit, held-out 2,000", held, shipped.metrics["zh_heldout"], 1e-4)
    reference = chinese.baseline(train_rows, held_out)
    want = shipped.metrics["zh_heldout_baseline"]
    ok &= compare("zh TF-IDF baseline, held-out", reference, want, 1e-4)
    encoder_card = args.models / "zh-e5-l6.json"
    if encoder_card.exists():
        got = cascade_fit(args.models, zh_rows)
        want = json.loads(encoder_card.read_text(encoding="utf-8"))["metrics"]
        ok &= compare("zh cascade, zh-train fit", got, want["zh_train_fit_cascade"], 0.002)
    print(json.dumps({"labels": list(LABELS), "all_ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
