"""Text folding shared by queries and texts: one canonical form to compare.

``fold(text)`` is NFKC (full-width and half-width forms, ligatures, styled letters), then
case folding (with Turkish ``İ`` as ``i``), then traditional → simplified Chinese, character
by character, with the OpenCC character table shipped by ``opencc-python-reimplemented``
(Apache-2.0); invisible characters inside words (soft hyphen, zero-width space and joiners,
word joiner, BOM) are dropped and the typographic apostrophe ``’`` is ``'``. Query
terms and mention texts go through the same function, so ``發``, ``髮`` and ``发`` all
compare equal, as do ``ＡＣＭＥ``, ``Acme`` and ``acme``.

Matching a stream fast needs a cheaper form for the common case: :class:`Prefold` gives
``text.lower()`` (less the invisible characters ``fold`` drops, Weibo's zero-width spaces
among them) unless the text holds a character that folds into one of the watched
literals' characters differently (a full-width letter, a traditional variant, a combining
mark next to a composed letter); only then does it pay for the full fold. A literal found in
``fold(text)`` is therefore always found in the prefolded text (the prefilter never drops a
match); see :func:`variant_chars`.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections.abc import Iterable
from importlib import resources

# Scripts written without spaces between words: a term ending in one of these matches as
# a substring, and each such character is one word for NEAR/n.
CJK = (
    "\u2e80-\u2fdf"  # CJK radicals, Kangxi
    "\u3000-\u303f"  # CJK punctuation
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3100-\u312f"  # Bopomofo
    "\u31f0-\u31ff"  # Katakana extensions
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uac00-\ud7af"  # Hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\U00020000-\U0002fa1f"  # CJK extensions B-F, compatibility supplement
)
CJK_CHAR = re.compile(f"[{CJK}]")
# A "word character" of a spaced script: a letter or digit that is not CJK (``_`` separates
# words, as in handles and hashtags).
WORD_CHAR = f"[^\\W_{CJK}]"
# One word for NEAR/n: a run of spaced-script word characters, or a single CJK character.
WORD = re.compile(f"[{CJK}]|{WORD_CHAR}+")

_HANGUL_JAMO = ((0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F), (0xD7B0, 0xD7FF))

# Invisible, yet found inside words (a feed's soft hyphens, zero-width spaces): dropped.
INVISIBLE = "\u00ad\u200b\u200c\u200d\u2060\ufeff"
_INVISIBLE = re.compile(f"[{INVISIBLE}]")
_UNCLEAN = re.compile(f"[{INVISIBLE}\u2019]")  # dropped, or the apostrophe ’ (made ')


def is_word_end(char: str) -> bool:
    """A character a Latin-style word boundary applies to (letter/digit/_ outside CJK)."""
    return (char.isalnum() or char == "_") and not CJK_CHAR.match(char)


@functools.cache
def _t2s() -> dict[int, str]:
    """Traditional → simplified, one character to one (the table's first choice)."""
    table = resources.files("opencc").joinpath("dictionary/TSCharacters.txt")
    out: dict[int, str] = {}
    for line in table.read_text(encoding="utf-8").splitlines():
        trad, _, simp = line.partition("\t")
        first = simp.split(" ", 1)[0]
        if len(trad) == 1 and len(first) == 1 and trad != first:
            out[ord(trad)] = first
    return out


@functools.cache
def _trad_chars() -> re.Pattern[str]:
    return re.compile(char_class(_t2s()))


def char_class(code_points: Iterable[int]) -> str:
    """A regex class of ``code_points`` that ``re`` searches fast.

    ``re`` checks characters outside the BMP against a list of ranges, one by one; a long
    list makes every search slow. So BMP characters are exact (a bitmap) and the others are
    merged into a few ranges spanning small gaps: a superset, which only ever costs a
    needless full fold.
    """
    runs: list[list[int]] = []
    for cp in sorted(set(code_points)):
        gap = 1 if cp < 0x10000 else 1024
        if runs and cp - runs[-1][1] <= gap and (cp < 0x10000) == (runs[-1][1] < 0x10000):
            runs[-1][1] = cp
        else:
            runs.append([cp, cp])
    parts = (
        re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}"
        for lo, hi in runs
    )
    return "[" + "".join(parts) + "]"


def fold(text: str) -> str:
    """The canonical form (see the module docstring)."""
    if text.isascii():
        return text.lower()
    # "İ" case-folds to "i" + U+0307 (combining dot above): plain "i", as Turkish means it
    out = unicodedata.normalize("NFKC", text).casefold().replace("i\u0307", "i")
    if _trad_chars().search(out):
        out = out.translate(_t2s())
    if _UNCLEAN.search(out):
        out = _INVISIBLE.sub("", out).replace("\u2019", "'")
    return out


@functools.cache
def _folds() -> dict[str, str]:
    """Every character whose fold is not itself, with its fold (built once, ~0.5 s)."""
    t2s = _t2s()
    out: dict[str, str] = {}
    for cp in range(0x80, sys.maxunicode + 1):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        char = chr(cp)
        changed = cp in t2s or unicodedata.decomposition(char) or char.casefold() != char
        if changed or _UNCLEAN.match(char):
            folded = fold(char)
            if folded != char:
                out[char] = folded
    return out


def variant_chars(alphabet: Iterable[str]) -> re.Pattern[str] | None:
    """A character class of what ``str.lower()`` leaves but ``fold`` turns into ``alphabet``.

    A text without any of these folds, as far as ``alphabet``'s characters go, the same
    under ``lower()`` as under ``fold``. Combining marks (and Hangul jamo) are added when the
    alphabet holds a character they could compose into.
    """
    wanted = {c for c in alphabet if not c.isspace()}
    chars = {v for v, f in _folds().items() if v == v.lower() and wanted.intersection(f)}
    if "i" in wanted:  # "İ".lower() is "i" + U+0307
        chars.add("\u0307")
    if any(unicodedata.decomposition(c) or "\uac00" <= c <= "\ud7af" for c in wanted):
        for cp in range(0x300, sys.maxunicode + 1):
            char = chr(cp)
            if unicodedata.combining(char) or unicodedata.category(char).startswith("M"):
                chars.add(char)
        for lo, hi in _HANGUL_JAMO:
            chars.update(chr(cp) for cp in range(lo, hi + 1))
    if not chars:
        return None
    return re.compile(char_class(ord(c) for c in chars))


class Prefold:
    """``lower()`` without invisible characters, unless a character could fold into the
    watched alphabet: then ``fold``."""

    def __init__(self, alphabet: Iterable[str]) -> None:
        self._variants = variant_chars(alphabet)

    def __call__(self, text: str) -> str:
        if text.isascii():
            return text.lower()
        low = _INVISIBLE.sub("", text.lower())  # Weibo puts U+200B in most posts
        if self._variants is None or not self._variants.search(low):
            return low
        return fold(text)
