"""A text's answer does not depend on the other texts of its batch.

The shipped int8 graphs quantise each activation per text, over that text's own tokens
(``sentiment.training.pertext_quant``): a text scored alone and the same text batched
with louder, longer or shorter neighbours get the same numbers (float noise aside). With
``DynamicQuantizeLinear``'s one scale per batch, logits moved by up to 0.47 and labels
flipped, and the scorer's cache kept whichever answer came first.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from sentiment.config import MODELS_DIR
from sentiment.encoder import EncoderModel

ENGLISH = [
    "customer support was ok i suppose",
    "the update is fine, nothing special",
    "I HATE THIS!!! WORST. SERVICE. EVER. refund me now or I sue, absolute scam, never again",
    "best purchase ever, the camera is stunning, battery lasts for days, love love love it",
    "meh",
    "is the store open tomorrow?",
    "@user http they said it would ship monday, it's thursday",
    "not bad at all tbh",
    "what a day 🙄 delayed again",
    "thank you so much for the quick help, really appreciated the follow up from your team",
] * 2
CHINESE = [
    "客服态度还行吧",
    "这家公司太垃圾了 我要退款 再也不买了 骗子 投诉到底",
    "今天天气真好，开心[太开心]",
    "快递到了，包装一般",
    "真的吗？有人知道怎么回事吗",
    "新品发布会看了，感觉还可以，价格有点贵，等降价再说吧，大家觉得呢",
] * 2


@pytest.mark.parametrize(
    ("model", "texts"),
    [
        ("en-minilm-l3", ENGLISH),
        ("en-minilm-l2", ENGLISH),
        ("zh-e5-l6", CHINESE),
        ("e5-embed", ENGLISH[:8] + CHINESE[:4]),
    ],
)
def test_a_text_gets_the_same_answer_alone_and_in_any_batch(model: str, texts: list[str]) -> None:
    encoder = EncoderModel(MODELS_DIR / f"{model}.json", batch_size=32)
    alone = np.vstack([encoder.logits([text]) for text in texts])
    batched = encoder.logits(texts)
    order = list(range(len(texts)))
    random.Random(7).shuffle(order)
    shuffled = np.empty_like(batched)
    shuffled[order] = encoder.logits([texts[i] for i in order])
    small = EncoderModel(MODELS_DIR / f"{model}.json", batch_size=3)  # other neighbours
    assert np.allclose(batched, alone, atol=1e-3), np.abs(batched - alone).max()
    assert np.allclose(shuffled, alone, atol=1e-3)
    assert np.allclose(small.logits(texts), alone, atol=1e-3)
    if not encoder.card.dims:  # a classifier: the same label too
        assert (batched.argmax(axis=1) == alone.argmax(axis=1)).all()
