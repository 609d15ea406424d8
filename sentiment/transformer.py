"""The shipped classifier: a language router over an English and a Chinese model.

* **English** (``en``/``eng``, or no language code and mostly Latin letters): a cascade. The
  fast :class:`sentiment.wordmodel.WordModel` (word n-grams, linear) answers where it is
  sure (top probability >= ``cascade_threshold``); the rest go to
  :class:`sentiment.encoder.EncoderModel`, a 3-layer MiniLM fine-tuned on tweets and
  distilled from a fine-tuned 6-layer teacher, int8 ONNX. ``Sentiment.model`` names the
  model that answered.
* **Chinese** (``zh``/``zh-*``/``zho``/``cmn``/``yue``, or no code and mostly Han
  characters): a cascade.
  :class:`sentiment.chinese.ChineseModel` (character n-grams + Weibo emoticons, linear)
  answers where it is sure (probability of its answer >= ``chinese_cascade_threshold``);
  for the rest a 6-layer multilingual-e5-small fine-tuned on Weibo posts (int8 ONNX, the
  same :class:`sentiment.encoder.EncoderModel` as English) is asked too, and the two
  p(positive) are averaged with the card's weight (model id ``zh-e5-l6+zh-char-ngram``).
  Both are binary: the neutral share comes from the combined uncertainty, as the n-gram
  model's own.
* **Empty text** (a repost without comment; whitespace, zero-width characters and BOMs
  count as nothing): ``neutral`` with probability 1; no opinion is expressed.
* **Any other language** (German, Japanese, Arabic, ...): the classifier **abstains**:
  label ``neutral``, probabilities equal to the English training set's class frequencies
  (what a calibrated model says when it knows nothing), and model id ending in
  ``:abstain`` (:data:`sentiment.classifier.ABSTAIN_SUFFIX`) so the detector does not
  count it. Nothing is guessed silently.

Everything loads from ``sentiment/models/`` (or ``scorer.classifier.model_dir``) with no
network access, no torch and no transformers. Loading is blocking: call
:func:`load_classifier` off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from core.events import LABELS, Label, Sentiment, language_of
from sentiment.chinese import ChineseModel
from sentiment.classifier import ABSTAIN_SUFFIX, Classifier
from sentiment.config import ScorerConfig
from sentiment.encoder import EncoderModel, Floats
from sentiment.errors import ModelLoadError
from sentiment.textnorm import plain_letters, readable, shows_nothing, without_links
from sentiment.wordmodel import WordModel

__all__ = [
    "ModelLoadError",
    "SentimentClassifier",
    "language_code",
    "load_classifier",
    "route",
    "routing_language",
]

log = logging.getLogger(__name__)

NAME = "crisiswatch-sentiment"
ZH_CARD = "zh-char-ngram.json"
WORDS_CARD = "en-word-ngram.json"
ABSTAIN_PRIOR: dict[Label, float] = {"negative": 0.156, "neutral": 0.448, "positive": 0.396}
"""Class frequencies of en-train.jsonl (7,415 / 21,270 / 18,776 of 47,461)."""

Route = Literal["en", "zh"] | None
_HAN_WEIGHT = 3  # a Han character carries about a word: "iPhone 太贵了" is Chinese
# codes as ``core.events.language_of`` gives them: it reads the three-letter codes of
# common languages (``eng``, ``zho``, ``chi``, ``cmn``: franc, whatlang) as ``en``/``zh``
_CHINESE_CODES = frozenset({"zh", "yue", "wuu", "lzh"})
_NGRAM_CHARS = 2000  # what ``sentiment.chinese.features`` reads of a text


def language_code(lang: str | None) -> str:
    """``"en-US"`` -> ``"en"``; missing, undetermined or no language -> ``""``
    (``core.events.language_of``: the text is then routed by its script)."""
    return language_of(lang)


def routing_language(lang: str | None) -> str:
    """All of ``lang`` that :func:`route` looks at: ``"en"``, a Chinese code, ``""`` (none or
    undetermined: routed by script) or ``"other"`` (abstain). ``"EN"``, ``"en-US"``,
    ``"en_GB"`` and ``"eng"`` are one key, and so are all the languages abstained on (the
    scorer's cache keys on this, so a long or odd ``lang`` string costs nothing)."""
    code = language_code(lang)
    return code if not code or code == "en" or code in _CHINESE_CODES else "other"


def _script(char: str) -> str:
    """The script of a letter (``char.isalpha()``): ``latin``, ``han`` (every CJK ideograph
    block, the rare ones of Cantonese such as 𨋢 included, and the Bopomofo of Taiwanese
    posts: ``好吃ㄉ店``), ``wide`` (fullwidth Latin, ``ＡＰＰ``: typed by Chinese input
    methods, read by the Chinese encoder's NFKC, unknown to the English vocabulary) or
    ``other``."""
    if char < "\u0250" or "\u1e00" <= char <= "\u1eff":
        return "latin"
    if (
        "\u4e00" <= char <= "\u9fff"
        or "\u3400" <= char <= "\u4dbf"
        or "\uf900" <= char <= "\ufaff"
        or "\u3100" <= char <= "\u312f"  # Bopomofo
        or "\u31a0" <= char <= "\u31bf"  # Bopomofo extended
        or "\U00020000" <= char <= "\U0003ffff"  # CJK extensions B-H, compatibility supplement
    ):
        return "han"
    if "\uff21" <= char <= "\uff5a":
        return "wide"
    return "other"  # kana, hangul, Cyrillic, Arabic, ... (Japanese kanji mixes with kana)


def route(text: str, lang: str | None) -> Route:
    """Which model judges ``text``; ``None``: abstain (a language neither model reads).

    Without a language code, by the script of the letters of the first 500 characters
    (whitespace collapsed first; literal ``\\uXXXX`` escapes and HTML entities decoded, as
    the models read them), links, @handles and Latin hashtags left out unless they are all
    there is."""
    code = language_code(lang)
    if code == "en":
        return "en"
    if code in _CHINESE_CODES:
        return "zh"
    if code:
        return None
    sample = plain_letters(readable(text, 500))  # 𝐁𝐨𝐥𝐝 letters are Latin to the models
    counts = _letters(without_links(sample))
    if not any(counts.values()):
        counts = _letters(sample)
    letters = sum(counts.values())
    if letters == 0 or counts["latin"] * 2 >= letters:
        return "en"  # emoji, digits and punctuation only are read as English: emoji carry
    if counts["han"] * 2 > letters and counts["other"] * 10 < letters:
        return "zh"
    return None


def _letters(text: str) -> dict[str, int]:
    """Letters by script, a Han character counted ``_HAN_WEIGHT`` times, a fullwidth Latin
    letter once, as Chinese."""
    counts = {"latin": 0, "han": 0, "other": 0}
    for char in text:
        if char.isalpha():
            script = _script(char)
            if script == "han":
                counts["han"] += _HAN_WEIGHT
            else:
                counts["han" if script == "wide" else script] += 1
    return counts


class SentimentClassifier:
    """The :class:`~sentiment.classifier.Classifier` that routes each text by language."""

    def __init__(
        self,
        english: EncoderModel,
        chinese: ChineseModel,
        words: WordModel | None = None,
        cascade_threshold: float | None = None,
        chinese_encoder: EncoderModel | None = None,
        chinese_threshold: float = 0.9,
    ) -> None:
        self.english = english
        self.chinese = chinese
        self.chinese_encoder = chinese_encoder
        self.chinese_threshold = chinese_threshold
        self._mix = 0.5
        self._mixed_name = chinese.name
        if chinese_encoder is not None:
            self._mix = float(chinese_encoder.card.cascade.get("weight", 0.5))
            self._mixed_name = f"{chinese_encoder.card.name}+{chinese.name}"
        self.words = words if cascade_threshold is not None else None
        self.cascade_threshold = cascade_threshold
        self.name = NAME
        self.version = f"{english.card.version}+{chinese.version}"
        if chinese_encoder is not None:
            self.version += f"+{chinese_encoder.card.version}"
        self._empty = self._sentiment({label: float(label == "neutral") for label in LABELS}, "")
        self._abstain = Sentiment(
            label="neutral", probs=dict(ABSTAIN_PRIOR), model=f"{NAME}{ABSTAIN_SUFFIX}",
            version=self.version,
        )  # fmt: skip

    def _sentiment(self, probs: dict[Label, float], model: str) -> Sentiment:
        label = max(LABELS, key=lambda k: probs[k])
        return Sentiment(label=label, probs=probs, model=model or NAME, version=self.version)

    def classify(
        self,
        texts: Sequence[str],
        langs: Sequence[str | None],
        progress: Callable[[int, int], None] | None = None,
    ) -> list[Sentiment]:
        if len(texts) != len(langs):
            raise ValueError(f"{len(texts)} texts but {len(langs)} languages")
        results: list[Sentiment] = [self._abstain] * len(texts)
        english: list[int] = []
        chinese: list[int] = []
        for i, (text, lang) in enumerate(zip(texts, langs, strict=True)):
            if shows_nothing(text):  # also once decoded ("&nbsp;": the encoders guessed)
                results[i] = self._empty
                continue
            which = route(text, lang)
            if which == "en":
                english.append(i)
            elif which == "zh":
                chinese.append(i)
        if chinese:
            self._chinese(results, chinese, [texts[i] for i in chinese])
        if english and self.words is not None and self.cascade_threshold is not None:
            fast = self.words.predict_proba([texts[i] for i in english])
            sure = fast.max(axis=1) >= self.cascade_threshold
            answered = [i for i, s in zip(english, sure, strict=True) if s]
            self._fill(results, answered, fast[sure], self.words.labels, self.words.name)
            english = [i for i, s in zip(english, sure, strict=True) if not s]
        if english:
            en = self.english.predict_proba([texts[i] for i in english], progress)
            self._fill(results, english, en, self.english.card.labels, self.english.card.name)
        return results

    def _chinese(self, results: list[Sentiment], rows: list[int], texts: list[str]) -> None:
        # the n-gram model reads escapes and entities decoded and styled letters plain, as
        # the encoder does (and as routing did): "&#22403;&#22334;" is 垃圾 to all three
        pos = self.chinese.positive_proba([plain_letters(readable(t, _NGRAM_CHARS)) for t in texts])
        labels: tuple[Label, ...] = ("negative", "neutral", "positive")
        unsure = np.abs(2.0 * pos - 1.0) < 2.0 * self.chinese_threshold - 1.0
        if self.chinese_encoder is None or not unsure.any():
            self._fill(results, rows, self.chinese.three_way(pos), labels, self.chinese.name)
            return
        asked = np.flatnonzero(unsure)
        probs = self.chinese_encoder.predict_proba([texts[i] for i in asked])
        positive = probs[:, self.chinese_encoder.card.labels.index("positive")]
        mixed = pos.copy()
        mixed[asked] = self._mix * positive + (1.0 - self._mix) * pos[asked]
        three = self.chinese.three_way(mixed)
        sure = [r for r, u in zip(rows, unsure, strict=True) if not u]
        self._fill(results, sure, three[~unsure], labels, self.chinese.name)
        self._fill(results, [rows[i] for i in asked], three[asked], labels, self._mixed_name)

    def _fill(
        self,
        results: list[Sentiment],
        rows: list[int],
        probs: Floats,
        labels: Sequence[Label],
        model: str,
    ) -> None:
        for i, row in zip(rows, np.asarray(probs), strict=True):
            values = {label: float(p) for label, p in zip(labels, row, strict=True)}
            results[i] = self._sentiment(values, model)


async def close_classifier(classifier: Classifier | None) -> None:
    """Release what a loaded classifier holds, where it holds something to release (the
    child process of ``scorer.classifier.process``); off the event loop."""
    close = getattr(classifier, "close", None)
    if callable(close):
        await asyncio.to_thread(close)


def models_dir(config: ScorerConfig) -> Path:
    return config.classifier.resolved_model_dir()


def load_classifier(
    config: ScorerConfig, on_restart: Callable[[], None] | None = None
) -> Classifier:
    """Load both models as configured (offline; blocking: call it off the event loop); in a
    child process of their own with ``scorer.classifier.process`` (``on_restart`` is then
    called each time that child died and is replaced)."""
    settings = config.classifier
    if settings.process:  # null (auto) is resolved by the caller that knows the roles
        from sentiment.process import ProcessClassifier

        return ProcessClassifier(config, on_restart)
    folder = settings.resolved_model_dir()
    if not folder.is_dir():
        raise ModelLoadError(
            f"sentiment model directory {folder} does not exist (models are never "
            "downloaded; set scorer.classifier.model_dir or reinstall crisiswatch)"
        )
    english = EncoderModel(
        folder / f"{settings.english}.json",
        threads=settings.threads,
        batch_size=settings.inference_batch,
        workers=settings.workers,
    )
    chinese = ChineseModel.load(folder / ZH_CARD)
    encoder = None
    if settings.chinese is not None:
        encoder = EncoderModel(
            folder / f"{settings.chinese}.json",
            threads=settings.threads,
            batch_size=settings.inference_batch,
            workers=settings.workers,
        )
    threshold = settings.cascade_threshold
    words = WordModel.load(folder / WORDS_CARD) if threshold is not None else None
    log.info(
        "sentiment models loaded from %s: %s %s, %s %s, Chinese encoder %s",
        folder, english.card.name, english.card.version, chinese.name, chinese.version,
        "off" if encoder is None else f"{encoder.card.name} {encoder.card.version}",
    )  # fmt: skip
    return SentimentClassifier(
        english, chinese, words, threshold, encoder, settings.chinese_cascade_threshold
    )
