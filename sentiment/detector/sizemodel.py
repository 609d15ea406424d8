"""A fitted final-size model: boosted regression trees over a story's spread so far.

The Hawkes forecast and the power-law extrapolation (``heat``, ``forecast``) read a
story's final size off its arrival times alone. Where past stories of a source with known
final sizes exist, a model fitted on them does better: it learns how that source's
cascades grow (Weibo's decay more slowly than Twitter's), and what else in the first hour
tells a story that keeps going (reposts that carry a comment of their own, reposts of
reposts, how fast the first 5, 10, 20, 50, 100 mentions came). ``predictor: fitted`` with
``size_model`` uses one (``crisiswatch bench fit-size`` fits it; see ``sizefit``).

The model predicts the log of the growth still to come, ``log(final / mentions now)``,
from ``size_feature_names(config)``: log counts, log ages and the root's reach, all of
them O(1) to read off ``StoryHeat``. It is a sum of small regression trees, evaluated in
plain Python (30-70 microseconds; a story's answer is reused within an event minute while
it grows by less than 5 %, see ``heat.StoryHeat._fitted``).

A model is a JSON file (``SizeModel.to_json``) that names the features it was fitted on
(their names carry the window lengths they depend on): a config whose features differ is
refused with an explanation, never silently mis-read. Bundled models live in
``sentiment/detector/models`` and are named without their ``.json`` (a bare name such as
``size-weibo``); a value with a ``/`` or ending in ``.json`` is a file path, relative to
the working directory.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_KIND = "crisiswatch-size-trees"
MODEL_FORMAT = 1
MILESTONES = (5, 10, 20, 50, 100)
"""The story sizes whose arrival ages are features (``log_age_at_<k>``)."""

BUNDLED = Path(__file__).with_name("models")


class SizeModelError(ValueError):
    """A size model that cannot be loaded or does not fit the config."""


def size_feature_names(
    short_minutes: int, long_minutes: int, burst_minutes: list[int] | tuple[int, ...]
) -> tuple[str, ...]:
    """The features, in order, for a detector with these windows."""
    return (
        "log_mentions",
        "log_age",
        f"log_last_{short_minutes}m",
        f"log_last_{long_minutes}m",
        *(f"log_burst_{m}m" for m in burst_minutes),
        "log_authors",
        "log_root_followers",
        "root_followers_known",
        "log_texted",
        "log_deep",
        *(f"log_age_at_{k}" for k in MILESTONES),
    )


@dataclass(frozen=True)
class Tree:
    """A regression tree as flat arrays: node ``i`` splits on ``feature[i]`` at
    ``threshold[i]`` (``<=`` goes to ``left[i]``, else ``right[i]``), or is a leaf
    (``feature[i] == -1``) worth ``value[i]``."""

    feature: tuple[int, ...]
    threshold: tuple[float, ...]
    left: tuple[int, ...]
    right: tuple[int, ...]
    value: tuple[float, ...]

    def predict(self, x: list[float]) -> float:
        i = 0
        feature, threshold = self.feature, self.threshold
        while feature[i] >= 0:
            i = self.left[i] if x[feature[i]] <= threshold[i] else self.right[i]
        return self.value[i]

    def check(self, features: int) -> None:
        n = len(self.feature)
        if not n or any(len(a) != n for a in (self.threshold, self.left, self.right, self.value)):
            raise SizeModelError("a tree's arrays differ in length")
        for i, f in enumerate(self.feature):
            if f >= features:
                raise SizeModelError(f"a tree splits on feature {f} of {features}")
            if f >= 0 and not (i < self.left[i] < n and i < self.right[i] < n):
                raise SizeModelError("a tree's children must come after their parent")
            if not all(math.isfinite(v) for v in (self.threshold[i], self.value[i])):
                raise SizeModelError("a tree holds a value that is not a finite number")


@dataclass(frozen=True)
class SizeModel:
    """``log(final / mentions) = base + sum of trees(features)``."""

    features: tuple[str, ...]
    base: float
    trees: tuple[Tree, ...]
    meta: dict[str, Any]

    def growth(self, x: list[float]) -> float:
        """The predicted log growth ``log(final / mentions now)`` (never below 0)."""
        return max(self.base + sum(t.predict(x) for t in self.trees), 0.0)

    def predict_size(self, mentions: int, x: list[float]) -> float:
        """The predicted final number of mentions (at least ``mentions``)."""
        return mentions * math.exp(self.growth(x))

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": MODEL_KIND,
                "format": MODEL_FORMAT,
                "features": list(self.features),
                "base": self.base,
                "meta": self.meta,
                "trees": [
                    {
                        "feature": list(t.feature),
                        "threshold": list(t.threshold),
                        "left": list(t.left),
                        "right": list(t.right),
                        "value": list(t.value),
                    }
                    for t in self.trees
                ],
            },
            indent=None,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str, where: str = "size model") -> SizeModel:
        try:
            raw = json.loads(text)
            if raw.get("kind") != MODEL_KIND or raw.get("format") != MODEL_FORMAT:
                raise SizeModelError(
                    f"{where}: not a size model of format {MODEL_FORMAT} "
                    f"(kind {raw.get('kind')!r}, format {raw.get('format')!r})"
                )
            features = tuple(str(f) for f in raw["features"])
            trees = tuple(
                Tree(
                    tuple(int(v) for v in t["feature"]),
                    tuple(float(v) for v in t["threshold"]),
                    tuple(int(v) for v in t["left"]),
                    tuple(int(v) for v in t["right"]),
                    tuple(float(v) for v in t["value"]),
                )
                for t in raw["trees"]
            )
            model = cls(features, float(raw["base"]), trees, dict(raw.get("meta") or {}))
        except SizeModelError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise SizeModelError(f"{where}: not a readable size model ({exc})") from None
        except RecursionError:
            raise SizeModelError(f"{where}: not a readable size model (nested too deep)") from None
        for tree in trees:
            try:
                tree.check(len(features))
            except SizeModelError as exc:
                raise SizeModelError(f"{where}: {exc}") from None
        if not math.isfinite(model.base):
            raise SizeModelError(f"{where}: base is not a finite number")
        return model

    def require(self, names: tuple[str, ...], where: str) -> None:
        """Refuse a config whose features are not the ones the model was fitted on."""
        if names != self.features:
            raise SizeModelError(
                f"{where} was fitted on the features {', '.join(self.features)}; this "
                f"detector config gives {', '.join(names)} (its window lengths differ): "
                "use the window lengths it was fitted with, or refit it "
                "(crisiswatch bench fit-size)"
            )


def resolve(name: str) -> Path:
    """A bundled model's file (a bare name), else ``name`` as a path."""
    if "/" not in name and "\\" not in name and not name.endswith(".json"):
        return BUNDLED / f"{name}.json"
    return Path(name).expanduser()


def load_size_model(name: str) -> SizeModel:
    path = resolve(name)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SizeModelError(f"size_model {name!r}: {path} is not UTF-8 text") from None
    except OSError as exc:
        bundled = sorted(p.stem for p in BUNDLED.glob("*.json")) if BUNDLED.is_dir() else []
        raise SizeModelError(
            f"size_model {name!r}: cannot read {path} ({exc.strerror or exc}); "
            f"bundled models: {', '.join(bundled) or 'none'}"
        ) from None
    return SizeModel.from_json(text, f"size_model {name!r} ({path})")
