"""Evaluating a compiled query against one mention.

The compiler turns the syntax tree into these nodes once; matching walks them for the
texts that passed the prefilter only. A :class:`Subject` is one mention's folded text
with lazily computed, cached facts (which atoms occur, where, the word positions), shared
by every watch that looks at the mention.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

from listener.query.fold import WORD

Span = tuple[int, int]  # [start, end) character offsets in the folded text


@dataclass(frozen=True, eq=False)
class Atom:
    """One literal of a query: a word, a phrase or a prefix, with its compiled pattern."""

    key: str  # the folded text (+ "*" for a prefix): atoms with one key share results
    display: str  # as the user wrote it, reported in WatchMatch.terms
    pattern: re.Pattern[str]
    literal: str  # a piece every occurrence contains verbatim (for the prefilter)


class Subject:
    """One mention as the matcher sees it: folded text, language, source."""

    __slots__ = ("_found", "_spans", "lang", "source", "text")

    def __init__(self, text: str, lang: str | None, source: str | None) -> None:
        self.text = text  # already folded (listener.query.fold.fold)
        self.lang = primary_lang(lang) if lang else ""
        self.source = source.strip().lower() if source else ""
        self._found: dict[str, bool] = {}
        self._spans: dict[str, list[Span]] = {}

    def found(self, atom: Atom) -> bool:
        hit = self._found.get(atom.key)
        if hit is None:
            # the substring test is much cheaper than the regex and usually says no
            hit = atom.literal in self.text and atom.pattern.search(self.text) is not None
            self._found[atom.key] = hit
        return hit

    def spans(self, atom: Atom) -> list[Span]:
        """Where ``atom`` occurs (character offsets)."""
        spans = self._spans.get(atom.key)
        if spans is None:
            spans = self._spans[atom.key] = [m.span() for m in atom.pattern.finditer(self.text)]
        return spans

    def words_between(self, start: int, end: int, limit: int) -> int:
        """How many words ``text[start:end]`` holds, counted up to ``limit + 1``."""
        count = 0
        for _ in WORD.finditer(self.text, start, end):
            count += 1
            if count > limit:
                break
        return count


def primary_lang(lang: str) -> str:
    """``zh-Hant`` → ``zh``."""
    return lang.strip().lower().replace("_", "-").split("-", 1)[0]


class Node(ABC):
    @abstractmethod
    def matches(self, subject: Subject) -> bool: ...


class Positional(Node):
    @abstractmethod
    def spans(self, subject: Subject) -> list[Span]: ...


class AtomNode(Positional):
    def __init__(self, atom: Atom) -> None:
        self.atom = atom

    def matches(self, subject: Subject) -> bool:
        return subject.found(self.atom)

    def spans(self, subject: Subject) -> list[Span]:
        return subject.spans(self.atom)


class AnyNode(Positional):
    """An OR whose operands all have positions (and an alias's entries).

    Nested groups of this kind are flattened, and plain literals are tested first, without
    a call per operand; NEARs (which need word positions) only when no literal matched.
    """

    def __init__(self, operands: tuple[Positional, ...]) -> None:
        flat: list[Positional] = []
        for o in operands:
            flat.extend(o.operands if isinstance(o, AnyNode) else (o,))
        self.operands: tuple[Positional, ...] = tuple(flat)
        self.atoms = tuple(o.atom for o in flat if isinstance(o, AtomNode))
        self.others = tuple(o for o in flat if not isinstance(o, AtomNode))

    def matches(self, subject: Subject) -> bool:
        found = subject.found
        return any(found(a) for a in self.atoms) or any(o.matches(subject) for o in self.others)

    def spans(self, subject: Subject) -> list[Span]:
        return [s for o in self.operands if o.matches(subject) for s in o.spans(subject)]


class NearNode(Positional):
    """Occurrences of both sides with at most ``distance`` words between them."""

    def __init__(self, left: Positional, right: Positional, distance: int) -> None:
        self.left = left
        self.right = right
        self.distance = distance

    def matches(self, subject: Subject) -> bool:
        if not (self.left.matches(subject) and self.right.matches(subject)):
            return False
        return bool(self._pairs(subject, first=True))

    def spans(self, subject: Subject) -> list[Span]:
        if not (self.left.matches(subject) and self.right.matches(subject)):
            return []
        return self._pairs(subject, first=False)

    def _pairs(self, subject: Subject, *, first: bool) -> list[Span]:
        out: list[Span] = []
        rights = self.right.spans(subject)
        for a_start, a_end in self.left.spans(subject):
            for b_start, b_end in rights:
                if a_end <= b_start:
                    words = subject.words_between(a_end, b_start, self.distance)
                elif b_end <= a_start:
                    words = subject.words_between(b_end, a_start, self.distance)
                else:  # overlapping occurrences
                    words = 0
                if words <= self.distance:
                    out.append((min(a_start, b_start), max(a_end, b_end)))
                    if first:
                        return out
        return out


class AndNode(Node):
    def __init__(self, operands: tuple[Node, ...]) -> None:
        self.operands = operands

    def matches(self, subject: Subject) -> bool:
        return all(o.matches(subject) for o in self.operands)


class OrNode(Node):
    def __init__(self, operands: tuple[Node, ...]) -> None:
        self.operands = operands

    def matches(self, subject: Subject) -> bool:
        return any(o.matches(subject) for o in self.operands)


class NotNode(Node):
    def __init__(self, operand: Node) -> None:
        self.operand = operand

    def matches(self, subject: Subject) -> bool:
        return not self.operand.matches(subject)


class LangNode(Node):
    """``lang:zh``: the mention's primary language subtag; ``lang:und``: no language given."""

    def __init__(self, lang: str) -> None:
        self.lang = "" if lang == "und" else primary_lang(lang)

    def matches(self, subject: Subject) -> bool:
        return subject.lang == self.lang


class SourceNode(Node):
    """``source:weibo``: the mention's source (case-insensitive); unknown never matches."""

    def __init__(self, source: str) -> None:
        self.source = source

    def matches(self, subject: Subject) -> bool:
        return subject.source == self.source
