"""Evaluating a compiled query against one mention.

The compiler turns the syntax tree into these nodes once; matching walks them for the
texts that passed the prefilter only. A :class:`Subject` is one mention's folded text
with lazily computed, cached facts (which atoms occur, where, the word positions), shared
by every watch that looks at the mention.

A text with camel-case hashtags or handles (``#AcmeRefund``) is read twice: whole, and
split into the tags' words (``#acme refund``, see ``fold.camel_cuts``); a literal occurs
if it occurs in either reading, so ``acme``, ``"acme refund"`` and ``acmerefund`` all
match ``#AcmeRefund``. Positions (spans, words for NEAR/n) are those of the split
reading: a tag's words are words of their own.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import pairwise

from core.events import language_of
from listener.query.fold import WORD, WORD_CHAR, fold, fold_cuts

Span = tuple[int, int]  # [start, end) character offsets in Subject.positions
_FEW_PAIRS = 64  # up to this many NEAR pairs, each is checked; more: by bisection
_WORD_CHAR = re.compile(WORD_CHAR)
_WORD_RUN = re.compile(f"{WORD_CHAR}*")


class Pattern:
    """Where one literal occurs in a folded text: a regex for its body (its pieces, and the
    whitespace between them), and the word boundaries at its ends, checked here.

    Not one regex with the boundaries as lookarounds: ``re`` spells out the CJK ranges of
    such a class at each compile (~4 ms), so a query of 1,700 terms, or an alias list of
    thousands, took seconds to validate and as long again to start (and the first text
    holding one word common to many entries, as long again to match). Searching is as
    fast: a lookbehind first keeps ``re`` from skipping to the body's first character.

    The body's match from a given start is unique (its pieces hold no whitespace), so
    checking the boundaries of each match, and searching again one character on where
    they fail, finds what the lookarounds would.
    """

    __slots__ = ("_body", "_left", "_right", "_run_on")

    def __init__(self, body: str, *, left: bool, right: bool, run_on: bool) -> None:
        self._body = re.compile(body)
        self._left = left  # no letter or digit (outside CJK) right before it
        self._right = right  # nor right after it
        self._run_on = run_on  # a prefix: the match runs on to the end of its word

    def search(self, text: str, pos: int = 0) -> Span | None:
        """The first occurrence at or after ``pos``."""
        body = self._body
        found = body.search(text, pos)
        while found is not None:
            start, end = found.span()
            if not (self._left and start and _WORD_CHAR.match(text, start - 1)):
                if self._run_on:
                    run = _WORD_RUN.match(text, end)
                    return start, run.end() if run else end
                if not (self._right and _WORD_CHAR.match(text, end)):
                    return start, end
            resume = start + 1
            if self._left:  # no start inside this word has a boundary before it: skip it
                run = _WORD_RUN.match(text, start)
                if run and run.end() > start:  # ("aa" in "aaaa…" once, not per letter)
                    resume = run.end() + 1
            found = body.search(text, resume)
        return None

    def spans(self, text: str) -> list[Span]:
        """Every occurrence, left to right, none overlapping the one before."""
        out: list[Span] = []
        span = self.search(text)
        while span is not None:
            out.append(span)
            span = self.search(text, max(span[1], span[0] + 1))
        return out


@dataclass(frozen=True, eq=False)
class Atom:
    """One literal of a query: a word, a phrase or a prefix, with its pattern."""

    key: str  # the folded text (+ "*" for a prefix): atoms with one key share results
    display: str  # as the user wrote it, reported in WatchMatch.terms
    pattern: Pattern
    literal: str  # a piece every occurrence contains verbatim (for the prefilter)


class Subject:
    """One mention as the matcher sees it: folded text, language, source.

    :meth:`of` folds a raw text and keeps it for the split reading of its camel-case tags
    (see the module docstring), which is found only when first needed: when a literal is
    in the text but its pattern does not match there (``acme`` in ``#acmerefund``), or
    for positions (NEAR/n). A literal holds no whitespace, so one not in the text is in
    neither reading: most texts never need the split one.
    """

    __slots__ = (
        "_cuts",
        "_found",
        "_raw",
        "_spans",
        "_split",
        "_words",
        "lang",
        "near",
        "source",
        "text",
    )

    def __init__(
        self, text: str, lang: str | None, source: str | None, *, raw: str | None = None
    ) -> None:
        self.text = text  # already folded (listener.query.fold.fold)
        self.lang = primary_lang(lang) if lang else ""
        self.source = source.strip().lower() if source else ""
        self._found: dict[str, bool] = {}
        self._spans: dict[str, list[Span]] = {}
        self._words: tuple[list[int], list[int]] | None = None
        self._raw = raw  # the text before folding (None: no split reading)
        self._cuts: tuple[int, ...] | None = None  # where the tags' words meet, in text
        self._split: str | None = None  # the text with a space at each cut, if any
        self.near: dict[NearNode, list[Span]] = {}  # each NEAR's spans, once found

    @classmethod
    def of(cls, text: str, lang: str | None = None, source: str | None = None) -> Subject:
        """The subject of a raw (unfolded) text, camel-case tags split too."""
        return cls(fold(text), lang, source, raw=text)

    def _split_reading(self) -> str | None:
        """The text with a space where the words of a camel-case tag meet (None: no such
        tag), found once."""
        if self._cuts is None:
            cuts: tuple[int, ...] = ()
            if self._raw is not None:
                cuts = fold_cuts(self._raw, self.text)
            self._cuts = cuts
            if cuts:
                bounds = (0, *cuts, len(self.text))
                self._split = " ".join(self.text[a:b] for a, b in pairwise(bounds))
        return self._split

    @property
    def positions(self) -> str:
        """The text that spans and word positions refer to: the split reading, if any."""
        if self._cuts is None:
            self._split_reading()
        return self._split or self.text

    def found(self, atom: Atom) -> bool:
        hit = self._found.get(atom.key)
        if hit is None:
            # the substring test is much cheaper than the regex and usually says no; the
            # split reading only adds spaces, so a literal not in the text is in neither
            text = self.text
            if atom.literal not in text:
                hit = False
            elif atom.pattern.search(text) is not None:
                hit = True
            else:
                split = self._split_reading() if self._raw is not None else None
                hit = split is not None and atom.pattern.search(split) is not None
            self._found[atom.key] = hit
        return hit

    def spans(self, atom: Atom) -> list[Span]:
        """Where ``atom`` occurs (character offsets in :attr:`positions`)."""
        spans = self._spans.get(atom.key)
        if spans is None:
            spans = atom.pattern.spans(self.text)
            split = self._split_reading()
            if split is not None:  # both readings, in the split one's offsets
                cuts = self._cuts or ()
                whole = [(s + bisect_right(cuts, s), e + bisect_left(cuts, e)) for s, e in spans]
                spans = sorted({*whole, *atom.pattern.spans(split)})
            self._spans[atom.key] = spans
        return spans

    def words_before(self, pos: int) -> int:
        """How many words start before ``pos``."""
        return bisect_left(self._word_bounds()[0], pos)

    def words_by(self, pos: int) -> int:
        """How many words end at or before ``pos``."""
        return bisect_right(self._word_bounds()[1], pos)

    def words_between(self, start: int, end: int, limit: int) -> int:
        """How many words ``positions[start:end]`` holds, counted up to ``limit + 1``."""
        count = 0
        for _ in WORD.finditer(self.positions, start, end):
            count += 1
            if count > limit:
                break
        return count

    def _word_bounds(self) -> tuple[list[int], list[int]]:
        """The starts and the ends of the text's words (WORD), found once."""
        if self._words is None:
            spans = [m.span() for m in WORD.finditer(self.positions)]
            self._words = [s for s, _ in spans], [e for _, e in spans]
        return self._words


def primary_lang(lang: str) -> str:
    """``zh-Hant`` → ``zh``; ``und`` and the other codes that name no language (X's
    hashtag- or media-only posts: ``core.events.NO_LANGUAGE``) → ``""``, no language
    given."""
    return language_of(lang)


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
    """Occurrences of both sides with at most ``distance`` words between them.

    Its spans are the unions of such pairs. With many occurrences of both sides (a long
    post repeating them), word counts are bisections of the text's word bounds, O(n log n)
    rather than a count per pair, and only the spans an enclosing NEAR can tell apart are
    kept: a span inside another one is never nearer to anything, so per left occurrence the
    farthest right one within reach on either side (and any overlapping one).
    """

    def __init__(self, left: Positional, right: Positional, distance: int) -> None:
        self.left = left
        self.right = right
        self.distance = distance

    def matches(self, subject: Subject) -> bool:
        known = subject.near.get(self)
        if known is not None:
            return bool(known)
        if not (self.left.matches(subject) and self.right.matches(subject)):
            subject.near[self] = []
            return False
        return bool(self._pairs(subject, first=True))

    def spans(self, subject: Subject) -> list[Span]:
        """Found once per subject: each NEAR of a chain (``a NEAR/1 b NEAR/2 c …``) asks
        for its operands' matches and then their spans, so without it the work doubled
        with each link (a chain of 20 took 3.5 s on a 21-word text, one of 30 an hour)."""
        known = subject.near.get(self)
        if known is None:
            known = []
            if self.left.matches(subject) and self.right.matches(subject):
                known = self._pairs(subject, first=False)
            subject.near[self] = known
        return known

    def _pairs(self, subject: Subject, *, first: bool) -> list[Span]:
        lefts, rights = self.left.spans(subject), self.right.spans(subject)
        if len(lefts) * len(rights) <= _FEW_PAIRS:
            return self._each_pair(subject, lefts, rights, first=first)
        return self._reachable(subject, lefts, rights, first=first)

    def _each_pair(
        self, subject: Subject, lefts: list[Span], rights: list[Span], *, first: bool
    ) -> list[Span]:
        """Every pair, counting the words between (cheapest for a short text)."""
        out: list[Span] = []
        for a_start, a_end in lefts:
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

    def _reachable(
        self, subject: Subject, lefts: list[Span], rights: list[Span], *, first: bool
    ) -> list[Span]:
        """Per left occurrence, the farthest right ones within reach, by bisection."""
        out: list[Span] = []
        rights = outermost(rights)
        starts = [s for s, _ in rights]  # both increasing (outermost)
        ends = [e for _, e in rights]
        # words before each right start / ended by each right end: increasing too
        before_start = [subject.words_before(s) for s in starts]
        by_end = [subject.words_by(e) for e in ends]
        d = self.distance
        for a_start, a_end in outermost(lefts):
            after = bisect_left(starts, a_end)  # rights[after:] start at or after a's end
            behind = bisect_right(ends, a_start)  # rights[:behind] end at or before a's start
            if after < len(rights) and before_start[after] - subject.words_by(a_end) <= d:
                # the farthest right occurrence after a within reach
                last = bisect_right(before_start, subject.words_by(a_end) + d) - 1
                out.append((a_start, ends[last]))
            if behind > 0 and subject.words_before(a_start) - by_end[behind - 1] <= d:
                # the farthest right occurrence before a within reach
                far = bisect_left(by_end, subject.words_before(a_start) - d)
                out.append((starts[far], a_end))
            for b_start, b_end in rights[behind:after]:  # overlapping occurrences
                out.append((min(a_start, b_start), max(a_end, b_end)))
            if first and out:
                return out
        return out


def outermost(spans: list[Span]) -> list[Span]:
    """``spans`` without those inside another one, by start: ends increase with starts."""
    out: list[Span] = []
    for start, end in sorted(spans, key=lambda s: (s[0], -s[1])):
        if not out or end > out[-1][1]:
            out.append((start, end))
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
        self.lang = primary_lang(lang)

    def matches(self, subject: Subject) -> bool:
        return subject.lang == self.lang


class SourceNode(Node):
    """``source:weibo``: the mention's source (case-insensitive); unknown never matches."""

    def __init__(self, source: str) -> None:
        self.source = source

    def matches(self, subject: Subject) -> bool:
        return subject.source == self.source
