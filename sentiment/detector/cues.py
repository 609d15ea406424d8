"""Complaint cues: words that mark a post as a complaint or an alarm ("refund", "维权").

Cues of every language are checked on every text (a Chinese cue never matches English
text anyway, and ``lang`` is often missing or wrong). Text and cues are compared in NFKC,
case-folded form. Cues written in ASCII match whole words only ("fire" does not match
"firefox"); other cues (Chinese has no spaces) match anywhere.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence


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

    def find(self, text: str) -> tuple[str, ...]:
        """The distinct cues in ``text``, in order of appearance."""
        if self._pattern is None or not text:
            return ()
        return tuple(dict.fromkeys(m.group(0) for m in self._pattern.finditer(_fold(text))))
