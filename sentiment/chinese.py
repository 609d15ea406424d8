"""The Chinese model: character n-grams + Weibo emoticon codes, NB-weighted logistic regression.

Features (:func:`features`, shared by training and inference): the lower-cased text with
whitespace runs collapsed and leading whitespace and zero-width characters dropped before it
is cut (``textnorm.squeeze``), cut into character 1- to ``n``-grams, plus each Weibo emoticon
code (``[哈哈]``, ``[怒]``, ``[doge]``) as one whole token. Each distinct n-gram present
counts once, scaled by its naive-Bayes log-count ratio (NB-LR, Wang & Manning 2012), and a
logistic regression is fitted on that; the ratio and the regression weight fold into one
number per n-gram, so ``p(positive) = sigmoid(b + sum of the weights of the n-grams
present)``. The model file is n-grams and numbers only (``.npz``, loaded with
``allow_pickle=False``); scoring is pure Python, thousands of texts a second.

The training data is binary (negative / positive). The three-way answer puts a
``neutral`` share on uncertain posts: with ``u = 1 - |p_pos - p_neg|`` (0 when sure, 1 at
50/50), ``neutral = neutral_mass * u`` and the rest is split in the binary proportions.
With the shipped ``neutral_mass = 0.5`` a post is labelled neutral when the binary model
is less than about 63 % sure either way. The order of negative and positive is never
changed, so binary evaluation (the larger of the two) is unaffected.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sentiment.errors import INVALID_FILE, ModelLoadError
from sentiment.textnorm import squeeze

Floats = npt.NDArray[np.float64]
MODEL_FORMAT = 2
EMOTICON = re.compile(r"\[[^\[\]\s]{1,8}\]")


def features(text: str, max_n: int = 3, max_chars: int = 2000) -> list[str]:
    """Character 1..max_n-grams of the normalised text, plus emoticon codes as tokens."""
    text = squeeze(text, max_chars).lower()
    out = ["E" + code for code in EMOTICON.findall(text)]
    for n in range(1, max_n + 1):
        out.extend(text[i : i + n] for i in range(len(text) - n + 1))
    return out


@dataclass(frozen=True)
class ChineseModel:
    name: str
    version: str
    max_n: int
    weights: dict[str, float]
    bias: float
    neutral_mass: float
    metrics: dict[str, Any]

    def positive_proba(self, texts: list[str]) -> Floats:
        out = np.empty(len(texts), dtype=np.float64)
        get = self.weights.get
        for row, text in enumerate(texts):
            score = self.bias + sum(get(f, 0.0) for f in set(features(text, self.max_n)))
            out[row] = 1.0 / (1.0 + math.exp(-min(max(score, -50.0), 50.0)))
        return out

    def predict_proba(self, texts: list[str]) -> Floats:
        """(n, 3) probabilities, columns negative / neutral / positive."""
        return self.three_way(self.positive_proba(texts))

    def three_way(self, pos: Floats) -> Floats:
        """Binary p(positive) -> (n, 3) negative / neutral / positive (see the module doc)."""
        neutral = self.neutral_mass * (1.0 - np.abs(2.0 * pos - 1.0))
        return np.stack([(1.0 - pos) * (1.0 - neutral), neutral, pos * (1.0 - neutral)], axis=1)

    def save(self, card: Path, arrays: Path) -> None:
        terms = sorted(self.weights)
        values = np.array([self.weights[t] for t in terms], dtype=np.float32)
        with arrays.open("wb") as fh:
            np.savez_compressed(fh, terms=np.array(terms), weights=values)
        doc = {
            "format": MODEL_FORMAT,
            "name": self.name,
            "version": self.version,
            "arrays": arrays.name,
            "max_n": self.max_n,
            "bias": self.bias,
            "neutral_mass": self.neutral_mass,
            "metrics": self.metrics,
        }
        card.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, card: Path) -> ChineseModel:
        try:
            doc = json.loads(card.read_text(encoding="utf-8"))
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            if doc.get("format") != MODEL_FORMAT:
                raise ValueError(f"format {doc.get('format')!r} is not {MODEL_FORMAT}")
            with (  # our own handle: np.load leaks its file on a truncated archive
                (card.parent / doc["arrays"]).open("rb") as fh,
                np.load(fh, allow_pickle=False) as data,
            ):
                terms = [str(t) for t in data["terms"]]
                values = [float(w) for w in data["weights"]]
            if len(terms) != len(values):
                raise ValueError("terms and weights differ in length")
            return cls(
                name=str(doc["name"]),
                version=str(doc["version"]),
                max_n=int(doc["max_n"]),
                weights=dict(zip(terms, values, strict=True)),
                bias=float(doc["bias"]),
                neutral_mass=float(doc["neutral_mass"]),
                metrics=dict(doc.get("metrics", {})),
            )
        except FileNotFoundError as exc:
            raise ModelLoadError(f"Chinese model file missing: {exc.filename}") from exc
        except KeyError as exc:
            raise ModelLoadError(f"Chinese model {card} is invalid: no field {exc}") from exc
        except INVALID_FILE as exc:
            raise ModelLoadError(f"Chinese model {card} is invalid: {exc}") from exc
