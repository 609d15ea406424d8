"""The classifier contract. Implementations live beside it (``sentiment.transformer``).

``classify`` is synchronous and CPU-bound: the scorer calls it in a worker thread, never
on the event loop. It must return one Sentiment per input, in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from core.events import Sentiment

ABSTAIN_SUFFIX = ":abstain"
"""Ends ``Sentiment.model`` when a classifier could not judge a text (e.g. its language):
the label is then a prior, not an opinion, and the detector does not count it."""


@runtime_checkable
class Classifier(Protocol):
    name: str
    version: str

    def classify(self, texts: Sequence[str], langs: Sequence[str | None]) -> list[Sentiment]:
        """Label each text negative / neutral / positive with calibrated probabilities."""
        ...
