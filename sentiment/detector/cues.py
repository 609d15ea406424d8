"""Complaint cues: words that mark a post as a complaint or an alarm ("refund", "维权").

Cues of every language are checked on every text (a Chinese cue never matches English
text anyway, and ``lang`` is often missing or wrong). Text and cues are compared in NFKC,
case-folded form. Cues written in ASCII match whole words only ("fire" does not match
"firefox"); other cues (Chinese has no spaces) match anywhere.

Most posts hold no cue, and the pattern (one alternative per cue, tried at every
character) costs about 14 us on a tweet. So a text is first screened: an ASCII cue can
only match where its last run of letters and digits is a whole run of the text (the
pattern's word boundaries), and a non-ASCII cue only in a text that holds its last
non-ASCII character. Two set intersections (the text's runs, its characters) answer "no
cue" for most posts in about 5 us with the fold; the pattern runs on the rest, so the
answer is always the pattern's. Reposts repeat texts ("转发微博。" is 3 % of the Weibo
stream, and about a fifth of its texts come again): the answers for the latest
``RECENT_TEXTS`` distinct short texts (``RECENT_TEXT_CHARS`` at most: reposts are short,
and 4,096 article bodies of 40,000 characters would hold hundreds of MB) are kept.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence

_RUN = re.compile(r"[a-z0-9]+")
RECENT_TEXTS = 4096  # texts whose answer is kept (then all forgotten at once)
RECENT_TEXT_CHARS = 500  # ... of at most this many characters


def _fold(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


class ComplaintCues:
    def __init__(self, lexicons: Mapping[str, Sequence[str]]) -> None:
        cues = dict.fromkeys(_fold(cue) for words in lexicons.values() for cue in words)
        cues.pop("", None)
        # Longest first, so that "caught fire" wins over "fire".
        ordered = sorted(cues, key=lambda c: (-len(c), c))
        words = [re.escape(c) for c in ordered if c.isascii()]
        anywhere = [re.escape(c) for c in ordered if not c.isascii()]
        parts = []
        if words:
            parts.append(r"(?<![a-z0-9])(?:" + "|".join(words) + r")(?![a-z0-9])")
        if anywhere:
            parts.append("(?:" + "|".join(anywhere) + ")")
        self._pattern = re.compile("|".join(parts)) if parts else None
        # the screen: the last ASCII run of each word cue (None: a cue without one, which
        # the screen cannot rule out), and the last non-ASCII character of each other cue
        lasts = [_RUN.findall(c) for c in ordered if c.isascii()]
        self._last_runs: frozenset[str] | None = (
            frozenset(runs[-1] for runs in lasts) if all(lasts) else None
        )
        self._marks = frozenset(
            [ch for ch in c if not ch.isascii()][-1] for c in ordered if not c.isascii()
        )
        self._recent: dict[str, tuple[str, ...]] = {}

    def find(self, text: str) -> tuple[str, ...]:
        """The distinct cues in ``text``, in order of appearance."""
        if self._pattern is None or not text:
            return ()
        known = self._recent.get(text)
        if known is not None:
            return known
        folded = _fold(text)
        found: tuple[str, ...] = ()
        if self._may_hold(folded):
            found = tuple(dict.fromkeys(m.group(0) for m in self._pattern.finditer(folded)))
        if len(text) <= RECENT_TEXT_CHARS:
            recent = self._recent
            if len(recent) >= RECENT_TEXTS:
                recent.clear()
            recent[text] = found
        return found

    def _may_hold(self, folded: str) -> bool:
        """False only where the pattern cannot match ``folded`` (the screen above)."""
        if self._last_runs is None or not self._last_runs.isdisjoint(_RUN.findall(folded)):
            return True
        return not folded.isascii() and not self._marks.isdisjoint(folded)
