"""Sentence embeddings of posts, for joining paraphrases into one story.

The scorer runs the embedding model (``scorer.embedder``; multilingual-e5-small, int8
ONNX, ``sentiment/models/e5-embed.*``) over the texts of mentions without a parent (a
repost or reply joins its parent's story anyway) and attaches each vector to its
``ScoredMention`` (``pack``: int8 values of the L2-normalised vector times 127, base64;
384 bytes of vector, 512 characters). The detector compares them with the vectors of
its stories (``sentiment.detector.paraphrase``).

Texts too short to say anything (``embed_min_chars`` characters after normalisation) get
no vector; identical texts are embedded once per batch and kept in a small LRU cache.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from sentiment.config import ScorerConfig
from sentiment.encoder import EncoderModel
from sentiment.errors import ModelLoadError
from sentiment.textnorm import for_embedding

log = logging.getLogger(__name__)

SCALE = 127.0
"""int8 value of a unit vector component 1.0."""

Vector = npt.NDArray[np.float32]


def pack(vector: npt.NDArray[np.floating[Any]]) -> str:
    """An L2-normalised vector as int8 times ``SCALE``, base64."""
    q = np.clip(np.rint(np.asarray(vector, dtype=np.float32) * SCALE), -SCALE, SCALE)
    return base64.b64encode(q.astype(np.int8).tobytes()).decode("ascii")


def unpack(text: str, dims: int | None = None) -> Vector:
    """``pack``'s vector back, L2-normalised again (float32); ValueError when it is not
    one (bad base64, the wrong width, all zeros)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"embedding is not base64: {exc}") from exc
    if not raw or (dims is not None and len(raw) != dims):
        raise ValueError(f"embedding has {len(raw)} values, expected {dims}")
    vector = np.frombuffer(raw, dtype=np.int8).astype(np.float32)
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:
        raise ValueError("embedding is all zeros")
    out: Vector = vector / norm
    return out


class Embedder(Protocol):
    """What the scorer needs of an embedder."""

    name: str

    def embed(self, texts: Sequence[str]) -> list[str | None]: ...


class SentenceEmbedder:
    """Texts -> packed vectors (None for a text too short). Thread-safe: the model is,
    and a lock guards the cache (not the model's run, which takes the time)."""

    def __init__(
        self,
        card_path: Path,
        *,
        min_chars: int,
        threads: int = 1,
        workers: int = 1,
        batch_size: int = 8,
        cache_size: int = 10_000,
    ) -> None:
        self.model = EncoderModel(
            card_path, threads=threads, batch_size=batch_size, workers=workers
        )
        if not self.model.card.dims:
            self.model.close()
            raise ModelLoadError(f"{card_path} is not an embedding model (no dims)")
        self.name = self.model.card.name
        self.dims = self.model.card.dims
        self.min_chars = min_chars
        self._cache: OrderedDict[str | bytes, str] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def close(self) -> None:
        self.model.close()

    def embed(self, texts: Sequence[str]) -> list[str | None]:
        """One packed vector per text (None: shorter than ``min_chars`` once normalised)."""
        out: list[str | None] = [None] * len(texts)
        todo: dict[str | bytes, list[int]] = {}  # cache key -> rows
        first: dict[str | bytes, str] = {}  # cache key -> the text to embed
        keys: list[tuple[int, str | bytes]] = []
        for i, text in enumerate(texts):
            clean = for_embedding(text, 4_000)
            if len(clean) >= self.min_chars:
                keys.append((i, _key(clean)))
        with self._lock:  # a lookup and its move to the end are one step
            for i, key in keys:
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                    out[i] = hit
                else:
                    todo.setdefault(key, []).append(i)
                    first.setdefault(key, texts[i])
        if todo:
            vectors = self.model.logits([first[key] for key in todo])  # (it normalises)
            packed = [pack(vector) for vector in vectors]
            for rows, value in zip(todo.values(), packed, strict=True):
                for i in rows:
                    out[i] = value
            if self._cache_size:
                with self._lock:
                    self._cache.update(zip(todo, packed, strict=True))
                    while len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
        return out


def _key(clean: str) -> str | bytes:
    """The cache key of a normalised text: itself when short, else a 128-bit digest (so a
    flood of 4,000-character posts cannot fill memory), as ``bytes``: never equal to a
    text, however it looks."""
    if len(clean) <= 256:
        return clean
    return hashlib.blake2b(clean.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def load_embedder(config: ScorerConfig) -> SentenceEmbedder | None:
    """The configured embedder (None when ``scorer.embedder`` is null); offline, blocking."""
    if config.embedder is None:
        return None
    settings = config.classifier
    card = settings.resolved_model_dir() / f"{config.embedder}.json"
    embedder = SentenceEmbedder(
        card,
        min_chars=config.embed_min_chars,
        threads=settings.threads,
        workers=settings.workers,
        batch_size=config.embed_batch,
    )
    log.info("sentence embedder loaded: %s (%d dims)", embedder.name, embedder.dims)
    return embedder
