"""Rendering response templates in a sandbox, with the incident's data escaped.

Template bodies are Jinja written by staff and reviewed by legal; the values put into them
(incident title and explanation, the brand, the variables a responder types or pastes) may
carry a stranger's words and are treated as hostile:

* the engine is Jinja's ``ImmutableSandboxedEnvironment`` with ``StrictUndefined``: no
  underscore attributes (``''.__class__`` fails), no method calls except a few harmless
  string/dict ones, no globals (``range``, ``lipsum``, ``cycler`` ... removed), a short list
  of filters, no macros/includes/imports, loops nested at most twice, ``*``/``**``/``%``
  bounded, output capped. A template that breaks a rule is refused when it is saved
  (``check``) and, if it still gets that far, when it is rendered (``RenderError``);
* every ``{{ ... }}`` result is escaped for the template's format (``finalize``): ``text``
  (a public post: control and bidi characters dropped, ``@all``-style pings and mention
  tags broken, links defanged, ``<`` ``>`` as full-width look-alikes so no tag survives),
  ``markdown`` (every markdown/chat markup character becomes its full-width look-alike)
  or ``html`` (entities). Values are inserted once and never
  rendered again, so template syntax inside them stays literal text.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any, Final

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from alerts.notifiers import escape

MAX_OUTPUT: Final = 50_000  # characters a rendered statement may have
VALUE_LIMIT: Final = 4_000  # characters of one inserted value
MAX_LOOP_DEPTH: Final = 2
PROVIDED: Final = frozenset({"incident", "brand"})  # filled from the incident

FILTERS: Final = frozenset(
    {
        "capitalize", "count", "d", "default", "dictsort", "first", "int", "join", "last",
        "length", "list", "lower", "round", "sort", "string", "title", "trim", "truncate",
        "unique", "upper", "wordcount",
    }
)  # fmt: skip
SAFE_METHODS: Final = frozenset(
    {"capitalize", "endswith", "items", "keys", "lower", "startswith", "strip", "title",
     "upper", "values"}
)  # fmt: skip
_FORBIDDEN_NODES: Final = (
    nodes.Macro,
    nodes.CallBlock,
    nodes.Import,
    nodes.FromImport,
    nodes.Include,
    nodes.Extends,
)

_ANGLES: Final = str.maketrans({"<": "＜", ">": "＞"})


def _text(value: str, limit: int) -> str:
    """Plain text that stays inert if it is ever pasted into HTML or a chat message."""
    return escape.plain(value, limit).translate(_ANGLES)


ESCAPERS: Final[dict[str, Callable[[str, int], str]]] = {
    "text": _text,
    "markdown": escape.markdown,
    "html": escape.html,
}


class TemplateProblem(ValueError):
    """The template text cannot be saved: syntax error or a construct the sandbox forbids."""


class RenderError(ValueError):
    """Rendering failed: a missing variable, a refused operation, output too long."""


def _sized(value: Any) -> int | None:
    return len(value) if isinstance(value, str | list | tuple) else None


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Context, op: str, left: Any, right: Any) -> Any:
        if op == "%" and isinstance(left, str):
            raise SecurityError("string formatting with '%' is not allowed in templates")
        if op == "**" and (not isinstance(right, int | float) or abs(right) > 64):
            raise SecurityError("exponents above 64 are not allowed in templates")
        if op == "*":
            for seq, times in ((left, right), (right, left)):
                size = _sized(seq)
                if size is not None and isinstance(times, int) and size * times > MAX_OUTPUT:
                    raise SecurityError("repetition would exceed the output limit")
        return {"*": operator.mul, "**": operator.pow, "%": operator.mod}[op](left, right)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        return not callable(value) or attr in SAFE_METHODS

    def wrap_str_format(self, value: Any) -> None:  # str.format: refused like any method
        return None


def environment(fmt: str) -> ImmutableSandboxedEnvironment:
    """A fresh sandbox whose ``{{ }}`` output is escaped for ``fmt``."""
    esc = ESCAPERS[fmt]

    def finalize(value: Any) -> str:
        return esc(str(value), VALUE_LIMIT)

    env = _Sandbox(
        undefined=StrictUndefined,
        autoescape=False,  # escaping is finalize's job, for every format alike
        finalize=finalize,
        keep_trailing_newline=True,
    )
    env.globals.clear()
    env.filters = {name: f for name, f in env.filters.items() if name in FILTERS}
    return env


def _loop_depth(node: nodes.Node) -> int:
    inner = max((_loop_depth(child) for child in node.iter_child_nodes()), default=0)
    return inner + 1 if isinstance(node, nodes.For) else inner


MAX_VARIABLE_NAME = 64
"""The longest variable name a body may use: the longest a use or preview may supply."""


def check(body: str, fmt: str, *, saving: bool = True) -> list[str]:
    """Validate ``body``; return the variables it needs (``TemplateProblem`` when unusable,
    among them, when ``saving``, a variable whose name is too long to be supplied: a body
    saved before that rule, e.g. with ``{{ name|default(...) }}``, still renders)."""
    env = environment(fmt)
    try:
        tree = env.parse(body)
        env.compile(tree)  # unknown filters and tests are found here
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"template syntax error on line {exc.lineno}: {exc.message}") from exc
    except (RecursionError, SyntaxError) as exc:  # Jinja's parser or Python's compiler gave up
        raise TemplateProblem(
            "the template is nested too deeply (brackets, filters, blocks)"
        ) from exc
    for node in tree.find_all(_FORBIDDEN_NODES):
        raise TemplateProblem(
            f"line {node.lineno}: {type(node).__name__.lower()} is not allowed in templates"
        )
    if _loop_depth(tree) > MAX_LOOP_DEPTH:
        raise TemplateProblem(f"loops may be nested at most {MAX_LOOP_DEPTH} deep")
    names = sorted(meta.find_undeclared_variables(tree))
    for name in names if saving else ():
        if len(name) > MAX_VARIABLE_NAME:
            raise TemplateProblem(
                f"the variable {name[:20]}… is {len(name)} characters long: a use can supply "
                f"names of at most {MAX_VARIABLE_NAME}, so it could never be filled in"
            )
    return names


def render(body: str, fmt: str, values: Mapping[str, Any]) -> str:
    """Render ``body`` with ``values`` (escaped on output); ``RenderError`` on any failure."""
    check(body, fmt, saving=False)
    env = environment(fmt)
    out: list[str] = []
    size = 0
    try:
        for chunk in env.from_string(body).generate(dict(values)):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise RenderError(f"the rendered text would be longer than {MAX_OUTPUT} chars")
            out.append(chunk)
    except RenderError:
        raise
    except SecurityError as exc:
        raise RenderError(f"the sandbox refused an operation: {exc}") from exc
    except TemplateError as exc:  # UndefinedError among them
        raise RenderError(f"the template could not be rendered: {exc.message}") from exc
    except Exception as exc:  # division by zero, bad filter arguments, ...: the template's fault
        raise RenderError(f"the template failed while rendering: {type(exc).__name__}") from exc
    return "".join(out)
