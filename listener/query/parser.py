"""Recursive-descent parser: tokens → syntax tree.

Precedence, tightest first: ``NEAR/n``, ``NOT``, ``AND`` (also implied between adjacent
operands: ``acme refund`` is ``acme AND refund``), ``OR``. Parentheses group.
"""

from __future__ import annotations

from listener.query import ast
from listener.query.errors import QueryError
from listener.query.lexer import Kind, Token, tokenize

_OPERAND_START = (Kind.WORD, Kind.PHRASE, Kind.ALIAS, Kind.FILTER, Kind.LPAREN, Kind.NOT)
_OPERATORS = (Kind.AND, Kind.OR, Kind.NOT, Kind.NEAR)
_NEAR_HINT = "NEAR/n joins terms, phrases, wildcards, aliases or OR-groups of them"
MAX_DEPTH = 50
"""The most parentheses, NOTs and NEAR/ns one part of a query may sit inside. Parsing,
compiling and matching recurse once (or a few times) per level; without a bound a query
nested a few hundred levels deep raised RecursionError (a crash, not a query error)."""


def parse(query: str) -> ast.Node:
    """The syntax tree of ``query``; raises :class:`QueryError` naming position and problem."""
    return _Parser(query).parse()


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = tokenize(query)
        self.i = 0
        self.depth = 0  # parentheses, NOTs and NEAR/ns around the current token

    @property
    def token(self) -> Token:
        return self.tokens[self.i]

    def _peek(self) -> Kind:
        return self.tokens[self.i].kind

    def _advance(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def _error(self, position: int, problem: str) -> QueryError:
        return QueryError(self.query, position, problem)

    def _deeper(self, token: Token) -> None:
        """One more level of nesting, opened by ``token``: refused past ``MAX_DEPTH``."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self._error(
                token.position,
                f"nested too deeply: at most {MAX_DEPTH} levels of parentheses, NOT and "
                "NEAR/n inside one another",
            )

    def parse(self) -> ast.Node:
        if self.token.kind is Kind.END:
            raise self._error(0, "empty query")
        node = self._or()
        token = self.token
        if token.kind is Kind.RPAREN:
            raise self._error(token.position, "unmatched ')': no '(' before it")
        assert token.kind is Kind.END  # _and takes every operand and operator but ')'
        return node

    def _or(self) -> ast.Node:
        first = self._and()
        operands = [first]
        while self.token.kind is Kind.OR:
            self._advance()
            operands.append(self._and())
        return first if len(operands) == 1 else ast.Or(tuple(operands), _pos(first))

    def _and(self) -> ast.Node:
        first = self._not()
        operands = [first]
        while True:
            if self.token.kind is Kind.AND:
                self._advance()
            elif self.token.kind not in _OPERAND_START:
                break
            operands.append(self._not())
        return first if len(operands) == 1 else ast.And(tuple(operands), _pos(first))

    def _not(self) -> ast.Node:
        if self.token.kind is Kind.NOT:
            token = self._advance()
            self._deeper(token)
            node = ast.Not(self._not(), token.position)
            self.depth -= 1
            return node
        return self._near()

    def _near(self) -> ast.Node:
        left = self._primary()
        links = 0  # a chain (a NEAR/1 b NEAR/2 c) nests to the left: a level per link
        while self.token.kind is Kind.NEAR:
            op = self._advance()
            self._deeper(op)
            links += 1
            right = self._primary()
            for side in (left, right):
                if not _positional(side):
                    raise self._error(
                        op.position, f"{_NEAR_HINT}; {_describe(side)} cannot be NEAR"
                    )
            left = ast.Near(left, right, op.distance, op.position)
        self.depth -= links
        return left

    def _primary(self) -> ast.Node:
        token = self._advance()
        kind = token.kind
        if kind is Kind.WORD:
            prefix = token.text.endswith("*")
            return ast.Term(token.text.rstrip("*"), prefix=prefix, position=token.position)
        if kind is Kind.PHRASE:
            return ast.Term(token.text, phrase=True, position=token.position)
        if kind is Kind.ALIAS:
            return ast.Alias(token.text, token.position)
        if kind is Kind.FILTER:
            if token.field == "lang":
                return ast.Filter("lang", token.text, token.position)
            return ast.Filter("source", token.text, token.position)
        if kind is Kind.LPAREN:
            if self._peek() is Kind.RPAREN:
                raise self._error(token.position, "empty parentheses")
            if self._peek() is Kind.END:
                raise self._error(token.position, "unclosed '(': no ')' after it")
            self._deeper(token)
            node = self._or()
            if self._peek() is not Kind.RPAREN:
                raise self._error(token.position, "unclosed '(': no ')' after it")
            self._advance()
            self.depth -= 1
            return node
        # an operand was expected here
        if kind is Kind.NOT:  # NOT right after NEAR/n (elsewhere _not takes it)
            raise self._error(token.position, f"{_NEAR_HINT}; a NOT cannot be NEAR")
        before = self.tokens[self.i - 2] if self.i >= 2 else None
        if before is not None and before.kind in _OPERATORS:
            raise self._error(
                before.position, f"{before.label} needs a term after it, found {kind.value}"
            )
        if kind is Kind.RPAREN:
            raise self._error(token.position, "unmatched ')': no '(' before it")
        raise self._error(token.position, f"{token.label} needs a term before it")


def _pos(node: ast.Node) -> int:
    return node.position


def _positional(node: ast.Node) -> bool:
    """Has word positions: terms, aliases, NEARs and OR-groups of those."""
    if isinstance(node, ast.Term | ast.Alias | ast.Near):
        return True
    if isinstance(node, ast.Or):
        return all(_positional(o) for o in node.operands)
    return False


def _describe(node: ast.Node) -> str:
    if isinstance(node, ast.Or):
        bad = next(o for o in node.operands if not _positional(o))
        return _describe(bad)
    names = {ast.And: "an AND group", ast.Not: "a NOT", ast.Filter: "a filter"}
    return names.get(type(node), "this operand")
