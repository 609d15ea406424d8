"""A fine-tuned transformer encoder run by ONNX Runtime (int8): the English and Chinese models.

Pipeline::

    text -> sentiment.textnorm.normalise (handles, links, escapes), the card's ``prefix``,
            lone surrogates replaced by U+FFFD
         -> the model's tokenizer (the ``tokenizers`` library; ``max_length`` tokens)
         -> length-sorted sub-batches, each padded only to its own longest text
         -> ONNX graph: encoder, mean pooling, linear layer -> logits
            (``workers`` sub-batches at once, in threads, on the one session)
         -> softmax(logits / temperature)                           (numpy)

English: a 3-layer MiniLM distilled from a fine-tuned 6-layer one (WordPiece), three
labels. Chinese: a 6-layer multilingual-e5-small student (XLM-R unigram vocabulary pruned
to the pieces Chinese posts use), two labels (negative, positive).

An embedding model (card ``kind`` "embedding": multilingual-e5-small for paraphrases,
``sentiment.embedder``) runs the same way, on ``textnorm.for_embedding`` text (handles
kept); its graph outputs the L2-normalised mean of the token vectors instead of logits.

No torch, no transformers, no network: the graph, the tokenizer and a small JSON file
(label order, temperature, validation numbers, file digest) live in ``sentiment/models/``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.events import LABELS, Label
from sentiment.errors import ModelLoadError
from sentiment.textnorm import for_embedding, normalise, without_surrogates

Floats = npt.NDArray[np.float64]
Progress = Callable[[int, int], None]
MODEL_FORMAT = 1


@dataclass(frozen=True)
class EncoderCard:
    """What ``<name>.json`` says about the graph beside it. ``labels`` are the graph's
    outputs in order: all three labels, or ``negative`` and ``positive`` for a binary model."""

    name: str
    version: str
    graph: str
    tokenizer: str
    labels: tuple[Label, ...]
    max_length: int
    temperature: float
    sha256: str
    metrics: dict[str, Any]
    prefix: str = ""
    cascade: dict[str, float] = field(default_factory=dict)
    dims: int = 0
    """An embedding model's width (its card's ``kind`` is "embedding": no labels, the
    graph's output is ``embedding``, L2-normalised); 0 for a classifier."""

    @property
    def output(self) -> str:
        return "embedding" if self.dims else "logits"

    @property
    def width(self) -> int:
        return self.dims or len(self.labels)

    @classmethod
    def load(cls, path: Path) -> EncoderCard:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            if doc.get("format") != MODEL_FORMAT:
                raise ValueError(f"format {doc.get('format')!r} is not {MODEL_FORMAT}")
            dims = int(doc["dims"]) if doc.get("kind") == "embedding" else 0
            labels = tuple(doc["labels"]) if not dims else ()
            if not dims and sorted(labels) not in (sorted(LABELS), ["negative", "positive"]):
                raise ValueError(f"labels must be {list(LABELS)} or negative and positive")
            if doc.get("kind") == "embedding" and dims < 1:
                raise ValueError("an embedding model's dims must be positive")
            temperature = float(doc.get("temperature", 1.0))
            if not temperature > 0:
                raise ValueError("temperature must be positive")
            return cls(
                name=str(doc["name"]),
                version=str(doc["version"]),
                graph=str(doc["graph"]),
                tokenizer=str(doc["tokenizer"]),
                labels=labels,
                max_length=int(doc["max_length"]),
                temperature=temperature,
                sha256=str(doc["sha256"]),
                metrics=dict(doc.get("metrics", {})),
                prefix=str(doc.get("prefix", "")),
                cascade={str(k): float(v) for k, v in doc.get("cascade", {}).items()},
                dims=dims,
            )
        except FileNotFoundError as exc:
            raise ModelLoadError(f"sentiment model card {path} does not exist") from exc
        except KeyError as exc:
            raise ModelLoadError(f"sentiment model card {path} is invalid: no field {exc}") from exc
        except (OSError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"sentiment model card {path} is invalid: {exc}") from exc


def softmax(logits: npt.NDArray[np.floating[Any]], temperature: float = 1.0) -> Floats:
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: Floats = e / e.sum(axis=1, keepdims=True)
    return out


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class EncoderModel:
    """Texts -> (n, 3) probabilities in ``card.labels`` order. Thread-safe (one call at a time).

    ``workers`` > 1 runs that many sub-batches at once, each in its own thread on the one
    ONNX Runtime session (``run`` is thread-safe and releases the GIL): with one intra-op
    thread per run, that is one busy core per worker without the intra-op threads'
    synchronisation cost. Results do not depend on ``workers``.
    """

    def __init__(
        self, card_path: Path, *, threads: int = 1, batch_size: int = 32, workers: int = 1
    ) -> None:
        import onnxruntime as ort  # lazy: no import-time cost
        from tokenizers import Tokenizer

        self.card = EncoderCard.load(card_path)
        folder = card_path.parent
        graph, vocab = folder / self.card.graph, folder / self.card.tokenizer
        for path in (graph, vocab):
            if not path.is_file():
                raise ModelLoadError(
                    f"sentiment model file {path} is missing (models are never downloaded; "
                    "rebuild with `crisiswatch sentiment train`)"
                )
        if file_digest(graph) != self.card.sha256:
            raise ModelLoadError(f"{graph} does not match the digest in {card_path}")
        try:
            self._tokenizer = Tokenizer.from_file(str(vocab))
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            self._session = ort.InferenceSession(
                str(graph), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT/tokenizers raise their own exception types
            raise ModelLoadError(f"cannot load the sentiment model {graph}: {exc}") from exc
        self._tokenizer.enable_truncation(max_length=self.card.max_length)
        self._tokenizer.no_padding()
        self.batch_size = batch_size
        self._max_chars = self.card.max_length * 16
        self._lock = threading.Lock()
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None
        if workers > 1:
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="sentiment-onnx")

    def close(self) -> None:
        """Stop the worker threads (the model cannot run afterwards with ``workers`` > 1)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def logits(self, texts: Sequence[str], progress: Progress | None = None) -> Floats:
        """A classifier's logits (n, labels); an embedding model's vectors (n, dims)."""
        out = np.zeros((len(texts), self.card.width), dtype=np.float64)
        if not texts:
            return out
        prefix = self.card.prefix
        clean_text = for_embedding if self.card.dims else normalise
        # a lone surrogate (from JSON "\ud800") is no character: the tokenizer refuses it
        clean = [without_surrogates(prefix + clean_text(t, self._max_chars)) for t in texts]
        with self._lock:
            ids = [e.ids for e in self._tokenizer.encode_batch(clean)]
            order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
            batches = [
                order[start : start + self.batch_size]
                for start in range(0, len(order), self.batch_size)
            ]

            def run(rows: list[int]) -> npt.NDArray[np.float32]:
                return self._run([ids[i] for i in rows])

            pool = self._pool if len(batches) > 1 else None
            results: Iterator[npt.NDArray[np.float32]] = (
                pool.map(run, batches) if pool is not None else map(run, batches)
            )
            done = 0
            for rows, logits in zip(batches, results, strict=True):
                out[rows] = logits
                done += len(rows)
                if progress is not None:
                    progress(done, len(order))
        return out

    def predict_proba(self, texts: Sequence[str], progress: Progress | None = None) -> Floats:
        return softmax(self.logits(texts, progress), self.card.temperature)

    def _run(self, batch: list[list[int]]) -> npt.NDArray[np.float32]:
        width = max(len(seq) for seq in batch)
        input_ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, seq in enumerate(batch):
            input_ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        result: npt.NDArray[np.float32] = self._session.run(
            [self.card.output], {"input_ids": input_ids, "attention_mask": mask}
        )[0]
        return result
