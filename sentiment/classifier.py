"""The classifier contract. Implementations live beside it (``sentiment.transformer``).

``classify`` is synchronous and CPU-bound: the scorer calls it in a worker thread, never
on the event loop. It must return one Sentiment per input, in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from core.events import Sentiment


@runtime_checkable
class Classifier(Protocol):
    name: str
    version: str

    def classify(self, texts: Sequence[str], langs: Sequence[str | None]) -> list[Sentiment]:
        """Label each text negative / neutral / positive with calibrated probabilities."""
        ...
