"""Texts the classifier abstains on (unsupported language) are not counted as neutral:
the complaint lexicon decides whether such a story is negative."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.events import Author, Mention, ScoredMention, Sentiment, WatchMatch
from sentiment.classifier import ABSTAIN_SUFFIX
from sentiment.detector.config import DetectorConfig
from sentiment.detector.detector import Detector

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
ABSTAIN = Sentiment(
    label="neutral",
    probs={"negative": 0.16, "neutral": 0.45, "positive": 0.39},
    model=f"minilm{ABSTAIN_SUFFIX}",
    version="1",
)


def weibo(i: int, text: str) -> ScoredMention:
    mention = Mention(
        id=f"weibo:{i}",
        source="weibo",
        text=text,
        lang="zh",
        created_at=T0 + timedelta(seconds=10 * i),
        author=Author(id=f"u{i}", followers=500),
        repost_of="weibo:0" if i else None,
        watch=WatchMatch(id="w", brand="Nimbus"),
    )
    return ScoredMention(mention=mention, sentiment=ABSTAIN)


def max_tier(texts: list[str]) -> int:
    detector = Detector(DetectorConfig(), generation="")
    tiers = [0]
    for i, text in enumerate(texts):
        tiers += [s.tier for s in detector.observe(weibo(i, text))]
    return max(tiers)


def test_abstained_complaints_reach_a_tier_through_the_lexicon() -> None:
    assert max_tier(["Nimbus手机充电起火，要求退款！"] * 15) >= 2


def test_abstained_chatter_stays_tier_zero() -> None:
    assert max_tier(["Nimbus新品发布会什么时候开？"] * 15) == 0
