"""Rendering response templates in a sandbox, with the incident's data escaped.

Template bodies are Jinja written by staff and reviewed by legal; the values put into them
(incident title and explanation, the brand, the variables a responder types or pastes) may
carry a stranger's words and are treated as hostile:

* the engine is Jinja's ``ImmutableSandboxedEnvironment`` with ``StrictUndefined``: no
  underscore attributes (``''.__class__`` fails), no method calls except a few harmless
  string/dict ones, no globals (``range``, ``lipsum``, ``cycler`` ... removed), a short list
  of filters, no macros/includes/imports, loops nested at most twice and never recursive,
  ``*``/``**``/``%`` bounded, output capped. A template that breaks a rule is refused when
  it is saved (``check``) and, if it still gets that far, when it is rendered
  (``RenderError``);
* a render's work is bounded (``_Budget``): it runs in one of a few worker threads
  (``pool``; it ran in the service's event loop) and shares the CPU with the loop. A
  body looping over a long value (``{% set s = "x" * 50000 %}`` looped twice was 2.5
  billion silent steps), a chain of powers of big numbers, or text doubled with ``+``,
  ``~`` or ``join`` froze the whole process. Loops take at most ``MAX_LOOP_STEPS`` steps
  in all; ``+``, ``~``, ``join`` build at most ``MAX_OUTPUT`` characters or items;
  integer ``*`` and ``**`` at most ``MAX_INT_BITS`` bits; ``round`` at most
  ``MAX_ROUND_DIGITS`` digits; and a render stops after ``RENDER_SECONDS``;
* every ``{{ ... }}`` result is escaped for the template's format (``finalize``): ``text``
  (a public post: control and bidi characters dropped, ``@all``-style pings and mention
  tags broken, links defanged, ``<`` ``>`` as full-width look-alikes so no tag survives),
  ``markdown`` (every markdown/chat markup character becomes its full-width look-alike)
  or ``html`` (entities). Values are inserted once and never
  rendered again, so template syntax inside them stays literal text.
"""

from __future__ import annotations

import functools
import html
import operator
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final

from jinja2 import (
    StrictUndefined,
    TemplateError,
    TemplateSyntaxError,
    meta,
    nodes,
    pass_context,
    pass_eval_context,
)
from jinja2.exceptions import SecurityError
from jinja2.filters import do_join, do_round, make_attrgetter
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from alerts.notifiers import escape

MAX_OUTPUT: Final = 50_000  # characters a rendered statement may have
VALUE_LIMIT: Final = 4_000  # characters of one inserted value
MAX_LOOP_DEPTH: Final = 2
PROVIDED: Final = frozenset({"incident", "brand"})  # filled from the incident
MAX_LOOP_STEPS: Final = 2_000  # loop steps of one render, every loop together
MAX_INT_BITS: Final = 4_096  # the largest integer ``*`` and ``**`` may make
MAX_ROUND_DIGITS: Final = 100  # ``round``'s precision, either way
RENDER_SECONDS: Final = 1.0  # the time one render (or check) may take

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


class Trusted(str):
    """A value from the configuration, not from a stranger or a responder: the incident's
    brand. It is escaped for the format (control characters dropped; markup characters as
    look-alikes or entities) but not defanged: the brand's own name, ``Booking.com`` or
    ``Acme.Inc``, reads as written in its statement, not ``Booking[.]com``. Anything a
    filter or an expression makes of it is an ordinary value again (escaped in full)."""


_MARKUP: Final = str.maketrans({c: chr(ord(c) + 0xFEE0) for c in "\\*_~`[]<>#|&@"})


def _trusted_text(value: str, limit: int) -> str:
    return escape.clean(value, limit).translate(_ANGLES)


def _trusted_markdown(value: str, limit: int) -> str:
    return escape.one_line(escape.clean(value, limit)).translate(_MARKUP)


def _trusted_html(value: str, limit: int) -> str:
    return html.escape(escape.clean(value, limit), quote=True)


TRUSTED_ESCAPERS: Final[dict[str, Callable[[str, int], str]]] = {
    "text": _trusted_text,
    "markdown": _trusted_markdown,
    "html": _trusted_html,
}


class TemplateProblem(ValueError):
    """The template text cannot be saved: syntax error or a construct the sandbox forbids."""


class RenderError(ValueError):
    """Rendering failed: a missing variable, a refused operation, output too long."""


def _sized(value: Any) -> int | None:
    return len(value) if isinstance(value, str | list | tuple) else None


def _bits(value: Any) -> int | None:
    return value.bit_length() if isinstance(value, int) and not isinstance(value, bool) else None


class _Budget:
    """The work one render may do: loop steps, and time (checked at every loop step,
    filter, method call, intercepted operator and ``~``)."""

    def __init__(self) -> None:
        self.deadline = time.monotonic() + RENDER_SECONDS
        self.steps = 0

    def spend(self) -> None:
        if time.monotonic() > self.deadline:
            raise SecurityError(
                f"the template took longer than {RENDER_SECONDS:g} s to render "
                "(loops or filters over long values)"
            )

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_LOOP_STEPS:
            raise SecurityError(f"the template's loops would run more than {MAX_LOOP_STEPS} times")
        self.spend()


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})
    budget: _Budget

    def call_binop(self, context: Context, op: str, left: Any, right: Any) -> Any:
        self.budget.spend()
        if op == "%" and isinstance(left, str):
            raise SecurityError("string formatting with '%' is not allowed in templates")
        if op == "**" and (not isinstance(right, int | float) or abs(right) > 64):
            raise SecurityError("exponents above 64 are not allowed in templates")
        if op == "*":
            for seq, times in ((left, right), (right, left)):
                size = _sized(seq)
                if size is not None and isinstance(times, int) and size * times > MAX_OUTPUT:
                    raise SecurityError("repetition would exceed the output limit")
        _refuse_big(op, left, right)
        ops = {"*": operator.mul, "**": operator.pow, "%": operator.mod, "+": operator.add}
        return ops[op](left, right)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.budget.spend()
        return super().call(context, obj, *args, **kwargs)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        return not callable(value) or attr in SAFE_METHODS

    def wrap_str_format(self, value: Any) -> None:  # str.format: refused like any method
        return None


def _refuse_big(op: str, left: Any, right: Any) -> None:
    """Refuse an integer ``*``/``**`` above ``MAX_INT_BITS`` and a ``+`` of texts or lists
    above ``MAX_OUTPUT``, before they are computed."""
    a, b = _bits(left), _bits(right)
    if op == "**" and a is not None and b is not None and a * right > MAX_INT_BITS:
        raise SecurityError(f"a power above {MAX_INT_BITS} bits is not allowed in templates")
    if op == "*" and a is not None and b is not None and a + b > MAX_INT_BITS:
        raise SecurityError(f"a product above {MAX_INT_BITS} bits is not allowed in templates")
    size_a, size_b = _sized(left), _sized(right)
    if op == "+" and size_a is not None and size_b is not None and size_a + size_b > MAX_OUTPUT:
        raise SecurityError("'+' would exceed the output limit")


def environment(fmt: str) -> ImmutableSandboxedEnvironment:
    """A fresh sandbox whose ``{{ }}`` output is escaped for ``fmt``."""
    esc, trusted = ESCAPERS[fmt], TRUSTED_ESCAPERS[fmt]

    def finalize(value: Any) -> str:
        if type(value) is Trusted:  # (a subclass of it could come from nowhere else)
            return trusted(str(value), VALUE_LIMIT)
        return esc(str(value), VALUE_LIMIT)

    env = _Sandbox(
        undefined=StrictUndefined,
        autoescape=False,  # escaping is finalize's job, for every format alike
        finalize=finalize,
        keep_trailing_newline=True,
    )
    env.budget = budget = _Budget()
    env.globals.clear()
    filters = {name: _metered(f, budget) for name, f in env.filters.items() if name in FILTERS}
    filters["join"] = _metered(_join, budget)
    filters["round"] = _metered(_round, budget)

    @pass_context
    def loop_steps(_: Context, value: Iterable[Any]) -> Iterator[Any]:
        for item in value:
            budget.step()
            yield item

    @pass_context
    def concat(_: Context, parts: list[Any]) -> str:
        budget.spend()
        texts = [str(p) for p in parts]
        if sum(map(len, texts)) > MAX_OUTPUT:
            raise SecurityError("'~' would exceed the output limit")
        return "".join(texts)

    filters[_LOOP_STEPS], filters[_CONCAT] = loop_steps, concat
    env.filters = filters
    return env


_LOOP_STEPS: Final = "_cw_loop_steps"
_CONCAT: Final = "_cw_concat"


def _metered(f: Callable[..., Any], budget: _Budget) -> Callable[..., Any]:
    """``f``, checking the render's time first (``functools.wraps`` keeps Jinja's
    ``pass_context``/``pass_environment`` mark)."""

    @functools.wraps(f)
    def metered(*args: Any, **kwargs: Any) -> Any:
        budget.spend()
        return f(*args, **kwargs)

    return metered


@pass_eval_context
def _join(
    eval_ctx: EvalContext, value: Iterable[Any], d: str = "", attribute: str | int | None = None
) -> str:
    """Jinja's ``join``, its size checked before it is built."""
    items = list(value)
    if attribute is not None:
        items = list(map(make_attrgetter(eval_ctx.environment, attribute), items))
    texts = [str(item) for item in items]
    if sum(map(len, texts)) + len(str(d)) * max(len(texts) - 1, 0) > MAX_OUTPUT:
        raise SecurityError("join would exceed the output limit")
    return str(do_join(eval_ctx, texts, d))


def _round(value: float, precision: int = 0, method: str = "common") -> float:
    """Jinja's ``round``, with a bounded precision (``10 ** 10 ** 8`` is built otherwise)."""
    if not isinstance(precision, int) or abs(precision) > MAX_ROUND_DIGITS:
        raise SecurityError(f"round's precision must be an integer within ±{MAX_ROUND_DIGITS}")
    return do_round(value, precision, method)  # type: ignore[arg-type]


class _Metering(NodeTransformer):
    """Every loop's iterable counted step by step (``_Budget.step``), every ``~`` sized."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _LOOP_STEPS, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        parts = nodes.List(node.nodes, lineno=node.lineno)
        return nodes.Filter(parts, _CONCAT, [], [], None, None, lineno=node.lineno)


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
    for loop in tree.find_all(nodes.For):
        if loop.recursive:
            raise TemplateProblem(f"line {loop.lineno}: recursive loops are not allowed")
    for name_node in tree.find_all(nodes.Name):
        if (plain := unicodedata.normalize("NFKC", name_node.name)) != name_node.name:
            # Jinja's compiled Python reads names NFKC-normalised: ``{{ ｂrand }}`` would
            # be a variable the caller gives that also replaces ``{{ brand }}``, under a
            # name a reviewer reads as the incident's brand
            raise TemplateProblem(
                f"line {name_node.lineno}: the name {name_node.name!r} is a look-alike of "
                f"{plain!r} (the template engine reads it as {plain!r}); write {plain!r}"
            )
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
        tree = _Metering().visit(env.parse(body))
        tree.set_environment(env)
        for chunk in env.from_string(tree).generate(dict(values)):
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
