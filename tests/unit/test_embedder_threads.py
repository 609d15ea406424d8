"""``SentenceEmbedder`` says it is thread-safe: its LRU cache is shared by the threads
that call it. Before it had a lock, a lookup (``get`` then ``move_to_end``) raced with
another thread's eviction and raised ``KeyError``; here threads hammer a small cache
with overlapping texts (a fake model: no weights needed)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

import sentiment.embedder as embedder_module
from sentiment.embedder import SentenceEmbedder, unpack

DIMS = 8


@dataclass(frozen=True)
class FakeCard:
    name: str = "fake-embed"
    dims: int = DIMS


class FakeModel:
    """A vector per text that depends only on the text (so any answer can be checked)."""

    def __init__(self, card_path: Path, **_: int) -> None:
        self.card = FakeCard()

    def logits(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return np.stack([vector_of(text) for text in texts])

    def close(self) -> None:
        pass


def vector_of(text: str) -> npt.NDArray[np.float32]:
    vector = np.zeros(DIMS, dtype=np.float32)
    vector[sum(map(ord, text)) % DIMS] = 1.0
    return vector


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Threads switch every microsecond, so that the race shows in a short run."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def test_threads_sharing_the_cache_all_get_their_vectors(
    monkeypatch: pytest.MonkeyPatch, fast_switching: None
) -> None:
    monkeypatch.setattr(embedder_module, "EncoderModel", FakeModel)
    embedder = SentenceEmbedder(Path("fake.json"), min_chars=1, cache_size=4)
    texts = [f"complaint number {n}" for n in range(12)]
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def hammer(offset: int) -> None:
        try:
            start.wait()
            for round_ in range(2_000):
                batch = [texts[(offset + round_ + k) % len(texts)] for k in range(3)]
                for text, packed in zip(batch, embedder.embed(batch), strict=True):
                    assert packed is not None
                    assert np.array_equal(unpack(packed, DIMS), vector_of(text))
        except BaseException as exc:  # a thread cannot fail the test: the test reads these
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert len(embedder._cache) <= 4
