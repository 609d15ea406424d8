"""Deterministic stand-ins for tests that are not about the model."""

from __future__ import annotations

from collections.abc import Sequence

from core.events import Label, Sentiment

NEGATIVE_WORDS = (
    "broken",
    "refund",
    "scam",
    "terrible",
    "worst",
    "burn",
    "fire",
    "angry",
    "lawsuit",
    "hate",
    "awful",
    "dangerous",
    "退款",
    "骗",
    "垃圾",
)
POSITIVE_WORDS = ("love", "great", "awesome", "thanks", "best", "喜欢", "好用")


class FakeClassifier:
    """Keyword rules; the same answer for the same text, always."""

    name = "fake-keywords"
    version = "1"

    def __init__(self) -> None:
        self.calls = 0

    def classify(self, texts: Sequence[str], langs: Sequence[str | None]) -> list[Sentiment]:
        self.calls += 1
        out: list[Sentiment] = []
        for text in texts:
            lower = text.lower()
            label: Label = "neutral"
            if any(w in lower for w in NEGATIVE_WORDS):
                label = "negative"
            elif any(w in lower for w in POSITIVE_WORDS):
                label = "positive"
            probs: dict[Label, float] = {"negative": 0.05, "neutral": 0.05, "positive": 0.05}
            probs[label] = 0.9
            out.append(Sentiment(label=label, probs=probs, model=self.name, version=self.version))
        return out


class FakeKafkaProducer:
    """An ``AIOKafkaProducer`` that sends nothing (for a ``KafkaBus`` start without a
    broker: monkeypatch ``core.bus.kafka.AIOKafkaProducer``)."""

    def __init__(self, **options: object) -> None:
        self.options = options

    async def start(self) -> None:
        pass

    async def flush(self) -> None:
        pass

    async def stop(self) -> None:
        pass
