"""Text normalisation shared by training and inference (one definition, so they agree).

Posts are normalised the way the SemEval/TweetEval training tweets were: user handles become
``@user``, links ``http``; literal ``\\uXXXX`` escapes and HTML entities left in crawled text
(``\\u002c``, ``&amp;``, an escaped surrogate pair such as ``\\ud83d\\ude21`` as one
character) are decoded; whitespace runs collapse. Whitespace is collapsed and leading
whitespace, zero-width characters and byte-order marks dropped *before* the text is cut to
``max_chars`` (:func:`squeeze`), so padding cannot push the words out of the part a model
reads, and cutting still bounds the cost: a hostile 40 kB post costs about as much as a long
tweet (the collapse reads only as far as it needs to).

Zero-width characters inside a text are kept for the models: the Weibo training posts end in
`` \\u200b`` and the Chinese models learned from it. :func:`blank` treats them as nothing (a
post of only whitespace and zero-width characters is empty), and so does routing; so are
all control and format characters there (NUL, the bidi marks and isolates, a soft hyphen).
"""

from __future__ import annotations

import html
import re
import unicodedata

_USER = re.compile(r"(?<![\w@])@\w{1,50}")
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_ESCAPE = re.compile(
    r"\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})"  # a surrogate pair
    r"|\\u([0-9a-fA-F]{4})"
)
_SPACE = re.compile(r"\s+")
_TAG = re.compile(r"(?<![\w#])#[A-Za-z0-9_]+")  # a Latin-letter hashtag: a brand, a slogan
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"
"""Zero-width space, non-joiner and joiner, word joiner, byte-order mark (zero-width no-break
space): characters that show nothing."""
_BLANK = re.compile(rf"[\s{INVISIBLE}]*")
_SURROGATE = re.compile("[\ud800-\udfff]")

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
    high, low, single = match.groups()
    if single is None:
        code = 0x10000 + ((int(high, 16) - 0xD800) << 10) + (int(low, 16) - 0xDC00)
    else:
        code = int(single, 16)
    char = chr(code)
    return char if char.isprintable() or char.isspace() else " "


def without_surrogates(text: str) -> str:
    """``text`` with each lone surrogate (``"\\ud800"`` decoded from JSON: not a character,
    so not encodable) replaced by U+FFFD, the replacement character."""
    return _SURROGATE.sub("\ufffd", text)


_NOTHING = frozenset({"Cc", "Cf"})  # control and format characters: NUL, LRM, RLM, ...


def blank(text: str) -> bool:
    """True when ``text`` shows nothing: only whitespace, zero-width characters, BOMs and
    other control and format characters (NUL, the bidi marks LRM / RLM / ALM, ...)."""
    if _BLANK.fullmatch(text) is not None:
        return True
    return all(c.isspace() or unicodedata.category(c) in _NOTHING for c in text)


def squeeze(text: str, max_chars: int) -> str:
    """Whitespace runs as one space, leading whitespace / zero-width characters / BOMs and
    trailing whitespace dropped, then at most ``max_chars`` characters.

    Linear and bounded: the leading run is skipped by one regex match, and the rest is
    collapsed window by window only until ``max_chars`` characters are known."""
    lead = _BLANK.match(text)  # "*": always matches
    start = lead.end() if lead is not None else 0
    if len(text) - start <= max_chars:  # nearly every post: one pass
        return _SPACE.sub(" ", text[start:]).rstrip()
    step = max(4 * max_chars, 4096)
    out = ""
    while start < len(text) and len(out) <= max_chars:
        out = _SPACE.sub(" ", out + text[start : start + step])
        start += step
    return out[:max_chars].rstrip()


def without_links(text: str) -> str:
    """``text`` with links, @handles and Latin-letter hashtags blanked out (routing counts
    the letters of the rest: ``https://t.cn/A6xYzAbC`` or ``#AcmeAirlinesFail`` says
    nothing about the language of the post around it; a Weibo topic ``#苹果发布会#`` does)."""
    return _TAG.sub(" ", _USER.sub(" ", _URL.sub(" ", text)))


def _decoded(text: str) -> str:
    """Literal ``\\uXXXX`` escapes and HTML entities decoded."""
    if "\\u" in text:
        text = _ESCAPE.sub(_unescape, text)
    if "&" in text:
        text = html.unescape(text)
    return text


def _styled_letters() -> dict[int, str]:
    """Mathematical alphanumeric symbols (U+1D400-U+1D7FF: 𝐁𝐨𝐥𝐝, 𝘪𝘵𝘢𝘭𝘪𝘤, 𝓈𝒸𝓇𝒾𝓅𝓉, 𝟙𝟚𝟛) to the
    plain letters and digits they style (NFKC): posts use them for emphasis ("𝐍𝐄𝐕𝐄𝐑 𝐁𝐔𝐘"),
    and neither model's vocabulary knows them."""
    table: dict[int, str] = {}
    for code in range(0x1D400, 0x1D800):
        plain = unicodedata.normalize("NFKC", chr(code))
        if plain != chr(code) and len(plain) == 1 and plain.isalnum():
            table[code] = plain
    return table


_PLAIN: dict[int, str] = {}


_STYLED = re.compile("[\U0001d400-\U0001d7ff]")


def plain_letters(text: str) -> str:
    """``text`` with styled letters and digits (``_styled_letters``) as plain ones; other
    characters as they are (fullwidth Latin, which the Chinese encoder reads, included)."""
    if _STYLED.search(text) is None:  # (a regex: a loop in Python cost 2.5 µs a post)
        return text
    if not _PLAIN:
        _PLAIN.update(_styled_letters())
    return text.translate(_PLAIN)


def shows_nothing(text: str) -> bool:
    """``blank``, also once escapes and entities are decoded as the models read them
    (``&nbsp;``, ``&#8203;``, a literal ``\\u200b``): what the classifier answers as empty,
    and the detector counts as a bare repost."""
    return blank(text) or (("&" in text or "\\" in text) and blank(readable(text, len(text))))


def readable(text: str, max_chars: int = 4096) -> str:
    """The text a person reads (alert evidence): escapes and entities decoded, single
    spaces; handles, links and emoji as they were."""
    return _SPACE.sub(" ", _decoded(squeeze(text, max_chars))).strip()


def for_embedding(text: str, max_chars: int = 1024) -> str:
    """The text the sentence-embedding model sees: escapes and entities decoded, links
    masked, single spaces; handles kept (``@AcmeSupport`` names the brand: masking it,
    as ``normalise`` does for sentiment, would hide what the post is about)."""
    return _SPACE.sub(" ", _URL.sub("http", _decoded(squeeze(text, max_chars)))).strip()


def normalise(text: str, max_chars: int = 1024) -> str:
    """The text a model sees: masked handles and links, decoded escapes, single spaces."""
    text = plain_letters(_decoded(squeeze(text, max_chars)))
    text = text.translate(_EMOJI)
    text = _URL.sub("http", text)
    text = _USER.sub("@user", text)
    return _SPACE.sub(" ", text).strip()
