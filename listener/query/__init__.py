"""The watch query language: lexer → parser → syntax tree → compiled query → matcher.

``compile_query("acme AND (refund* OR \\"battery fire\\") AND NOT jobs")`` parses once
and returns a :class:`CompiledQuery`; the README's "Watch query language" section is the
reference.
"""

from listener.query.compiler import CompiledQuery, compile_any, compile_query
from listener.query.errors import QueryError
from listener.query.fold import Prefold, fold
from listener.query.matcher import Subject
from listener.query.parser import parse

__all__ = [
    "CompiledQuery",
    "Prefold",
    "QueryError",
    "Subject",
    "compile_any",
    "compile_query",
    "fold",
    "parse",
]
