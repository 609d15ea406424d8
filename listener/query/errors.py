"""Query errors that say where and what: a position in the query and the problem."""

from __future__ import annotations

import unicodedata


class QueryError(ValueError):
    """A query that cannot be parsed. ``position`` is a 0-based offset into ``query``."""

    def __init__(self, query: str, position: int, problem: str) -> None:
        self.query = query
        self.position = max(0, min(position, len(query)))
        self.problem = problem
        super().__init__(f"{self.where()}: {problem}")

    def where(self) -> str:
        line, column = self.line_column()
        if "\n" in self.query:
            return f"line {line}, column {column}"
        return f"column {column}"

    def line_column(self) -> tuple[int, int]:
        """1-based line and column of the position."""
        before = self.query[: self.position]
        return before.count("\n") + 1, self.position - (before.rfind("\n") + 1) + 1

    def caret(self, indent: str = "  ") -> str:
        """The query's line at the error and a ``^`` under the position."""
        line_no, column = self.line_column()
        line = self.query.split("\n")[line_no - 1]
        pad = "".join(_blank(c) for c in line[: column - 1])
        return f"{indent}{line}\n{indent}{pad}^"

    def explain(self, indent: str = "  ") -> str:
        """The message and the caret lines, for an operator to read."""
        return f"query error at {self.where()}: {self.problem}\n{self.caret(indent)}"


def _blank(char: str) -> str:
    """What lines the ^ up under ``char``: tabs stay tabs, wide (CJK) characters take two."""
    if char == "\t":
        return char
    return "  " if unicodedata.east_asian_width(char) in ("W", "F") else " "
