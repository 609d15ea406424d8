"""Syntax tree → compiled query: patterns built once, a prefilter, an evaluation tree.

Every literal (word, phrase, prefix, alias entry) becomes one pattern over folded text
(``matcher.Pattern``: a regex for its words, its word boundaries checked beside it):

* a Latin-style (spaced-script) end sits on a word boundary: ``acme`` matches ``Acme's``,
  ``#acme`` and ``@acme_support`` but not ``acmeville``; a CJK end matches as a substring
  (``手机`` in ``宁博手机坏了``); a CJK character beside a Latin term is a boundary;
* whitespace inside a phrase matches any run of whitespace (none is needed next to a CJK
  character); where a CJK character meets a letter or digit, with or without a space
  (``iphone手机``, ``"acme 手机"``), any whitespace or none matches;
* a prefix (``refund*``) continues with any letters or digits of its word;
* a literal starting with ``@`` or ``#`` (a handle, a tag) needs no letter or digit right
  before its sign: ``"@acme"`` finds ``hi @acme``, not the e-mail ``support@acme.com``.

The prefilter is one regex alternation of literal pieces such that a text matching the
query must contain one of them; a text with none is rejected in one pass without folding
it fully or walking the tree.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from listener.query import ast
from listener.query import matcher as m
from listener.query.errors import QueryError
from listener.query.fold import CJK, CJK_CHAR, WORD_CHAR, fold, is_word_end
from listener.query.parser import parse

# Where a CJK character meets a letter or digit inside a word (``iphone|手机``).
_SCRIPT_CHANGE = re.compile(f"(?<=[{CJK}])(?={WORD_CHAR})|(?<={WORD_CHAR})(?=[{CJK}])")

_SIGNS = "@#"  # a handle's or a tag's: a word boundary before it, as before a letter
# Another tool's one-character wildcard, in an entry: inside a word (colo?r), or ending a
# one-word entry (acme?). A phrase may end with one ("is acme down?").
_ENTRY_WILDCARD = re.compile(r"(?<=[^\W_])\?(?=[^\W_])|^\S*[^\W_]\?$")

_NO_TERM = (
    "this part can match a text without any of the query's terms (NOT and filters only "
    "narrow a match): every OR branch needs a term, phrase or alias outside NOT"
)


def literal_pattern(folded: str, *, prefix: bool = False) -> m.Pattern:
    """The pattern of one literal, already folded (rules in the module docstring)."""
    parts = _pieces(folded)
    if not parts:
        raise ValueError("empty term")
    body = re.escape(parts[0])
    for before, after in itertools.pairwise(parts):
        cjk_join = CJK_CHAR.match(before[-1]) or CJK_CHAR.match(after[0])
        body += (r"\s*" if cjk_join else r"\s+") + re.escape(after)
    last_latin = is_word_end(parts[-1][-1])  # a prefix runs on to the end of its word
    return m.Pattern(
        body,
        left=is_word_end(parts[0][0]) or parts[0][0] in _SIGNS,
        right=last_latin and not prefix,
        run_on=last_latin and prefix,
    )


def make_atom(text: str, *, prefix: bool = False, display: str | None = None) -> m.Atom:
    """One literal (``text`` as written, without the ``*`` of a prefix)."""
    folded = " ".join(fold(text).split())
    if not folded:
        raise ValueError(f"empty term {text!r}")
    return m.Atom(
        key=folded + ("*" if prefix else ""),
        display=display if display is not None else text,
        pattern=literal_pattern(folded, prefix=prefix),
        literal=max(_pieces(folded), key=len),
    )


def _pieces(folded: str) -> list[str]:
    """The literal's words, also split where a CJK character meets a letter or digit: the
    pieces every occurrence holds verbatim (what lies between them may vary)."""
    return [piece for word in folded.split() for piece in _SCRIPT_CHANGE.split(word)]


def entry_atom(entry: str) -> m.Atom:
    """An entry of an alias list or of a watch's ``terms``/``exclude``: a literal phrase; a
    trailing ``*`` makes it a prefix, with at least 2 characters of its last word before
    it, as in a query (``x*`` was the literal ``x*``; ``refund*`` in ``terms`` was too, and
    never matched). A ``?`` inside a word or ending a one-word entry is refused, as in a
    query: another tool's one-character wildcard, silently a literal ``?`` here."""
    text, prefix = _entry_text(entry)
    return make_atom(text, prefix=prefix, display=entry.strip() if prefix else None)


def _entry_text(entry: str) -> tuple[str, bool]:
    """The entry's literal and whether it is a prefix; ``ValueError`` for a bad wildcard."""
    text = entry.strip()
    if _ENTRY_WILDCARD.search(text):
        raise ValueError(
            "'?' is not a wildcard: there is no one-character wildcard (list the spellings, "
            "e.g. colour and color, or end a word with * for a prefix); a phrase may end "
            "with a literal '?' (\"is acme down?\")"
        )
    if not text.endswith("*"):
        return text, False
    stem = text.rstrip("*")
    if len(stem) < 2 or stem[-1].isspace() or len(stem.split()[-1]) < 2:
        raise ValueError("a wildcard needs at least 2 characters before '*'")
    return stem, True


@dataclass
class CompiledQuery:
    """A query ready to match: see :meth:`candidate`, :meth:`matches`, :meth:`terms`."""

    root: m.Node
    positive: tuple[m.Atom, ...]  # atoms outside NOT, in query order (reported as terms)
    vetoes: tuple[m.Node, ...]  # top-level ``AND NOT x`` parts: x vetoes the match
    literals: tuple[str, ...]  # the prefilter's pieces
    prefilter: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        self.prefilter = re.compile("|".join(re.escape(lit) for lit in self.literals))

    def candidate(self, prefolded: str) -> bool:
        """Whether the text (see ``fold.Prefold``) can match at all: one regex search."""
        return self.prefilter.search(prefolded) is not None

    def matches(self, subject: m.Subject) -> bool:
        return self.root.matches(subject)

    def vetoed(self, subject: m.Subject) -> bool:
        return any(v.matches(subject) for v in self.vetoes)

    def terms(self, subject: m.Subject) -> tuple[str, ...]:
        """The positive literals found in the text, as written, in query order."""
        return tuple(a.display for a in self.positive if subject.found(a))


def compile_query(query: str, aliases: Mapping[str, Sequence[str]] | None = None) -> CompiledQuery:
    """Parse and compile ``query``; raises :class:`QueryError` (position and problem)."""
    return _Compiler(query, aliases or {}).compile(parse(query))


def compile_any(terms: Iterable[str]) -> CompiledQuery:
    """Any of ``terms``, the ``terms``/``exclude`` entries of a watch (see
    :func:`entry_atom`); a bad entry raises ``ValueError`` naming it."""
    atoms = _dedup(_entry(t) for t in terms)
    nodes = tuple(m.AtomNode(a) for a in atoms)
    root: m.Node = nodes[0] if len(nodes) == 1 else m.AnyNode(nodes)
    return CompiledQuery(root, atoms, (), _minimal({a.literal for a in atoms}))


def _entry(entry: str) -> m.Atom:
    """:func:`entry_atom`, a bad wildcard's error naming the entry."""
    try:
        _entry_text(entry)
    except ValueError as exc:
        raise ValueError(f"entry {entry!r}: {exc}") from None
    return entry_atom(entry)


class _Compiler:
    def __init__(self, query: str, aliases: Mapping[str, Sequence[str]]) -> None:
        self.query = query
        self.aliases = {name.lower(): entries for name, entries in aliases.items()}
        self.atoms: dict[str, m.Atom] = {}
        self.positive: list[m.Atom] = []
        self._alias_atoms: dict[str, list[m.Atom]] = {}  # each alias built once

    def compile(self, tree: ast.Node) -> CompiledQuery:
        root = self._node(tree, negated=False)
        literals, culprit = self._required(tree)
        if literals is None:
            raise QueryError(self.query, culprit, _NO_TERM)
        vetoes: tuple[m.Node, ...] = ()
        if isinstance(tree, ast.And):
            vetoes = tuple(
                self._node(o.operand, negated=True) for o in tree.operands if isinstance(o, ast.Not)
            )
        return CompiledQuery(root, tuple(_dedup(self.positive)), vetoes, _minimal(literals))

    def _atom(self, atom: m.Atom, negated: bool) -> m.Atom:
        atom = self.atoms.setdefault(atom.key, atom)
        if not negated:
            self.positive.append(atom)
        return atom

    def _alias(self, node: ast.Alias) -> list[m.Atom]:
        """The atoms of the alias's entries; an unknown or empty alias, or a bad entry, is
        a query error at the alias."""
        name = node.name.lower()
        if name in self._alias_atoms:
            return self._alias_atoms[name]
        entries = self.aliases.get(name)
        if entries is None:
            known = ", ".join(f"@{n}" for n in sorted(self.aliases)) or "none defined"
            raise QueryError(
                self.query,
                node.position,
                f"unknown alias @{node.name} (aliases: {known}); "
                f'quote "@{node.name}" to search for the text',
            )
        if not entries:
            raise QueryError(self.query, node.position, f"alias @{node.name} has no entries")
        atoms = []
        for entry in entries:
            try:
                atoms.append(entry_atom(entry))
            except ValueError as exc:  # a wildcard too short, a word that folds to nothing
                raise QueryError(
                    self.query, node.position, f"alias @{node.name}, entry {entry!r}: {exc}"
                ) from None
        self._alias_atoms[name] = atoms
        return atoms

    def _node(self, node: ast.Node, *, negated: bool) -> m.Node:
        if isinstance(node, ast.Term | ast.Alias | ast.Near):
            return self._positional(node, negated)
        if isinstance(node, ast.Or):
            parts = tuple(self._node(o, negated=negated) for o in node.operands)
            if all(isinstance(p, m.Positional) for p in parts):
                return m.AnyNode(tuple(p for p in parts if isinstance(p, m.Positional)))
            return m.OrNode(parts)
        if isinstance(node, ast.And):
            self._one_value_per_field(node)
            # filters first: cheaper than any text search
            ordered = sorted(node.operands, key=lambda o: not isinstance(o, ast.Filter))
            return m.AndNode(tuple(self._node(o, negated=negated) for o in ordered))
        if isinstance(node, ast.Not):
            return m.NotNode(self._node(node.operand, negated=True))
        if node.field == "lang":
            return m.LangNode(node.value)
        return m.SourceNode(node.value)

    def _one_value_per_field(self, node: ast.And) -> None:
        """``lang:en lang:zh`` (or ``AND``) can never match: a mention has one language and
        one source. Written for "either", it silently matched nothing. Nested ANDs count
        as one (``lang:zh AND (acme AND lang:en)``); an OR or a NOT between them does not."""
        first: dict[str, ast.Filter] = {}
        for operand in _and_operands(node):
            if not isinstance(operand, ast.Filter):
                continue
            value = m.primary_lang(operand.value) if operand.field == "lang" else operand.value
            seen = first.setdefault(operand.field, operand)
            if seen is not operand:
                other = m.primary_lang(seen.value) if seen.field == "lang" else seen.value
                if value != other:
                    f = operand.field
                    raise QueryError(
                        self.query,
                        operand.position,
                        f"a mention has one {'language' if f == 'lang' else 'source'}: "
                        f"{f}:{seen.value} AND {f}:{operand.value} never matches; for either, "
                        f"write ({f}:{seen.value} OR {f}:{operand.value})",
                    )

    def _positional(
        self, node: ast.Term | ast.Alias | ast.Near | ast.Or, negated: bool
    ) -> m.Positional:
        if isinstance(node, ast.Term):
            return m.AtomNode(self._atom(self._term(node), negated))
        if isinstance(node, ast.Alias):
            atoms = [self._atom(a, negated) for a in self._alias(node)]
            return m.AnyNode(tuple(m.AtomNode(a) for a in _dedup(atoms)))
        if isinstance(node, ast.Or):
            ops = tuple(self._positional(_as_positional(o), negated) for o in node.operands)
            return m.AnyNode(ops)
        left = self._positional(_as_positional(node.left), negated)
        right = self._positional(_as_positional(node.right), negated)
        return m.NearNode(left, right, node.distance)

    def _term(self, node: ast.Term) -> m.Atom:
        try:
            return make_atom(node.text, prefix=node.prefix, display=node.display())
        except ValueError as exc:  # e.g. a word that folds to nothing
            raise QueryError(self.query, node.position, str(exc)) from None

    def _required(self, node: ast.Node) -> tuple[set[str] | None, int]:
        """Literals one of which any matching text contains (None: no such set) and,
        when None, the position of the part that makes it so."""
        if isinstance(node, ast.Term):
            return {self._term(node).literal}, node.position
        if isinstance(node, ast.Alias):
            return {a.literal for a in self._alias(node)}, node.position
        if isinstance(node, ast.Filter | ast.Not):
            return None, node.position
        if isinstance(node, ast.Near):
            return self._required(node.left)
        if isinstance(node, ast.Or):
            union: set[str] = set()
            for operand in node.operands:
                found, culprit = self._required(operand)
                if found is None:
                    return None, culprit
                union |= found
            return union, node.position
        options = [self._required(o) for o in node.operands]
        usable = [s for s, _ in options if s is not None]
        if not usable:
            return None, options[0][1]
        return min(usable, key=lambda s: (len(s), -min(map(len, s)))), node.position


def _as_positional(node: ast.Node) -> ast.Term | ast.Alias | ast.Near | ast.Or:
    assert isinstance(node, ast.Term | ast.Alias | ast.Near | ast.Or)  # the parser checked
    return node


def _dedup(atoms: Iterable[m.Atom]) -> tuple[m.Atom, ...]:
    """First of each key, in order."""
    seen: dict[str, m.Atom] = {}
    for atom in atoms:
        seen.setdefault(atom.key, atom)
    return tuple(seen.values())


def _minimal(literals: set[str]) -> tuple[str, ...]:
    """Drop literals that contain another one (the shorter already finds those texts)."""
    out = [lit for lit in literals if not any(o != lit and o in lit for o in literals)]
    return tuple(sorted(out))


def _and_operands(node: ast.And) -> list[ast.Node]:
    """``node``'s operands, those of ANDs nested in it flattened in (grouping does not
    change what an AND requires)."""
    out: list[ast.Node] = []
    for operand in node.operands:
        out.extend(_and_operands(operand) if isinstance(operand, ast.And) else [operand])
    return out
