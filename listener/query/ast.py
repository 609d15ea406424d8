"""The query's syntax tree: what the parser builds and the compiler reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Term:
    """A word, a quoted phrase or a prefix wildcard (``refund*``), as written."""

    text: str  # without quotes and without the trailing ``*``
    prefix: bool = False
    phrase: bool = False
    position: int = 0

    def display(self) -> str:
        return self.text + ("*" if self.prefix else "")


@dataclass(frozen=True)
class Alias:
    """``@name``: any of the watch's alias entries for ``name``."""

    name: str
    position: int = 0


@dataclass(frozen=True)
class Filter:
    """``lang:zh`` or ``source:weibo``: a test on the mention, not on its text."""

    field: Literal["lang", "source"]
    value: str
    position: int = 0


@dataclass(frozen=True)
class Not:
    operand: Node
    position: int = 0


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]
    position: int = 0


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]
    position: int = 0


@dataclass(frozen=True)
class Near:
    """``left NEAR/distance right``: at most ``distance`` words between them, any order."""

    left: Node
    right: Node
    distance: int
    position: int = 0


Node = Term | Alias | Filter | Not | And | Or | Near
