"""Why a compiled query matches a text, or what stopped it: read-only over the compiled tree.

``explain(query, subject)`` walks ``CompiledQuery.root`` with the subject's own (cached)
facts, as ``CompiledQuery.matches`` does, and says which literals made the match and
where, or which parts stopped it (a literal not found, a NEAR whose sides are too far
apart, a ``lang:``/``source:`` filter, a ``NOT`` part that found something). It evaluates
every part instead of stopping at the first that decides, so it costs more than
``matches``: it is for previews (``crisiswatch watches test``), never for the stream, and
nothing on the matching path calls it. Its ``matched`` is ``query.matches(subject)``.

Positions (``Hit.span``) are those of ``Subject.positions`` (the folded text, split at
camel-case tags); :meth:`TextMap.locate` maps them back onto the text as written.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from listener.query import matcher as m
from listener.query.compiler import CompiledQuery, entry_atom
from listener.query.fold import fold, fold_cuts

_LISTED = 6  # at most this many operands named in a "none of (...)" reason


@dataclass(frozen=True)
class Hit:
    """A part of the query found in the text: a literal (a term, a phrase, a prefix, an
    alias entry) or a whole ``NEAR`` that held, and its first occurrence."""

    literal: str  # as written: "battery fire" in quotes, refund*, a NEAR as "a NEAR/3 b"
    via: str | None  # the alias an entry belongs to ("@acme"), if any
    span: m.Span  # offsets in Subject.positions


@dataclass(frozen=True)
class Reason:
    """A part of the query that stopped the match; ``found`` is what a ``NOT`` part found."""

    message: str
    found: tuple[Hit, ...] = ()


@dataclass(frozen=True)
class Explanation:
    matched: bool
    hits: tuple[Hit, ...]  # matched: the parts that made the match (empty otherwise)
    why_not: tuple[Reason, ...]  # not matched: what stopped it (empty otherwise)
    found: tuple[Hit, ...]  # every literal outside NOT found in the text, in query order


@dataclass(frozen=True)
class _Step:
    matched: bool
    hits: tuple[Hit, ...] = ()
    why: tuple[Reason, ...] = ()


class Explainer:
    """Explains queries of one watch: ``aliases`` (the watch's) name the alias an entry
    belongs to (``Hit.via``) and stand for their entries in reasons (``@acme``); they are
    read once, here."""

    def __init__(self, aliases: Mapping[str, Sequence[str]] | None = None) -> None:
        self._aliases = _alias_keys(aliases or {})
        self._described: dict[tuple[m.Node, bool], str] = {}  # a node's words, found once

    def explain(self, query: CompiledQuery, subject: m.Subject) -> Explanation:
        """Why ``query`` matches ``subject`` or not."""
        walker = _Walker(subject, self._aliases, self._described)
        step = walker.step(query.root)
        found = tuple(walker.atom_hit(a) for a in query.positive if subject.found(a))
        if step.matched:
            return Explanation(True, _unique(step.hits), (), found)
        return Explanation(False, (), step.why, found)

    def describe(self, node: m.Node) -> str:
        """The query part ``node`` in the query language (as compiled: filters first in
        an AND, nested ORs of terms flattened, alias entries as ``@name``)."""
        return _Walker(None, self._aliases, self._described).describe(node)


def explain(
    query: CompiledQuery,
    subject: m.Subject,
    aliases: Mapping[str, Sequence[str]] | None = None,
) -> Explanation:
    """Why ``query`` matches ``subject`` or not (see :class:`Explainer`)."""
    return Explainer(aliases).explain(query, subject)


def describe(node: m.Node, aliases: Mapping[str, Sequence[str]] | None = None) -> str:
    """The query part ``node`` in the query language (see :meth:`Explainer.describe`)."""
    return Explainer(aliases).describe(node)


def literal(atom: m.Atom) -> str:
    """An atom as written, a phrase in quotes."""
    text = atom.display
    return f'"{text}"' if any(c.isspace() for c in text) and not text.startswith('"') else text


def _alias_keys(aliases: Mapping[str, Sequence[str]]) -> dict[str, frozenset[str]]:
    """Each alias's entry keys (``Atom.key``), as the compiler builds them."""
    out: dict[str, frozenset[str]] = {}
    for name, entries in aliases.items():
        keys = set()
        for entry in entries:
            try:
                keys.add(entry_atom(entry).key)
            except ValueError:  # the config check refuses such an entry: not in any query
                continue
        out[name.lower()] = frozenset(keys)
    return out


def _unique(hits: Iterable[Hit]) -> tuple[Hit, ...]:
    return tuple(dict.fromkeys(hits))


class _Walker:
    def __init__(
        self,
        subject: m.Subject | None,
        aliases: dict[str, frozenset[str]],
        described: dict[tuple[m.Node, bool], str],
    ) -> None:
        self.subject = subject
        self.aliases = aliases
        self.described = described

    # -- what matched, what did not --------------------------------------------------

    def step(self, node: m.Node) -> _Step:
        subject = self.subject
        assert subject is not None
        if isinstance(node, m.AtomNode):
            if subject.found(node.atom):
                return _Step(True, (self.atom_hit(node.atom),))
            return _Step(False, why=(Reason(f"no {literal(node.atom)}"),))
        if isinstance(node, m.AnyNode):
            return self._any(node)
        if isinstance(node, m.NearNode):
            return self._near(node)
        if isinstance(node, m.AndNode):
            steps = [self.step(o) for o in node.operands]
            if all(s.matched for s in steps):
                return _Step(True, tuple(h for s in steps for h in s.hits))
            return _Step(False, why=tuple(r for s in steps if not s.matched for r in s.why))
        if isinstance(node, m.OrNode):
            steps = [self.step(o) for o in node.operands]
            if any(s.matched for s in steps):
                return _Step(True, tuple(h for s in steps if s.matched for h in s.hits))
            parts = "; ".join(
                f"({i}) " + ", ".join(r.message for r in s.why) for i, s in enumerate(steps, 1)
            )
            found = tuple(h for s in steps for r in s.why for h in r.found)
            return _Step(False, why=(Reason(f"no OR branch held: {parts}", found),))
        if isinstance(node, m.NotNode):
            inner = self.step(node.operand)
            if not inner.matched:
                return _Step(True)
            why = Reason(f"NOT {self.describe(node.operand)} vetoed it", _unique(inner.hits))
            return _Step(False, why=(why,))
        if isinstance(node, m.LangNode):
            if node.matches(subject):
                return _Step(True)
            lang = subject.lang or "not given"
            return _Step(False, why=(Reason(f"{self.describe(node)}: the language is {lang}"),))
        if isinstance(node, m.SourceNode):
            if node.matches(subject):
                return _Step(True)
            source = subject.source or "not given"
            return _Step(False, why=(Reason(f"{self.describe(node)}: the source is {source}"),))
        raise TypeError(f"unknown query node {type(node).__name__}")  # pragma: no cover

    def _any(self, node: m.AnyNode) -> _Step:
        subject = self.subject
        assert subject is not None
        if node.matches(subject):
            steps = [self.step(o) for o in node.operands]
            return _Step(True, tuple(h for s in steps if s.matched for h in s.hits))
        if len(node.operands) == 1:
            return self.step(node.operands[0])
        # a NEAR whose sides were both found says more than "none of"
        nears = [
            r
            for o in node.others
            if isinstance(o, m.NearNode) and o.left.matches(subject) and o.right.matches(subject)
            for r in self.step(o).why
        ]
        return _Step(False, why=(Reason(f"none of {self.describe(node)}"), *nears))

    def _near(self, node: m.NearNode) -> _Step:
        subject = self.subject
        assert subject is not None
        if node.matches(subject):
            spans = node.spans(subject)
            return _Step(True, (Hit(self.describe(node), None, spans[0]),))
        left, right = self.step(node.left), self.step(node.right)
        if left.matched and right.matched:
            message = (
                f"{self.describe(node)}: {self.describe(node.left)} and "
                f"{self.describe(node.right)} both found, but never within {node.distance} "
                f"word{'s' if node.distance != 1 else ''} of each other"
            )
            return _Step(False, why=(Reason(message),))
        missing = "; ".join(r.message for s in (left, right) if not s.matched for r in s.why)
        return _Step(False, why=(Reason(f"{self.describe(node)}: {missing}"),))

    def atom_hit(self, atom: m.Atom) -> Hit:
        assert self.subject is not None
        spans = self.subject.spans(atom)
        via = next((f"@{n}" for n, keys in self.aliases.items() if atom.key in keys), None)
        return Hit(literal(atom), via, spans[0] if spans else (0, 0))

    # -- the query part in words ------------------------------------------------------

    def describe(self, node: m.Node, nested: bool = False) -> str:
        key = (node, nested)
        text = self.described.get(key)
        if text is None:
            text = self.described[key] = self._describe(node, nested)
        return text

    def _describe(self, node: m.Node, nested: bool) -> str:
        if isinstance(node, m.AtomNode):
            return literal(node.atom)
        if isinstance(node, m.AnyNode):
            names = self._operand_names(node)
            if len(names) == 1:
                return names[0]
            shown = names[:_LISTED]
            more = f" OR … ({len(names) - _LISTED} more)" if len(names) > _LISTED else ""
            return "(" + " OR ".join(shown) + more + ")"
        if isinstance(node, m.NearNode):
            text = (
                f"{self.describe(node.left, True)} NEAR/{node.distance} "
                f"{self.describe(node.right, True)}"
            )
            return f"({text})" if nested else text
        if isinstance(node, m.AndNode | m.OrNode):
            op = " AND " if isinstance(node, m.AndNode) else " OR "
            return "(" + op.join(self.describe(o, True) for o in node.operands) + ")"
        if isinstance(node, m.NotNode):
            return "NOT " + self.describe(node.operand, True)
        if isinstance(node, m.LangNode):
            return f"lang:{node.lang or 'und'}"
        if isinstance(node, m.SourceNode):
            return f"source:{node.source}"
        return type(node).__name__  # pragma: no cover

    def _operand_names(self, node: m.AnyNode) -> list[str]:
        """The operands, the entries of an alias that are all there named ``@alias``."""
        keys = {a.key for a in node.atoms}
        named = [n for n, k in self.aliases.items() if k and k <= keys]
        covered = set().union(*(self.aliases[n] for n in named)) if named else set()
        names: list[str] = []
        listed_aliases = False
        for operand in node.operands:
            if isinstance(operand, m.AtomNode) and operand.atom.key in covered:
                if not listed_aliases:
                    names.extend(f"@{n}" for n in named)
                    listed_aliases = True
                continue
            names.append(self.describe(operand, True))
        return names


@dataclass(frozen=True)
class Located:
    """A hit's text as it stands in the post: ``start``/``end`` are offsets in the text as
    written, or None where the folded text cannot be mapped back (``text`` is then the
    folded form the matcher read)."""

    text: str
    start: int | None
    end: int | None


class TextMap:
    """Maps spans in ``subject.positions`` back onto ``text``, the text as written, which
    ``subject`` was made of (``Subject.of(text, ...)``)."""

    def __init__(self, text: str, subject: m.Subject) -> None:
        self.text = text
        self.subject = subject
        self._cuts: tuple[int, ...] | None = None
        self._origin: list[tuple[int, int]] | None = None  # folded offset -> text span
        self._mapped: bool | None = None

    def locate(self, span: m.Span) -> Located:
        start, end = span
        positions = self.subject.positions
        if len(positions) != len(self.subject.text):  # the split reading: spaces added
            start, end = self._unsplit(start), self._unsplit(end - 1) + 1
        if not self._map():
            return Located(positions[span[0] : span[1]], None, None)
        origin = self._origin
        assert origin is not None
        if not origin or end <= start:
            return Located("", None, None)
        raw_start, raw_end = origin[start][0], origin[end - 1][1]
        return Located(self.text[raw_start:raw_end], raw_start, raw_end)

    def _unsplit(self, pos: int) -> int:
        """A split-reading offset as an offset in the folded text (a space was put in
        before each cut: the i-th cut ``c`` sits at ``c + i + 1`` in the split reading)."""
        if self._cuts is None:
            self._cuts = fold_cuts(self.text, self.subject.text)
        return pos - sum(1 for i, cut in enumerate(self._cuts) if cut + i < pos)

    def _map(self) -> bool:
        """Where each folded character comes from: each character of the text, with the
        combining marks after it, folded on its own, which is the whole fold for ASCII and
        almost all other text; where it is not, the text is not mapped."""
        if self._mapped is None:
            folded = self.subject.text
            if self.text.isascii():
                self._origin = [(i, i + 1) for i in range(len(folded))]
                self._mapped = len(folded) == len(self.text)
            else:
                origin: list[tuple[int, int]] = []
                pieces: list[str] = []
                for start, end in _clusters(self.text):
                    piece = fold(self.text[start:end])
                    pieces.append(piece)
                    origin.extend([(start, end)] * len(piece))
                self._mapped = "".join(pieces) == folded
                self._origin = origin
        return self._mapped


def _clusters(text: str) -> Iterator[tuple[int, int]]:
    """Each character with the combining marks after it (``e`` + U+0301), as offsets."""
    start = 0
    for i in range(1, len(text) + 1):
        if i == len(text) or not unicodedata.category(text[i]).startswith("M"):
            yield start, i
            start = i


__all__ = [
    "Explainer",
    "Explanation",
    "Hit",
    "Located",
    "Reason",
    "TextMap",
    "describe",
    "explain",
    "literal",
]
