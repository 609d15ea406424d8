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
    chinese.train(data, out, version, log=_log)
    return 0
