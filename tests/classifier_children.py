"""A fake classifier for ``sentiment.process.ProcessClassifier``'s child (``load=load_fake``):
the keyword fake, except that a text containing ``CRASH`` kills the child (as a segfault
in ONNX Runtime would) and one containing ``HANG`` never answers (a deadlock)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from core.events import Sentiment
from sentiment.classifier import Classifier
from sentiment.config import ScorerConfig
from tests.fakes import FakeClassifier


class PoisonedClassifier(FakeClassifier):
    def classify(self, texts: Sequence[str], langs: Sequence[str | None]) -> list[Sentiment]:
        if any("CRASH" in text for text in texts):
            os._exit(139)
        if any("HANG" in text for text in texts):
            time.sleep(3600)
        return super().classify(texts, langs)


def load_fake(config: ScorerConfig) -> Classifier:
    return PoisonedClassifier()
