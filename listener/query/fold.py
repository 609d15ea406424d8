"""Text folding shared by queries and texts: one canonical form to compare.

``fold(text)`` is NFKC (full-width and half-width forms, ligatures, styled letters), then
case folding (with Turkish ``İ`` as ``i``), then traditional → simplified Chinese, character
by character, with the OpenCC character table shipped by ``opencc-python-reimplemented``
(Apache-2.0), then accents off Latin, Greek and Cyrillic letters (see :func:`_accents`:
``café``, ``Citroën``, ``Ελλάδα``, ``ёлка`` fold to ``cafe``, ``citroen``, ``ελλαδα``,
``елка``); invisible characters inside words (soft hyphen, zero-width space and joiners,
word joiner, BOM) are dropped and the typographic apostrophe ``’`` is ``'``. Query terms
(phrases included) and mention texts go through the same function, so ``發``, ``髮`` and
``发`` all compare equal, as do ``ＡＣＭＥ``, ``Acme`` and ``acme``, and ``Nestle`` and
``Nestlé``. Other scripts keep their marks: Hangul syllables stay whole (no NFD), ``が``
stays ``が`` (not ``か``), Devanagari vowel signs stay.

A hashtag or @handle written in camel case holds several words: :func:`fold_cuts` also
says where they meet (``#AcmeRefund``: ``acme`` | ``refund``), for the matcher's second,
split reading of the text (see :func:`camel_cuts` for the rule).

Matching a stream fast needs a cheaper form for the common case: :class:`Prefold` gives
``text.lower()`` (less the invisible characters ``fold`` drops, Weibo's zero-width spaces
among them) unless the text holds a character that folds into one of the watched
literals' characters differently (a full-width letter, a traditional variant, an accented
letter, a combining mark); only then does it pay for the full fold. A literal found in
``fold(text)`` is therefore always found in the prefolded text (the prefilter never drops a
match); see :func:`variant_chars`.
"""

from __future__ import annotations

import functools
import itertools
import re
import sys
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

# Scripts written without spaces between words: a term ending in one of these matches as
# a substring, and each such character is one word for NEAR/n. Chinese, Japanese, Korean
# syllables, and the scripts of South-East Asia (Thai, Lao, Myanmar, Khmer): a Thai brand
# name inside a Thai sentence has no boundary on either side.
CJK = (
    "\u0e00-\u0eff"  # Thai, Lao
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
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
# So are the emoji and text presentation selectors: "❤️" (as phones type it) is "❤".
INVISIBLE = "\u00ad\u200b\u200c\u200d\u2060\ufeff\ufe0e\ufe0f"
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


# Accents (combining diacritical marks) taken off Latin and Greek letters: the marks of the
# Combining Diacritical Marks blocks (and half marks), not those for symbols (keycaps).
_DIACRITIC_RANGES = ((0x300, 0x36F), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF), (0xFE20, 0xFE2F))
DIACRITICS = "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in _DIACRITIC_RANGES)
_DIACRITIC = re.compile(f"[{DIACRITICS}]")
# Cyrillic letters keep their marks but these: stress accents on vowels (dictionaries and
# textbooks write them) and the diaeresis of ё (commonly written е); й, ї, ў, ѓ, ќ… are
# letters of their own.
_CYRILLIC_VOWELS = "аеиоуыэюяіїєѣАЕИОУЫЭЮЯІЇЄѢ"
_CYRILLIC_STRESS = "\u0300\u0301"
# Letters with a stroke have no decomposition, yet are written without it as often:
# Łódź/Lodz, Ørsted/Orsted, đ in Vietnamese and Croatian. So is Turkish dotless ı, which
# case folding alone left apart from i although the capital I folds to i ("YOLLARI" is
# "yollari", "Yolları" was "yolları") and Turkish is typed without it as often.
STROKES = {"ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ŧ": "t", "ı": "i"}
# But the two modifier letters NFKC makes ħ and ø keep the stroke (fold gives ħ, ø): then
# no character outside the BMP folds into a Latin letter, and Prefold's class needs no
# range for them (``re`` checks each such range for every character of every text).
_STROKED_MODIFIERS = "\U00010795\U000107a2"
_TO_SENTINELS = str.maketrans({"\U00010795": "\ufdd1", "\U000107a2": "\ufdd2"})
_UNSTROKED = str.maketrans({"\ufdd1": "ħ", "\ufdd2": "ø"})  # noncharacters: fold keeps them
# Where Latin, Greek and Cyrillic letters are (as Unicode 15 has them; full-width and styled
# letters are NFKC's).
_ACCENT_BLOCKS = (
    (0x41, 0x530),
    (0x1C80, 0x1C90),
    (0x1D00, 0x2000),
    (0x2C60, 0x2C80),
    (0x2DE0, 0x2E00),
    (0xA640, 0xA6A0),
    (0xA720, 0xA800),
    (0xAB30, 0xAB70),
)


def _strippable(base: str, mark: str) -> bool:
    """Whether ``fold`` takes ``mark`` off ``base`` (a letter)."""
    name = unicodedata.name(base, "")
    if name.startswith(("LATIN ", "GREEK ")):
        return _DIACRITIC.match(mark) is not None
    if name.startswith("CYRILLIC "):
        return (base in _CYRILLIC_VOWELS and mark in _CYRILLIC_STRESS) or (
            base in "еЕ" and mark == "\u0308"
        )
    return False


@dataclass(frozen=True)
class _Accents:
    table: dict[int, str]  # precomposed letter → without its accents
    present: re.Pattern[str]  # a character that may need stripping
    loose: re.Pattern[str]  # loose marks to drop (after a letter that loses its marks)
    bases: frozenset[str]  # the letters that lose marks following them


@functools.cache
def _accents() -> _Accents:
    """What ``fold`` does to accents, built once (~20 ms).

    * a table: each precomposed letter (after case folding) → the letter without the
      marks :func:`_strippable` allows (``é`` → ``e``, ``ё`` → ``е``; ``й`` stays), and
      the letters of :data:`STROKES` without their stroke (``ø``, ``ǿ`` → ``o``);
    * a class of the characters that may need it (those letters and loose marks), so that
      a text without any costs one search;
    * loose marks to drop: a run of them right after a Latin or Greek letter (or a stress
      accent after a Cyrillic vowel), which NFKC could not compose (``q̃``, Russian ``ы́``).

    Only Latin, Greek and Cyrillic letters lose marks: Hangul syllables (which NFD would
    split into jamo) and kana (``が`` is ``か`` + a combining dakuten) are never decomposed,
    and marks after any other character (Devanagari vowel signs, keycaps, variation
    selectors of emoji) stay.
    """
    table: dict[int, str] = {ord(k): v for k, v in STROKES.items()}
    bases: list[int] = []
    for cp in itertools.chain(*(range(lo, hi) for lo, hi in _ACCENT_BLOCKS)):
        char = chr(cp)
        if not unicodedata.category(char).startswith("L"):
            continue
        name = unicodedata.name(char, "")
        if name.startswith(("LATIN ", "GREEK ")) or char in _CYRILLIC_VOWELS:
            bases.append(cp)
        if not unicodedata.decomposition(char):
            continue
        parts = unicodedata.normalize("NFD", char)
        base = parts[0]
        if len(parts) < 2 or not unicodedata.category(base).startswith("L"):
            continue
        kept = "".join(mark for mark in parts[1:] if not _strippable(base, mark))
        if len(kept) < len(parts) - 1:
            table[cp] = unicodedata.normalize("NFC", STROKES.get(base, base) + kept)
    loose = (
        f"(?<={char_class(bases)})[{DIACRITICS}]+"
        f"|(?<=[{_CYRILLIC_VOWELS}])[{_CYRILLIC_STRESS}]+|(?<=[еЕ])\u0308"
    )
    diacritics = (cp for lo, hi in _DIACRITIC_RANGES for cp in range(lo, hi + 1))
    present = char_class(itertools.chain(table, diacritics))
    bases_set = frozenset(map(chr, bases))
    return _Accents(table, re.compile(present), re.compile(loose), bases_set)


@functools.cache
def _tables() -> re.Pattern[str]:
    """A character that traditional → simplified or the accents act on."""
    diacritics = (cp for lo, hi in _DIACRITIC_RANGES for cp in range(lo, hi + 1))
    return re.compile(char_class(itertools.chain(_t2s(), _accents().table, diacritics)))


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


# Trade mark signs, which NFKC spells out as letters glued to the brand before them
# ("Acme™" was "acmetm", so ``acme`` missed it): a space, as ``®`` is not a letter either.
_MARK_SIGNS = str.maketrans({"\u2122": " ", "\u2120": " "})  # ™ ℠


def fold(text: str) -> str:
    """The canonical form (see the module docstring)."""
    if text.isascii():
        return text.lower()
    if "\u2122" in text or "\u2120" in text:
        text = text.translate(_MARK_SIGNS)
    # "İ" case-folds to "i" + U+0307 (combining dot above): plain "i", as Turkish means it
    out = unicodedata.normalize("NFKC", text).casefold().replace("i\u0307", "i")
    if _tables().search(out):  # one search for the two tables (most texts need neither)
        if _trad_chars().search(out):
            out = out.translate(_t2s())
        accents = _accents()
        if accents.present.search(out):
            if "\U00010795" in text or "\U000107a2" in text:  # see _STROKED_MODIFIERS
                return fold(text.translate(_TO_SENTINELS)).translate(_UNSTROKED)
            out = accents.loose.sub("", out.translate(accents.table))
    if _UNCLEAN.search(out):
        out = _INVISIBLE.sub("", out).replace("\u2019", "'")
    return out


# A hashtag or @handle: its sign, not right after a letter or digit (``a@b.com``, ``C#``).
# (The sign first and the lookbehind after it: ``re`` then skips to signs fast.)
_SIGN = r"[#＃@＠](?<![^\W_][#＃@＠])(?=[^\W_])"
_TAG = re.compile(_SIGN)
_CUT = "\ufdd0"  # a noncharacter: marks a cut through folding (texts never hold it)


def _kind(char: str) -> str:
    """``u``pper, ``l``ower, ``d``igit, ``o`` (a letter without case: CJK, kana, Arabic),
    ``-`` (a mark or an invisible character: part of the letter before it), or ``""`` (not
    part of a tag's word)."""
    if char.isdecimal():
        return "d"
    if char.isupper() or char.istitle():
        return "u"
    if char.islower():
        return "l"
    if char.isalnum():
        return "o"
    if char in INVISIBLE or unicodedata.category(char).startswith("M"):
        return "-"
    return ""


def camel_cuts(text: str) -> list[int]:
    """Offsets in ``text`` where two words of a hashtag or @handle meet.

    Tags are written without spaces, their words told apart by case (``#AcmeRefund``,
    ``@AcmeSupport``) or by digits (``#Covid19``, ``#Top10Brands``). The rule:

    * a cut lower → Upper (``Acme|Refund``), before the last capital of an acronym that a
      word follows (``BBC|News``, ``NASA|Fail``), letter → digit (``Covid|19``,
      ``acme|2024``) and digit → Upper (``Top10|Brands``; digit → lower is not cut:
      ``2nd``, ``4th``, ``5g``);
    * but never one that leaves a single letter as the word's first part: ``iPhone``,
      ``eBay``, ``iPad``, ``mRNA``, ``G7`` stay whole, which keeps ``phone`` or ``bay``
      from matching them (``iPhone15Pro`` is ``iphone|15|pro``); a single capital inside
      (``MakeAGreatDay``, ``PlanB``) is a word;
    * only tags are cut, not running text: ``PayPal`` or ``YouTube`` in a sentence are
      one word (``#PayPal`` is ``pay|pal``: a watch on ``pay`` matches that tag, as it
      matches ``#pay_pal``);
    * ``_`` already separates words; a tag in one case (``#acmerefund``, ``#ACMEFAIL``)
      cannot be cut reliably and is left whole; caseless scripts are never cut (a CJK
      character beside a Latin one is a boundary anyway).

    Splitting only ever adds readings (the matcher tries the text whole and split), so
    ``acmerefund`` and ``#acmerefund`` still match ``#AcmeRefund``.
    """
    if text.isascii():
        return _ascii_cuts(text)
    if not ("#" in text or "@" in text or "＃" in text or "＠" in text):
        return []
    cuts: list[int] = []
    scanned = 0  # where the last tag ended: a sign before that was inside it
    run_end = 0  # where the last run ended: a sign before that is inside it (same end)
    tag_run, cased_or_digit = _tag_classes()
    for sign in _TAG.finditer(text):
        if sign.start() < scanned:
            continue
        # Each run is matched once: a run may be the whole text and hold thousands of signs
        # ("#é_" * 10_000), each of which would read it again (quadratic). A sign inside a
        # run that had its quick tests goes to the scan (which says the same).
        if sign.start() >= run_end:
            run = tag_run.match(text, sign.start())  # the tag, or more
            if run is None:
                continue
            run_end = run.end()
            if not cased_or_digit.search(text, run.start(), run_end):
                scanned = run_end  # no capital, no digit: no cut (most tags of Chinese posts)
                continue
            if run.group().isascii():  # exactly what the scan would read: the regex's cuts
                _ascii_run_cuts(run.group(), run.start(), cuts)
                scanned = run_end
                continue
        word: list[tuple[int, str]] = []  # (offset, kind) of the current word's letters
        i = sign.end()
        while i < len(text):
            char = text[i]
            kind = "o" if char in "_#＃@＠" else _kind(char)  # #AcmeFail#AcmeRefund: two tags
            if kind in ("", "o"):
                _word_cuts(word, cuts)
                word = []
                if not kind:
                    break
            elif kind != "-":
                word.append((i, kind))
            i += 1
        scanned = i
        _word_cuts(word, cuts)
    return cuts


@functools.cache
def _tag_classes() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Two quick tests that spare most tags the character scan (built once, ~50 ms): a
    tag's run, at least as long as what the scan reads (letters, digits, ``_``, signs,
    marks, invisible characters; any character outside the BMP), and a character that can
    start a word (a capital or a digit; again any outside the BMP)."""
    marks, cased = [], []
    for cp in range(0x80, 0x10000):
        char = chr(cp)
        if unicodedata.category(char).startswith("M"):
            marks.append(cp)
        if char.isupper() or char.istitle() or char.isdecimal():
            cased.append(cp)
    astral = "\U00010000-\U0010ffff"
    run = f"{_SIGN}[\\w#＃@＠{INVISIBLE}{char_class(marks)[1:-1]}{astral}]*"
    return re.compile(run), re.compile(f"[A-Z0-9{char_class(cased)[1:-1]}{astral}]")


# camel_cuts for ASCII text (most of it), by regex: a tag with the words inside it run
# together by "_", "#" or "@" (as the scan does); _ASCII_CAMEL says whether it holds a cut
# of the rule (or a single letter's: _ascii_run_cuts drops those). One per sign: ``re``
# finds a pattern that starts with one character much faster than one that starts with a
# class.
_ASCII_TAGS = {
    sign: re.compile(f"{sign}(?<![A-Za-z0-9]{sign})(?=[A-Za-z0-9])[\\w#@]*") for sign in "#@"
}
# A run holding a cut of the rule. (Not a lazy ``[\w#@]*?`` before it in _ASCII_TAGS: a run
# without one was then read again from each of its signs, "#a_" * 10_000 for seconds.)
_ASCII_CAMEL = re.compile("[A-Za-z0-9][A-Z0-9]")
_ASCII_CUT = re.compile(
    r"(?<=[a-z])(?=[A-Z0-9])|(?<=[A-Z])(?=[A-Z][a-z]|[0-9])|(?<=[0-9])(?=[A-Z])"
)


def _ascii_cuts(text: str) -> list[int]:
    cuts: list[int] = []
    signs = 0
    for sign, pattern in _ASCII_TAGS.items():
        if sign in text:
            signs += 1
            tag = pattern.search(text)  # (cheaper than finditer when there is none)
            while tag is not None:
                if _ASCII_CAMEL.search(text, tag.start(), tag.end()):
                    _ascii_run_cuts(tag.group(), tag.start(), cuts)
                tag = pattern.search(text, tag.end())
    # "#a_@BcDe" is a tag run for each sign: the same cuts twice
    return sorted(set(cuts)) if signs > 1 else cuts


def _ascii_run_cuts(run: str, start: int, cuts: list[int]) -> None:
    """The cuts in one ASCII tag ``run`` (its sign first) found at ``start``."""
    for cut in _ASCII_CUT.finditer(run):
        at = cut.start()  # at >= 2: run[0] is the sign, run[at - 1] a letter or digit
        if not (run[at - 2] in "_#@" and run[at - 1].isalpha()):  # iPhone, eBay
            cuts.append(start + at)


def _word_cuts(word: list[tuple[int, str]], cuts: list[int]) -> None:
    """The cuts inside one run of cased letters and digits (``camel_cuts``' rule)."""
    for k in range(1, len(word)):
        before, here = word[k - 1][1], word[k][1]
        after = word[k + 1][1] if k + 1 < len(word) else ""
        cut = (
            (before == "l" and here == "u")
            or (before == "u" and here == "u" and after == "l")
            or (before in "lu" and here == "d")
            or (before == "d" and here == "u")
        )
        if cut and not (k == 1 and before in "lu"):
            cuts.append(word[k][0])


def fold_cuts(text: str, folded: str) -> tuple[int, ...]:
    """Where the words of ``text``'s camel-case tags (:func:`camel_cuts`) meet in
    ``folded``, which is ``fold(text)``.

    ASCII text keeps its offsets (``lower()``). Other text is folded again with a marker
    at each cut: folding works character by character there (a cut lies between two
    letters or digits, never before a combining mark), so the marked fold less its markers
    is ``folded`` again; were it ever not, the text would have no cut.
    """
    cuts = camel_cuts(text)
    if not cuts:
        return ()
    if text.isascii():
        return tuple(cuts)
    if _CUT in text:
        return ()
    bounds = (0, *cuts, len(text))
    parts = fold(_CUT.join(text[a:b] for a, b in itertools.pairwise(bounds))).split(_CUT)
    if "".join(parts) != folded:
        return ()
    return tuple(sorted(set(itertools.accumulate(len(p) for p in parts[:-1]))))


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
        changed = changed or char in STROKES or char in _STROKED_MODIFIERS
        if changed or _UNCLEAN.match(char):
            folded = fold(char)
            if folded != char:
                out[char] = folded
    return out


@functools.cache
def _composing() -> frozenset[str]:
    """What NFKC may compose into the character before it: every combining mark, what
    NFKC makes a mark (half-width ``ﾞ``/``ﾟ``: ``ｶﾞ`` is ``ガ``) and Hangul jamo (built
    once, ~1 s)."""
    out = set()
    for cp in range(0x300, sys.maxunicode + 1):
        char = chr(cp)
        if unicodedata.combining(char) or unicodedata.category(char).startswith("M"):
            out.add(char)
    out.update(v for v, f in _folds().items() if f and unicodedata.category(f[0])[0] == "M")
    for lo, hi in _HANGUL_JAMO:
        out.update(chr(cp) for cp in range(lo, hi + 1))
    return frozenset(out)


def _composes(wanted: set[str]) -> bool:
    """Whether a character of ``wanted`` could be composed by NFKC (then every mark and
    jamo is a variant)."""
    return any(unicodedata.decomposition(c) or "\uac00" <= c <= "\ud7af" for c in wanted)


def _diacritics() -> set[str]:
    return {chr(cp) for lo, hi in _DIACRITIC_RANGES for cp in range(lo, hi + 1)}


def _folding_into(wanted: set[str]) -> set[str]:
    """What ``lower()`` leaves and ``fold`` turns into a character of ``wanted`` on its own."""
    return {v for v, f in _folds().items() if v == v.lower() and wanted.intersection(f)}


def variant_chars(alphabet: Iterable[str]) -> re.Pattern[str] | None:
    """A character class of what ``str.lower()`` leaves but ``fold`` turns into ``alphabet``.

    A text without any of these folds, as far as ``alphabet``'s characters go, the same
    under ``lower()`` as under ``fold``. Combining marks (and Hangul jamo) are added when the
    alphabet holds a character they could compose into; the diacritical marks ``fold``
    takes off (``e`` + U+0301 folds to ``e``) when it holds a letter that loses them.
    """
    wanted = {c for c in alphabet if not c.isspace()}
    chars = _folding_into(wanted)
    if "i" in wanted:  # "İ".lower() is "i" + U+0307
        chars.add("\u0307")
    if not _accents().bases.isdisjoint(wanted):
        chars |= _diacritics()
    if _composes(wanted):
        chars |= _composing()
    if not chars:
        return None
    return re.compile(char_class(ord(c) for c in chars))


class Prefold:
    """``lower()`` without invisible characters, unless a character could fold into the
    watched alphabet: then ``fold``.

    A diacritical mark that is a variant only because ``fold`` takes it off a Latin, Greek
    or Cyrillic letter changes nothing after any other character (kaomoji write ``•̀``,
    ``•́``: a few in every thousand Weibo posts), so there the search goes on. Not so for
    a mark that folds into the alphabet by itself (U+0345 is ``ι``) or that could compose
    into one of its characters.
    """

    def __init__(self, alphabet: Iterable[str]) -> None:
        wanted = {c for c in alphabet if not c.isspace()}
        self._variants = variant_chars(wanted)
        loose = set() if _composes(wanted) else _diacritics() - _folding_into(wanted)
        self._loose = frozenset(loose)
        self._bases = _accents().bases

    def __call__(self, text: str) -> str:
        if text.isascii():
            return text.lower()
        low = _INVISIBLE.sub("", text.lower())  # Weibo puts U+200B in most posts
        variants = self._variants
        if variants is None:
            return low
        found = variants.search(low)
        while found is not None:
            at = found.start()
            if low[at] not in self._loose or self._after_base(low, at):
                return fold(text)
            # past the whole run of loose marks: each mark of a long run after a symbol
            # (40,000 of them) would otherwise walk back over all those before it
            end = at + 1
            while end < len(low) and low[end] in self._loose:
                end += 1
            found = variants.search(low, end)
        return low

    def _after_base(self, low: str, at: int) -> bool:
        """Whether the mark at ``at`` (and those before it) follows a letter that loses it."""
        while at > 0 and low[at - 1] in self._loose:
            at -= 1
        return at > 0 and low[at - 1] in self._bases
