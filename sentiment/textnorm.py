"""Text normalisation shared by training and inference (one definition, so they agree).

Posts are normalised the way the SemEval/TweetEval training tweets were: user handles become
``@user``, links ``http``; literal ``\\uXXXX`` escapes and HTML entities left in crawled text
(``\\u002c``, ``&amp;``) are decoded; whitespace runs collapse. Text is cut to ``max_chars``
first, so a hostile 40 kB post costs no more than a long tweet.
"""

from __future__ import annotations

import html
import re

_USER = re.compile(r"(?<![\w@])@\w{1,50}")
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_SPACE = re.compile(r"\s+")

EMOJI_WORDS = {
    "love": "😍🥰😘😻💕💖💗💘💞❤♥",
    "happy": "😀😃😄😁😊🙂☺😆😸",
    "lol": "😂🤣😹",
    "good": "👍👌✅",
    "great": "👏🙌🎉🥳💯🏆",
    "cool": "😎🤩",
    "thanks": "🙏",
    "sad": "😢😭😞😔😿☹🙁😟",
    "heartbroken": "💔",
    "angry": "😡😠🤬😤👿",
    "bad": "👎❌",
    "annoyed": "🙄😒",
    "disgusting": "🤮🤢",
    "shocked": "😱😨😰",
    "crap": "💩",
    "meh": "😐😑",
}
_EMOJI: dict[int, str | None] = {
    ord(char): f" {word} " for word, chars in EMOJI_WORDS.items() for char in chars
}
_EMOJI |= {0xFE0F: None, 0xFE0E: None}  # presentation selectors (❤️ = ❤ + U+FE0F)


def _unescape(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char.isprintable() or char.isspace() else " "


def _decoded(text: str) -> str:
    """Literal ``\\uXXXX`` escapes and HTML entities decoded."""
    if "\\u" in text:
        text = _ESCAPE.sub(_unescape, text)
    if "&" in text:
        text = html.unescape(text)
    return text


def readable(text: str, max_chars: int = 4096) -> str:
    """The text a person reads (alert evidence): escapes and entities decoded, single
    spaces; handles, links and emoji as they were."""
    return _SPACE.sub(" ", _decoded(text[:max_chars])).strip()


def for_embedding(text: str, max_chars: int = 1024) -> str:
    """The text the sentence-embedding model sees: escapes and entities decoded, links
    masked, single spaces; handles kept (``@AcmeSupport`` names the brand: masking it,
    as ``normalise`` does for sentiment, would hide what the post is about)."""
    return _SPACE.sub(" ", _URL.sub("http", _decoded(text[:max_chars]))).strip()


def normalise(text: str, max_chars: int = 1024) -> str:
    """The text a model sees: masked handles and links, decoded escapes, single spaces."""
    text = _decoded(text[:max_chars])
    text = text.translate(_EMOJI)
    text = _URL.sub("http", text)
    text = _USER.sub("@user", text)
    return _SPACE.sub(" ", text).strip()
