"""Compiled watch matching: which watches a mention's text belongs to.

Rules (the foundation; a boolean query language comes later and replaces ``terms``):

* Case-insensitive, after Unicode NFKC normalisation (full-width Latin letters, common
  in Chinese text, match their ASCII forms).
* A term's Latin (or other spaced-script) ends must sit on word boundaries: ``acme``
  matches ``Acme's``, ``#acme`` and ``@acme_support`` (``_`` separates words in handles)
  but not ``acmeville``. A CJK character next to the term
  is a boundary (``Nimbus手机`` mentions ``Nimbus``). Whitespace inside a phrase matches any
  run of whitespace.
* A term whose end is a CJK character matches as a substring on that side (Chinese and
  Japanese are written without spaces).
* Any exclusion term vetoes the watch (same rules as terms).
* ``langs`` keeps mentions of those languages (primary subtag: ``zh`` takes ``zh-Hant``);
  a mention of unknown language passes.
* ``match_all`` watches match every mention their ``langs``/``exclude`` let through.
* A mention that continues a matched one (repost/reply) can inherit that watch even if its
  own text is empty; exclusions in its own text still veto (see ``match``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from core.events import WatchMatch
from listener.config import WatchConfig

# Scripts written without spaces between words: a term ending in one of these matches as
# a substring, and these characters count as a word boundary for Latin terms.
_CJK = (
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
_CJK_CHAR = re.compile(f"[{_CJK}]")
# A "word character" for boundaries: letters/digits of spaced scripts (not _ , not CJK).
_WORD = f"[^\\W_{_CJK}]"
_LEFT = f"(?<!{_WORD})"
_RIGHT = f"(?!{_WORD})"


def normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def _is_word_end(char: str) -> bool:
    return (char.isalnum() or char == "_") and not _CJK_CHAR.match(char)


def term_pattern(term: str) -> str:
    """The regex source for one term (see the module docstring for the rules)."""
    norm = normalize(term).strip()
    if not norm:
        raise ValueError("empty watch term")
    body = r"\s+".join(re.escape(part) for part in norm.split())
    left = _LEFT if _is_word_end(norm[0]) else ""
    right = _RIGHT if _is_word_end(norm[-1]) else ""
    return f"{left}{body}{right}"


def _compile_any(terms: Sequence[str]) -> re.Pattern[str] | None:
    if not terms:
        return None
    # Longest first so that the prefilter does not stop at a shorter overlapping term.
    ordered = sorted(terms, key=len, reverse=True)
    return re.compile("|".join(f"(?:{term_pattern(t)})" for t in ordered), re.IGNORECASE)


@dataclass(frozen=True)
class CompiledWatch:
    id: str
    brand: str
    match_all: bool
    terms: tuple[tuple[str, re.Pattern[str]], ...]
    any_term: re.Pattern[str] | None
    exclude: re.Pattern[str] | None
    langs: frozenset[str] | None

    @classmethod
    def compile(cls, config: WatchConfig) -> CompiledWatch:
        terms = tuple(dict.fromkeys(config.terms))  # drop repeated terms, keep order
        langs = None
        if config.langs is not None:
            langs = frozenset(_primary(lang) for lang in config.langs)
        return cls(
            id=config.id,
            brand=config.brand,
            match_all=config.match_all,
            terms=tuple((t, re.compile(term_pattern(t), re.IGNORECASE)) for t in terms),
            any_term=_compile_any(terms),
            exclude=_compile_any(config.exclude),
            langs=langs,
        )

    def admits(self, text: str, lang: str | None) -> bool:
        """Language filter and exclusions (``text`` already normalised)."""
        if self.langs is not None and lang and _primary(lang) not in self.langs:
            return False
        return not (self.exclude is not None and self.exclude.search(text))

    def matched_terms(self, text: str) -> tuple[str, ...]:
        """The configured terms found in ``text`` (already normalised), in config order."""
        if self.any_term is None or not self.any_term.search(text):
            return ()
        return tuple(term for term, pattern in self.terms if pattern.search(text))


def _primary(lang: str) -> str:
    return lang.strip().lower().replace("_", "-").split("-", 1)[0]


class WatchMatcher:
    """Matches texts against every configured watch."""

    def __init__(self, watches: Iterable[WatchConfig]) -> None:
        self._watches = tuple(CompiledWatch.compile(w) for w in watches)
        self._by_id = {w.id: w for w in self._watches}
        self._results: dict[tuple[str, tuple[str, ...]], WatchMatch] = {}

    @property
    def watch_ids(self) -> tuple[str, ...]:
        return tuple(self._by_id)

    def match(
        self,
        text: str,
        lang: str | None = None,
        inherited: Mapping[str, WatchMatch] | None = None,
    ) -> list[WatchMatch]:
        """Every watch ``text`` matches, in config order.

        ``inherited`` are the watches of the mention this one reposts or replies to (by
        watch id): they match too unless this text's exclusions or language veto them, and
        keep the parent's matched terms when this text matches none itself.
        """
        norm = normalize(text)
        out: list[WatchMatch] = []
        for watch in self._watches:
            if not watch.admits(norm, lang):
                continue
            if watch.match_all:
                out.append(self._result(watch, ()))
                continue
            terms = watch.matched_terms(norm)
            if terms:
                out.append(self._result(watch, terms))
            elif inherited and watch.id in inherited:
                out.append(self._result(watch, inherited[watch.id].terms))
        return out

    def _result(self, watch: CompiledWatch, terms: tuple[str, ...]) -> WatchMatch:
        """The (immutable) WatchMatch, built once per watch and term combination."""
        key = (watch.id, terms)
        found = self._results.get(key)
        if found is None:
            if len(self._results) > 10_000:  # inherited terms could be anything
                self._results.clear()
            found = self._results[key] = WatchMatch(id=watch.id, brand=watch.brand, terms=terms)
        return found
