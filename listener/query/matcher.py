"""Evaluating a compiled query against one mention.

The compiler turns the syntax tree into these nodes once; matching walks them for the
texts that passed the prefilter only. A :class:`Subject` is one mention's folded text
with lazily computed, cached facts (which atoms occur, where, the word positions), shared
by every watch that looks at the mention.
"""

from __future__ import annotations

import bisect
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

from listener.query.fold import WORD

Span = tuple[int, int]  # [first word, last word + 1)


@dataclass(frozen=True, eq=False)
class Atom:
    """One literal of a query: a word, a phrase or a prefix, with its compiled pattern."""

    key: str  # the folded text (+ "*" for a prefix): atoms with one key share results
    display: str  # as the user wrote it, reported in WatchMatch.terms
    pattern: re.Pattern[str]
    literal: str  # a piece every occurrence contains verbatim (for the prefilter)


class Subject:
    """One mention as the matcher sees it: folded text, language, source."""

    __slots__ = ("_ends", "_found", "_spans", "_starts", "lang", "source", "text")

    def __init__(self, text: str, lang: str | None, source: str | None) -> None:
        self.text = text  # already folded (listener.query.fold.fold)
        self.lang = primary_lang(lang) if lang else ""
        self.source = source.strip().lower() if source else ""
        self._found: dict[str, bool] = {}
        self._spans: dict[str, list[Span]] = {}
        self._starts: list[int] | None = None
        self._ends: list[int] = []

    def found(self, atom: Atom) -> bool:
        hit = self._found.get(atom.key)
        if hit is None:
            # the substring test is much cheaper than the regex and usually says no
            hit = atom.literal in self.text and atom.pattern.search(self.text) is not None
            self._found[atom.key] = hit
        return hit

    def spans(self, atom: Atom) -> list[Span]:
        """Where ``atom`` occurs, in words."""
        spans = self._spans.get(atom.key)
        if spans is None:
            if self._starts is None:
                words = [m.span() for m in WORD.finditer(self.text)]
                self._starts = [s for s, _ in words]
                self._ends = [e for _, e in words]
            spans = self._spans[atom.key] = [
                (
                    bisect.bisect_right(self._ends, m.start()),
                    bisect.bisect_left(self._starts, m.end()),
                )
                for m in atom.pattern.finditer(self.text)
            ]
        return spans


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
    """An OR whose operands all have positions (and an alias's entries)."""

    def __init__(self, operands: tuple[Positional, ...]) -> None:
        self.operands = operands
        # the common case, a list of literals, tested without a call per operand
        atoms = [o.atom for o in operands if isinstance(o, AtomNode)]
        self.atoms = tuple(atoms) if len(atoms) == len(operands) else None

    def matches(self, subject: Subject) -> bool:
        if self.atoms is not None:
            found = subject.found
            return any(found(a) for a in self.atoms)
        return any(o.matches(subject) for o in self.operands)

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
                if max(b_start - a_end, a_start - b_end) <= self.distance:
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
