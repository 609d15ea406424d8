"""Configuration of the scorer stage (section ``scorer``) and of its classifier.

``model_dir`` left empty means the models shipped in ``sentiment/models/`` (resolved when
the model loads, never at import). Another set of models is dropped in by pointing it at a
directory holding the same files (``en-minilm-l3.json`` / ``en-minilm-l2.json`` + graph +
tokenizer,
``zh-char-ngram.json`` + arrays), e.g. the output of ``crisiswatch sentiment train``::

    scorer:
      batch_size: 32
      classifier:
        model_dir: /opt/models/sentiment
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from core.events import Label
from core.settings import Section

MODELS_DIR = Path(__file__).resolve().parent / "models"


class ClassifierConfig(Section):
    kind: Literal["routed"] = "routed"
    model_dir: Path | None = Field(
        None,
        description="directory of the sentiment models; empty: sentiment/models/ (shipped). "
        "Loaded offline only, never downloaded.",
    )
    english: Literal["en-minilm-l3", "en-minilm-l2"] = Field(
        "en-minilm-l3",
        description="English model: 3 layers (default, more accurate) or 2 layers (about "
        "1.7x faster, 2 points less macro recall on en-val)",
    )
    cascade_threshold: float | None = Field(
        0.7,
        ge=0.34,
        le=1.0,
        description="English cascade: where the fast word-n-gram model's top probability "
        "reaches this, its answer stands and the transformer is skipped (about 45 % of "
        "tweets at 0.7, same en-val macro recall); null: the transformer judges every text",
    )
    chinese: Literal["zh-e5-l6"] | None = Field(
        "zh-e5-l6",
        description="Chinese encoder behind the character n-gram model: a 6-layer "
        "multilingual-e5-small fine-tuned on Weibo posts, asked where the n-gram model is "
        "unsure, their probabilities averaged (held-out split: 0.898 accuracy against 0.878 "
        "for the n-gram model alone, at about a tenth of its speed on the posts it is asked "
        "about); null: the n-gram model alone judges Chinese",
    )
    chinese_cascade_threshold: float = Field(
        0.9,
        ge=0.5,
        le=1.0,
        description="where the character n-gram model is at least this sure (probability of "
        "its answer), its answer stands and the encoder is skipped (about 70 % of held-out "
        "posts at 0.9); 1.0: the encoder judges every Chinese text",
    )
    threads: int = Field(
        1,
        ge=1,
        le=256,
        description="ONNX Runtime intra-op threads per scorer process. 1 is the most "
        "efficient (measured: 1,088 English texts per CPU-second with 1 thread, 556 with 2, "
        "which spend half their time synchronising on small batches); for more throughput "
        "raise `workers` (one forward pass per core at once)",
    )
    inference_batch: int = Field(32, ge=1, le=1024, description="texts per forward pass")
    workers: int = Field(
        2,
        ge=1,
        le=64,
        description="encoder forward passes run at once, each in its own thread with "
        "`threads` intra-op threads (ONNX Runtime releases the GIL): 2 on a two-core box, "
        "about one per core",
    )

    process: bool | None = Field(
        None,
        description="run the classifier in a child process of its own (its own GIL), so "
        "its Python steps and the rest of a one-process install (listener, bus, detector, "
        "alerter) stop waiting for each other; the models then load in the child. false: "
        "worker threads of this process. null (auto): a child process where this process "
        "runs other stages beside the scorer (`crisiswatch run`), threads where it only "
        "scores (`crisiswatch scorer`) and in `crisiswatch replay`",
    )

    timeout_s: float = Field(
        300.0,
        gt=0,
        le=3600,
        description="with `process`: a classifier call (one scorer batch, and the model "
        "load of a fresh child) not answered within this is taken for a hung child: it is "
        "killed, replaced and the call tried once more (measured: 512 long Chinese posts, "
        "the slowest texts, take about 12 s on two cores)",
    )

    def resolved_model_dir(self) -> Path:
        return self.model_dir if self.model_dir is not None else MODELS_DIR


class ScorerConfig(Section):
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    batch_size: int = Field(
        512,
        ge=1,
        le=4096,
        description="mentions per scorer batch (split into sub-batches of 32 across the "
        "classifier's workers: below 64 one worker idles). Measured end to end, embedded, "
        "2 workers: 1,337 / 1,534 / 1,542 mentions/s at 256 / 512 / 1024; a batch only "
        "fills while mentions queue up (max_wait_ms), so it costs no latency when quiet",
    )
    max_wait_ms: float = Field(
        20.0, ge=0, le=10_000, description="how long a partial batch waits for more mentions"
    )
    cache_size: int = Field(
        50_000, ge=0, description="identical (text, lang) results kept (LRU); 0 disables"
    )
    embedder: Literal["e5-embed"] | None = Field(
        None,
        description="sentence embeddings of the texts of mentions without a parent, for the "
        "detector to join paraphrases of a story's texts (`detector.paraphrase_threshold`): "
        "multilingual-e5-small, int8 ONNX (English, Chinese and ~100 other languages); "
        "null: stories join by cascade and near-duplicate text only",
    )
    embed_labels: tuple[Label, ...] = Field(
        ("negative",),
        min_length=1,
        description="embed only texts the classifier gives one of these labels: a story "
        "turns into a crisis through its complaints, and the model (about 500 tweets/s on "
        "two cores, a quarter of the classifier's speed) then runs on a fraction of the "
        "stream; add neutral and positive to join every paraphrase",
    )
    embed_batch: int = Field(
        8,
        ge=1,
        le=256,
        description="texts per forward pass of the embedder: ONNX Runtime keeps buffers "
        "for the largest (12 layers, up to 128 tokens); measured 2,000 tweets + 1,000 Weibo "
        "posts, 2 workers: +105 MB resident at 8, +170 MB at 16, +250 MB at 32, the same "
        "~400 texts/s",
    )
    embed_min_chars: int = Field(
        20,
        ge=1,
        le=1_000,
        description="texts shorter than this (normalised) get no embedding: too little to "
        "tell a paraphrase from a coincidence",
    )
