"""Scores of a labelled set: macro recall, macro F1 and accuracy (no third-party code).

Gold labels are read however a set spells them (:func:`gold_label`: ``"Negative"``,
``"neg"``, TweetEval's 0/1/2, a Weibo set's 0/1, by :func:`numeric_scheme`).

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
import re
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


_SPELLINGS: dict[Label, tuple[str, ...]] = {
    "negative": ("negative", "neg", "负面", "负向", "消极", "负"),
    "neutral": ("neutral", "neu", "objective", "objective-or-neutral", "中性", "中立"),
    "positive": ("positive", "pos", "正面", "正向", "积极", "正"),
}
_NAMES: dict[str, Label] = {name: label for label, names in _SPELLINGS.items() for name in names}
"""Gold label names, lower case, as labelled sets spell them (SemEval's ``objective`` is
its neutral class; Chinese sets' 正面/负面/中性, 积极/消极)."""

NUMERIC_SCHEMES: tuple[tuple[str, dict[int, Label]], ...] = (
    ("0 negative, 1 neutral, 2 positive (TweetEval)", {0: "negative", 1: "neutral", 2: "positive"}),
    ("-1 negative, 0 neutral, 1 positive", {-1: "negative", 0: "neutral", 1: "positive"}),
    ("0 negative, 1 positive (a binary set: Weibo, ChnSentiCorp)", {0: "negative", 1: "positive"}),
)
"""How a set labelled with numbers is read, decided by the numbers in the whole set: one
with a 2 is TweetEval's three classes, one with a -1 the signed three, one with only 0 and
1 binary (:func:`numeric_scheme`)."""

LABEL_SPELLINGS = (
    "negative/neutral/positive (any case; neg/neu/pos), or numbers: 0/1/2 (TweetEval), "
    "-1/0/1, 0/1 (binary: negative/positive)"
)


def gold_label(value: object) -> Label | int | None:
    """A gold label as a set writes it: a class name in any common spelling (``"Negative"``,
    ``"neg"``, ``" positive "``) -> the Label; a number (``0``, ``"1"``, ``2.0``) -> the int,
    which :func:`numeric_scheme` reads with the rest of the set; anything else -> None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return value if -1 <= value <= 2 else None
    if not isinstance(value, str):
        return None
    spelled = value.strip().lower()
    if spelled in _NAMES:
        return _NAMES[spelled]
    if re.fullmatch(r"[+-]?[0-9]", spelled):
        return gold_label(int(spelled))
    return None


def numeric_scheme(codes: set[int]) -> tuple[str, dict[int, Label]] | None:
    """The first of :data:`NUMERIC_SCHEMES` that has every code of a set (None: none has)."""
    if not codes:
        return None
    binary = codes <= {0, 1}
    for scheme in NUMERIC_SCHEMES:
        three = len(scheme[1]) == 3
        if codes <= scheme[1].keys() and three != binary:
            return scheme
    return None


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
