"""``crisiswatch sentiment train``: rebuild every shipped sentiment weight file.

English: fine-tune + distil with :mod:`sentiment.training.finetune` (torch, transformers,
onnx, onnxruntime; about 7 minutes on one H100, many hours on two CPU cores), or package
already exported graphs (``--graphs DIR``: ``minilm-l3.int8.onnx``, ``minilm-l2.int8.onnx``
and the ``results.json`` of the run that made them); then calibrate and write the card
(:mod:`sentiment.training.english`). Chinese: :mod:`sentiment.training.chinese` (seconds).
Prints the validation numbers; ``python -m sentiment.training.verify`` checks them again
from the written files.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from sentiment.training import chinese, english


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


CASCADE_THRESHOLD = 0.7
ENGLISH_MODELS = ("en-minilm-l3", "en-minilm-l2")
"""Shipped: the default (3 layers) and the faster, less accurate option (2 layers)."""


def train(data: Path, out: Path, *, graphs: Path | None, version: str) -> int:
    out.mkdir(parents=True, exist_ok=True)
    training: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        if graphs is None:
            from sentiment.training import finetune

            work = Path(scratch)
            finetune.main(
                [
                    "--model", str(english.minilm_tokenizer().parent),
                    "--train", str(data / "en-train.jsonl"),
                    "--val", str(data / "en-val.jsonl"),
                    "--out", str(work),
                ]
            )  # fmt: skip
            graphs = work
            training = json.loads((work / "results.json").read_text(encoding="utf-8"))
        else:
            results = graphs / "results.json"
            if results.is_file():
                training = json.loads(results.read_text(encoding="utf-8"))
        for name in ENGLISH_MODELS:
            source = graphs / f"{name.removeprefix('en-')}.int8.onnx"
            english.package(name, source, data, out, version, training, log=_log)
    words = english.train_words(data, out, version, log=_log)
    chinese.train(data, out, version, log=_log)
    cascade = cascade_report(out, data)
    words.metrics["cascade_en_val"] = cascade
    words.save(out / "en-word-ngram.json", out / "en-word-ngram.npz")
    _log(f"cascade (threshold {CASCADE_THRESHOLD}) en-val: {cascade}")
    return 0


def cascade_report(models: Path, data: Path) -> dict[str, Any]:
    """en-val through the whole default classifier (cascade word model -> MiniLM-L3)."""
    from sentiment.config import ClassifierConfig, ScorerConfig
    from sentiment.evaluation import read_jsonl, report
    from sentiment.transformer import load_classifier

    config = ClassifierConfig(model_dir=models, cascade_threshold=CASCADE_THRESHOLD)
    classifier = load_classifier(ScorerConfig(classifier=config))
    rows = read_jsonl(data / "en-val.jsonl")
    result = classifier.classify([r["text"] for r in rows], ["en"] * len(rows))
    scores = report([r["label"] for r in rows], [s.label for s in result])
    fast = sum(1 for s in result if s.model == "en-word-ngram") / len(rows)
    return scores | {"threshold": CASCADE_THRESHOLD, "share_fast": round(fast, 4)}
