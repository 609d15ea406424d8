"""Scores of a labelled set: macro recall, macro F1 and accuracy (no third-party code).

A set whose gold labels are only ``negative`` / ``positive`` is **binary**: the prediction
is then the larger of the negative and positive probabilities (neutral is not an answer
there), and the metrics are over those two classes.

An abstention (a language neither model reads: the label is a prior, not an opinion) is no
answer, so it counts as wrong in either kind of set (:func:`judge`); so is an empty text in
a binary set (its answer, neutral, is not one of the two there). In a three-class set the
neutral answer to an empty text is a real answer: no opinion is expressed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from core.events import LABELS, Label

NO_ANSWER = "(no answer)"
"""What :func:`judge` scores for a text without an answer: equal to no gold label, so
always wrong."""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8-sig") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def is_binary(gold: Sequence[str]) -> bool:
    return bool(gold) and set(gold) <= {"negative", "positive"}


def decide(probs: Mapping[Label, float], binary: bool) -> str:
    if binary:
        return "positive" if probs["positive"] > probs["negative"] else "negative"
    return max(LABELS, key=lambda k: probs[k])


def judge(probs: Mapping[Label, float], binary: bool, *, abstained: bool, empty: bool) -> str:
    """The prediction scored for one text: :data:`NO_ANSWER` for an abstention, and for an
    empty text in a binary set; else :func:`decide`."""
    if abstained or (binary and empty):
        return NO_ANSWER
    return decide(probs, binary)


def report(gold: Sequence[str], pred: Sequence[str]) -> dict[str, float]:
    """macro_recall, macro_f1 and accuracy over the classes present in ``gold``."""
    if len(gold) != len(pred) or not gold:
        raise ValueError("need as many predictions as gold labels, at least one")
    classes = sorted(set(gold))
    recalls, f1s = [], []
    for k in classes:
        tp = sum(1 for g, p in zip(gold, pred, strict=True) if g == k and p == k)
        n_gold = sum(1 for g in gold if g == k)
        n_pred = sum(1 for p in pred if p == k)
        recall = tp / n_gold
        precision = tp / n_pred if n_pred else 0.0
        recalls.append(recall)
        f1s.append(2 * precision * recall / (precision + recall) if tp else 0.0)
    accuracy = sum(1 for g, p in zip(gold, pred, strict=True) if g == p) / len(gold)
    return {
        "macro_recall": round(sum(recalls) / len(classes), 4),
        "macro_f1": round(sum(f1s) / len(classes), 4),
        "accuracy": round(accuracy, 4),
    }


binary_report = report
