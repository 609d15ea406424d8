"""Sentence vectors of stories' texts, for joining a paraphrase to its story (rule 4b of
``stories.py``).

Each story keeps up to ``per_key`` vectors (its first texts without a parent that came
with an embedding: ``ScoredMention.embedding``), int8 as the scorer packed them. A
lookup compares a new vector with all held ones at once (one matrix-vector product over
a float32 matrix of the held vectors: 5,000 stories x 4 vectors x 384 dimensions is
7.7 M multiply-adds, a few milliseconds) and returns the story of the most similar one at
or above ``threshold`` (cosine).

The matrix is a cache, never pickled: the vectors themselves live on the stories
(``Story.vectors``), so a story's snapshot part carries them and the story index
rebuilds the matrix when it takes stories back.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]

INITIAL_ROWS = 64


def to_unit(raw: bytes, dims: int) -> Vector:
    """int8 bytes -> a float32 unit vector (zeros stay zeros)."""
    v = np.frombuffer(raw, dtype=np.int8, count=dims).astype(np.float32)
    norm = float(np.linalg.norm(v))
    out: Vector = v / norm if norm else v
    return out


class ParaphraseIndex:
    """Unit vectors under keys (story ids); nearest key by cosine, above a threshold."""

    def __init__(self, threshold: float, per_key: int) -> None:
        self.threshold = threshold
        self.per_key = per_key
        self.dims = 0  # fixed by the first vector
        self._matrix: Vector = np.zeros((0, 0), dtype=np.float32)
        self._owner: list[str | None] = []  # row -> key (None: a free row)
        self._free: list[int] = []
        self._rows: dict[str, list[int]] = {}

    def __len__(self) -> int:
        """Keys held."""
        return len(self._rows)

    def held(self, key: str) -> int:
        return len(self._rows.get(key, ()))

    def best_match(
        self, vector: Vector, threshold: float | None = None, *, skip: str | None = None
    ) -> str | None:
        """The key of the most similar held vector at or above ``threshold`` (the
        index's when None), other than ``skip``'s; None when there is none."""
        if not self._rows or len(vector) != self.dims:
            return None
        sims = self._matrix @ vector
        for row in self._rows.get(skip, ()) if skip is not None else ():
            sims[row] = -2.0
        row = int(np.argmax(sims))
        if float(sims[row]) < (self.threshold if threshold is None else threshold):
            return None
        return self._owner[row]  # (None for a free row: zeros, below any sane threshold)

    def add(self, key: str, vector: Vector) -> bool:
        """Hold ``vector`` under ``key``; False when the key holds ``per_key`` already or
        the vector's width is not the index's."""
        if not self.dims:
            self.dims = len(vector)
            self._matrix = np.zeros((INITIAL_ROWS, self.dims), dtype=np.float32)
            self._owner = [None] * INITIAL_ROWS
            self._free = list(range(INITIAL_ROWS - 1, -1, -1))
        if len(vector) != self.dims:
            return False
        rows = self._rows.setdefault(key, [])
        if len(rows) >= self.per_key:
            return False
        if not self._free:
            self._grow()
        row = self._free.pop()
        self._matrix[row] = vector
        self._owner[row] = key
        rows.append(row)
        return True

    def remove(self, key: str) -> None:
        for row in self._rows.pop(key, ()):
            self._matrix[row] = 0.0
            self._owner[row] = None
            self._free.append(row)

    def move(self, key: str, to: str) -> None:
        """``key``'s vectors go under ``to`` (within ``per_key``: the rest are dropped)."""
        rows = self._rows.pop(key, None)
        if not rows:
            return
        target = self._rows.setdefault(to, [])
        for row in rows:
            if len(target) < self.per_key:
                self._owner[row] = to
                target.append(row)
            else:
                self._matrix[row] = 0.0
                self._owner[row] = None
                self._free.append(row)

    def _grow(self) -> None:
        old = len(self._owner)
        matrix = np.zeros((old * 2, self.dims), dtype=np.float32)
        matrix[:old] = self._matrix
        self._matrix = matrix
        self._owner.extend([None] * old)
        self._free.extend(range(old * 2 - 1, old - 1, -1))
