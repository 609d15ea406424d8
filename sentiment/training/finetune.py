"""Fine-tune all-MiniLM-L6-v2 on the English tweets; distil smaller students; export int8 ONNX.

Offline training tool (needs torch, transformers, tokenizers, onnx, onnxruntime; a GPU makes
it minutes instead of hours). It depends on nothing else in the project except
``sentiment.textnorm``, so it can run on a bare machine::

    python -m sentiment.training.finetune --model DIR --train en-train.jsonl[.gz] \\
        --val en-val.jsonl[.gz] --out OUTDIR [--quick] [--budget SECONDS]

Plan (fixed seeds; every run is deterministic up to GPU kernel non-determinism):

1. teachers: the 6-layer encoder + mean pooling + a linear layer, trained end to end
   (AdamW, batch 32, max 64 tokens, 6 % warm-up then linear decay, weight decay 0.01) for
   each (learning rate, seed) in ``TEACHERS``; the epoch with the best validation macro
   recall is kept; the best teacher wins;
2. students with 3 and 2 layers, initialised from the teacher's embeddings and every other
   layer, trained on the teacher's soft labels (temperature 2) plus the gold labels;
3. each model exported to ONNX (input_ids, attention_mask -> logits) and quantised to int8
   (dynamic, per channel) with ONNX Runtime, then scored again on validation through ONNX
   Runtime, so the shipped numbers are those of the shipped files.

Writes ``OUTDIR/<name>.int8.onnx`` and ``OUTDIR/results.json``.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from sentiment.textnorm import normalise

LABELS = ("negative", "neutral", "positive")
TEACHERS: tuple[tuple[float, int], ...] = ((8e-5, 0), (5e-5, 1))
STUDENTS = {"minilm-l3": (1, 3, 5), "minilm-l2": (2, 5)}
START = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - START:6.1f}s] {msg}", file=sys.stderr, flush=True)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def macro_recall(y: np.ndarray[Any, Any], pred: np.ndarray[Any, Any]) -> float:
    return float(np.mean([(pred[y == k] == k).mean() for k in range(len(LABELS))]))


class Data:
    def __init__(self, tokenizer: Any, rows: list[dict[str, Any]], max_length: int) -> None:
        texts = [normalise(r["text"]) for r in rows]
        self.ids = [e.ids for e in tokenizer.encode_batch(texts)]
        self.y = np.array([LABELS.index(r["label"]) for r in rows], dtype=np.int64)
        self.max_length = max_length

    @classmethod
    def from_ids(cls, ids: list[list[int]], y: np.ndarray[Any, Any]) -> Data:
        """Already tokenised texts; ``y`` holds label indices (-1: unlabelled)."""
        data = cls.__new__(cls)
        data.ids, data.y = ids, y
        data.max_length = max(len(s) for s in ids)
        return data

    def batch(self, torch: Any, idx: list[int], device: Any) -> tuple[Any, Any]:
        width = max(len(self.ids[i]) for i in idx)
        ids = np.zeros((len(idx), width), dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for row, i in enumerate(idx):
            seq = self.ids[i]
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)


def build(torch: Any, encoder: Any, n_labels: int = len(LABELS)) -> Any:
    module: Any = torch.nn.Module
    nn = torch.nn

    class Classifier(module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.dropout = nn.Dropout(0.1)
            self.out = nn.Linear(encoder.config.hidden_size, n_labels)

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.encoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
            ).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
            return self.out(self.dropout(pooled))

    return Classifier()


def predict(torch: Any, model: Any, data: Data, device: Any, batch: int = 256) -> Any:
    model.eval()
    order = sorted(range(len(data.ids)), key=lambda i: len(data.ids[i]))
    out = np.zeros((len(order), model.out.out_features), dtype=np.float32)
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, device.type == "cuda"):
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            ids, mask = data.batch(torch, idx, device)
            out[idx] = model(ids, mask).float().cpu().numpy()
    model.train()
    return out


def train(
    torch: Any,
    model: Any,
    train_data: Data,
    val: Data,
    device: Any,
    *,
    lr: float,
    seed: int,
    epochs: int,
    batch: int,
    soft: Any = None,
    tag: str,
    metric: Any = macro_recall,
    select: bool = True,
) -> tuple[Any, float, list[float]]:
    """Train; return the state of the epoch with the best validation ``metric`` (macro recall
    by default), or of the last epoch when ``select`` is false. A label of -1 (unlabelled
    text, for distillation) contributes only through ``soft``."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model.to(device).train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "LayerNorm" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "LayerNorm" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}], lr=lr
    )
    n = len(train_data.ids)
    steps = epochs * math.ceil(n / batch)
    warm = max(1, int(0.06 * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: s / warm if s < warm else max(0.0, (steps - s) / max(1, steps - warm))
    )
    y_all = torch.from_numpy(train_data.y).to(device)
    soft_all = None if soft is None else torch.from_numpy(soft).to(device)
    best_state, best, curve = None, -1.0, []
    for epoch in range(epochs):
        order = list(range(n))
        rng.shuffle(order)
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            ids, mask = train_data.batch(torch, idx, device)
            sel = torch.tensor(idx, device=device)
            with torch.autocast(device.type, torch.bfloat16, device.type == "cuda"):
                logits = model(ids, mask).float()
            gold = y_all[sel]
            loss = torch.nn.functional.cross_entropy(
                logits, gold, ignore_index=-1, reduction="sum"
            ) / (gold >= 0).sum().clamp(min=1)
            if soft_all is not None:
                t = 2.0
                kd = torch.nn.functional.kl_div(
                    torch.log_softmax(logits / t, dim=1),
                    torch.softmax(soft_all[sel] / t, dim=1),
                    reduction="batchmean",
                )
                loss = 0.5 * loss + 0.5 * kd * t * t
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
        mr = metric(val.y, predict(torch, model, val, device).argmax(1))
        curve.append(round(mr, 4))
        log(f"{tag} epoch {epoch + 1}/{epochs}: val {mr:.4f}")
        if mr > best or not select:
            best = mr
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return model, best, curve


def student_from(torch: Any, teacher: Any, layers: tuple[int, ...]) -> Any:
    student = copy.deepcopy(teacher).cpu()
    keep = torch.nn.ModuleList([student.encoder.encoder.layer[i] for i in layers])
    student.encoder.encoder.layer = keep
    student.encoder.config.num_hidden_layers = len(layers)
    return student


def export(torch: Any, model: Any, path: Path) -> Path:
    """fp32 ONNX, then int8: weights per channel, activations per text
    (:mod:`sentiment.training.pertext_quant`); returns the int8 path."""
    from sentiment.training.pertext_quant import quantise

    model = copy.deepcopy(model).float().cpu().eval()
    ids = torch.ones((2, 16), dtype=torch.int64)
    mask = torch.ones((2, 16), dtype=torch.int64)
    fp32 = path.with_suffix(".fp32.onnx")
    torch.onnx.export(
        model,
        (ids, mask),
        str(fp32),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "seq"},
            "attention_mask": {0: "batch", 1: "seq"},
            "logits": {0: "batch"},
        },
        opset_version=17,
        dynamo=False,
    )
    int8 = path.with_suffix(".int8.onnx")
    quantise(fp32, int8)
    fp32.unlink()
    return int8


def onnx_logits(path: Path, data: Data, batch: int = 32) -> Any:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    order = sorted(range(len(data.ids)), key=lambda i: len(data.ids[i]))
    out = np.zeros((len(order), sess.get_outputs()[0].shape[1]), dtype=np.float32)
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        width = max(len(data.ids[i]) for i in idx)
        ids = np.zeros((len(idx), width), dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for row, i in enumerate(idx):
            ids[row, : len(data.ids[i])] = data.ids[i]
            mask[row, : len(data.ids[i])] = 1
        out[idx] = sess.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="MiniLM model directory")
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--val", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--student-epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--budget", type=float, default=1e9, help="seconds; skip later phases")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny data, 1 epoch")
    args = parser.parse_args(argv)

    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModel

    torch.use_deterministic_algorithms(False)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    log(f"device {device}, torch {torch.__version__}")
    tokenizer = Tokenizer.from_file(str(args.model / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=args.max_length)
    tokenizer.no_padding()
    train_rows, val_rows = read_jsonl(args.train), read_jsonl(args.val)
    teachers, students, epochs, s_epochs = TEACHERS, STUDENTS, args.epochs, args.student_epochs
    if args.quick:
        train_rows, val_rows = train_rows[:96], val_rows[:64]
        teachers, epochs, s_epochs = TEACHERS[:1], 1, 1
    train_data = Data(tokenizer, train_rows, args.max_length)
    val = Data(tokenizer, val_rows, args.max_length)
    log(f"{len(train_rows)} train, {len(val_rows)} val texts tokenised")
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"max_length": args.max_length, "labels": list(LABELS), "runs": []}

    def save() -> None:
        (args.out / "results.json").write_text(json.dumps(results, indent=1))

    best_teacher, best_mr = None, -1.0
    for lr, seed in teachers:
        if time.monotonic() - START > args.budget * 0.45 and best_teacher is not None:
            log("budget: skipping further teachers")
            break
        encoder = AutoModel.from_pretrained(str(args.model), dtype=torch.float32)
        model = build(torch, encoder)
        model, mr, curve = train(
            torch, model, train_data, val, device,
            lr=lr, seed=seed, epochs=epochs, batch=args.batch, tag=f"L6 lr={lr} seed={seed}",
        )  # fmt: skip
        results["runs"].append({"name": "minilm-l6", "lr": lr, "seed": seed, "val_mr": curve})
        save()
        if mr > best_mr:
            best_teacher, best_mr = model, mr
    assert best_teacher is not None
    models = {"minilm-l6": best_teacher}
    soft = predict(torch, best_teacher, train_data, device)
    for name, layers in students.items():
        if time.monotonic() - START > args.budget * 0.8:
            log(f"budget: skipping student {name}")
            break
        student = student_from(torch, best_teacher, layers)
        student, mr, curve = train(
            torch, student, train_data, val, device, lr=1e-4, seed=0, epochs=s_epochs,
            batch=args.batch, soft=soft, tag=name,
        )  # fmt: skip
        results["runs"].append({"name": name, "layers": list(layers), "val_mr": curve})
        save()
        models[name] = student
    results["models"] = {}
    for name, model in models.items():
        torch_mr = macro_recall(val.y, predict(torch, model, val, device).argmax(1))
        path = export(torch, model, args.out / name)
        logits = onnx_logits(path, val)
        results["models"][name] = {
            "layers": len(model.encoder.encoder.layer),
            "val_mr_torch": round(torch_mr, 4),
            "val_mr_int8": round(macro_recall(val.y, logits.argmax(1)), 4),
            "bytes": path.stat().st_size,
        }
        log(f"{name}: {results['models'][name]}")
        save()
    log("done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
