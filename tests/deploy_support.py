"""Helpers for the tests of deploy/: load its files, interpolate like Compose, and list the
metric names and labels a PromQL expression uses, against the registry of core/metrics.py.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import promql_parser
import yaml
from prometheus_client.metrics import MetricWrapperBase

from core.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose" / "compose.yaml"
ENV_EXAMPLE = DEPLOY / "compose" / "env.example"
K8S = DEPLOY / "k8s"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "crisiswatch.json"
ROLES = ("listener", "scorer", "detector", "alerter", "api")
PACKAGES = ("core", "listener", "sentiment", "alerts", "api")
"""The packages whose code sets the metrics (pyproject's ``[tool.mypy] packages``)."""

TARGET_LABELS = frozenset({"job", "instance", "pod"})
"""Labels Prometheus puts on every scraped series (pod: deploy/prometheus/prometheus-k8s.yml)."""

EXTERNAL_METRICS: dict[str, frozenset[str]] = {
    "up": frozenset(),  # Prometheus: 1 when the last scrape of a target succeeded
    # kafka-exporter (deploy/compose): crisiswatch exports no consumer-lag metric itself
    "kafka_consumergroup_lag": frozenset({"consumergroup", "topic", "partition"}),
}


def yaml_documents(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def load_yaml(path: Path) -> Any:
    docs = yaml_documents(path)
    assert len(docs) == 1, f"{path}: expected one YAML document, found {len(docs)}"
    return docs[0]


def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict)
    return data


def k8s_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml_documents(path):
            yield path, doc


def env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines (Compose's ``.env`` format, without quoting rules)."""
    env: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value
    return env


_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if op in (":-", "-"):
            return arg
        raise AssertionError(f"${{{name}}} is not set ({arg or 'no default'})")

    return _INTERPOLATION.sub(one, value)


# -- metrics ----------------------------------------------------------------------------

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}


def all_panels() -> list[dict[str, Any]]:
    """Every panel and row of the provisioned dashboard, those inside a collapsed row too
    (Grafana keeps them there)."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found += panel.get("panels", [])
    return found


def metric_kind(metric: MetricWrapperBase) -> str:
    """``counter``, ``gauge``, ``histogram`` or ``summary`` (prometheus_client types the
    class attribute ``_type`` as optional: only the base class leaves it unset)."""
    kind = metric._type
    assert kind is not None, f"{metric._name}: a metric class without a type"
    return kind


def exported_families() -> dict[str, frozenset[str]]:
    """Every metric of ``Metrics()`` (the one registry a process's ``/metrics`` serves),
    by name, with the series names it exports (``_total``, ``_bucket``, ...)."""
    families: dict[str, frozenset[str]] = {}
    for value in vars(Metrics()).values():
        if isinstance(value, MetricWrapperBase):
            suffixes = _SUFFIXES[metric_kind(value)]
            families[value._name] = frozenset(value._name + s for s in suffixes)
    return families


def exported_series() -> dict[str, frozenset[str]]:
    """Every series name a crisiswatch process can export, with its labels."""
    metrics = Metrics()
    series: dict[str, frozenset[str]] = {}
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        name, kind = value._name, metric_kind(value)
        labels = frozenset(value._labelnames)
        for suffix in _SUFFIXES[kind]:
            extra = {"le"} if suffix == "_bucket" else set()
            series[name + suffix] = labels | extra
    # the registry itself is the authority: every family it describes must be listed
    for family in metrics.registry.collect():
        assert any(s.startswith(family.name) for s in series), family.name
    return series


@dataclass
class Usage:
    """What one PromQL expression refers to."""

    metrics: set[str] = field(default_factory=set)
    matched: list[tuple[str, str]] = field(default_factory=list)  # (metric, label) in {..}
    grouped: set[str] = field(default_factory=set)  # by/without/on/ignoring labels


def promql_usage(expr: str) -> Usage:
    """Parse (a syntax error raises) and collect metric names and label names."""
    usage = Usage()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                usage.metrics.add(node.name)
            for matcher in node.matchers.matchers:
                if matcher.name == "__name__":
                    usage.metrics.add(matcher.value)
                else:
                    usage.matched.append((node.name or "", matcher.name))
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            usage.grouped.update(node.modifier.labels)
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            if node.modifier.matching is not None:
                usage.grouped.update(node.modifier.matching.labels)
            usage.grouped.update(node.modifier.group_labels or [])

    promql_parser.walk(promql_parser.parse(expr), visit)
    return usage


def promql_problems(expr: str, series: Mapping[str, frozenset[str]]) -> list[str]:
    """Unknown metrics and labels in ``expr``, in words (empty: every name exists)."""
    known = {**series, **EXTERNAL_METRICS}
    usage = promql_usage(expr)
    problems = [f"unknown metric {m!r}" for m in sorted(usage.metrics) if m not in known]
    for metric, label in usage.matched:
        if metric in known and label not in known[metric] | TARGET_LABELS:
            problems.append(f"{metric} has no label {label!r}")
    available = set(TARGET_LABELS)
    for metric in usage.metrics & known.keys():
        available |= known[metric]
    problems += [f"no metric here has label {g!r}" for g in sorted(usage.grouped - available)]
    return problems


GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h"}


def grafana_expr(expr: str) -> str:
    """A panel's query with Grafana's built-in interval variables filled in."""
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


# -- label values the code can emit ---------------------------------------------------

Values = frozenset[str] | None
"""The values a label can take, or None: open (the code passes something not resolvable
to string constants here: a source's name, a tier, ``exc.reason``)."""


@dataclass
class Emitted:
    """What the code of ``PACKAGES`` does with each metric of ``Metrics()``."""

    values: dict[str, dict[str, Values]]  # series name -> label -> values
    used: set[str]  # series names of metrics some module outside core/metrics.py touches


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


class _Module:
    """One module's top-level string constants, imports and functions, for ``_Scan``."""

    def __init__(self, name: str, tree: ast.Module) -> None:
        self.name, self.tree = name, tree
        self.constants: dict[str, list[ast.expr]] = {}
        self.imports: dict[str, tuple[str, str | None]] = {}  # local -> (module, name)
        self.functions: dict[str, list[ast.expr | None]] = {}  # name -> returned values
        self.parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
        for stmt in tree.body:
            for target, value in _assignments(stmt):
                self.constants.setdefault(target, []).append(value)
            if isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    self.imports[alias.asname or alias.name] = (alias.name, None)
            elif isinstance(stmt, ast.ImportFrom) and stmt.module and stmt.level == 0:
                for alias in stmt.names:
                    self.imports[alias.asname or alias.name] = (stmt.module, alias.name)
            elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                returns = [n.value for n in ast.walk(stmt) if isinstance(n, ast.Return)]
                self.functions[stmt.name] = returns


def _assignments(node: ast.AST) -> Iterator[tuple[str, ast.expr]]:
    """(name, value) of a plain assignment, or (name, iterable) of a ``for`` target."""
    if isinstance(node, ast.Assign):
        for target in node.targets:
            if isinstance(target, ast.Name):
                yield target.id, node.value
            elif isinstance(target, ast.Tuple):  # a, b = x, y; else each is open
                values = node.value.elts if isinstance(node.value, ast.Tuple) else []
                if len(values) != len(target.elts):
                    values = [ast.Name("<unpacked>")] * len(target.elts)  # resolves to None
                for element, value in zip(target.elts, values, strict=True):
                    if isinstance(element, ast.Name):
                        yield element.id, value
    elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        if node.value is not None:
            yield node.target.id, node.value
    elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension) and isinstance(
        node.target, ast.Name
    ):
        yield node.target.id, ast.Starred(node.iter)  # Starred: each of its items


class _Scan:
    """Resolves a ``.labels(...)`` argument to the string constants it can be: literals,
    conditional expressions of them, local and module constants (imported ones too), loop
    variables over tuples of them, and functions that return only such values
    (``drill_label``). Anything else is open."""

    def __init__(self, modules: dict[str, _Module]) -> None:
        self.modules = modules

    def strings(
        self, expr: ast.expr | None, module: _Module, at: ast.AST, depth: int = 0
    ) -> Values:
        """The strings ``expr``, read at ``at`` in ``module``, can be (None: open)."""
        if expr is None or depth > 8:
            return None
        if isinstance(expr, ast.Constant):
            return frozenset({expr.value}) if isinstance(expr.value, str) else None
        if isinstance(expr, ast.IfExp):
            return self._union(
                [self.strings(e, module, at, depth + 1) for e in (expr.body, expr.orelse)]
            )
        if isinstance(expr, ast.Starred):  # each item of a tuple, list or set
            items = expr.value
            if isinstance(items, ast.Tuple | ast.List | ast.Set):
                return self._union([self.strings(e, module, at, depth + 1) for e in items.elts])
            if isinstance(items, ast.Name | ast.Attribute):  # read where the loop reads it
                found = self._constant(items, module, items)
                return self._each(found, depth, starred=True)
            return None
        if isinstance(expr, ast.Name | ast.Attribute):
            return self._each(self._constant(expr, module, at), depth)
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
            return self._each(self._function(expr.func.id, module), depth)
        return None

    def _each(
        self, found: list[tuple[_Module, ast.expr]] | None, depth: int, starred: bool = False
    ) -> Values:
        """The strings of every value found (of every item of each, ``starred``)."""
        if found is None:
            return None
        return self._union(
            [
                self.strings(ast.Starred(value) if starred else value, where, value, depth + 1)
                for where, value in found
            ]
        )

    @staticmethod
    def _union(parts: list[Values]) -> Values:
        if any(p is None for p in parts):
            return None
        return frozenset().union(*(p for p in parts if p is not None))

    def _constant(
        self, expr: ast.Name | ast.Attribute, module: _Module, at: ast.AST
    ) -> list[tuple[_Module, ast.expr]] | None:
        """The values assigned to a name where ``at`` reads it; None when it is a
        parameter, an attribute of an object, or not found."""
        if isinstance(expr, ast.Attribute):  # module.NAME
            if not isinstance(expr.value, ast.Name):
                return None
            source = module.imports.get(expr.value.id)
            if source is None or source[1] is not None:
                full = f"{source[0]}.{source[1]}" if source else None
                target = self.modules.get(full) if full else None
            else:
                target = self.modules.get(source[0])
            if target is None or expr.attr not in target.constants:
                return None
            return [(target, v) for v in target.constants[expr.attr]]
        name = expr.id
        found: list[tuple[_Module, ast.expr]] = []
        node: ast.AST | None = at
        while node is not None:  # enclosing functions: parameters are open
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                arguments = node.args
                every = arguments.posonlyargs + arguments.args + arguments.kwonlyargs
                every += [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
                if name in {a.arg for a in every}:
                    if isinstance(node, ast.Lambda):
                        return None
                    return self._arguments(node, name, module)
                if not isinstance(node, ast.Lambda):
                    for inner in ast.walk(node):
                        found += [(module, v) for t, v in _assignments(inner) if t == name]
            node = module.parents.get(node)
        if found:
            return found
        if name in module.constants:
            return [(module, v) for v in module.constants[name]]
        source = module.imports.get(name)
        if source is not None and source[1] is not None:
            target = self.modules.get(source[0])
            if target is not None and source[1] in target.constants:
                return [(target, v) for v in target.constants[source[1]]]
        return None

    def _arguments(
        self, function: ast.FunctionDef | ast.AsyncFunctionDef, name: str, module: _Module
    ) -> list[tuple[_Module, ast.expr]] | None:
        """What the calls of ``function`` in its own module pass as its parameter ``name``
        (``f(...)`` or ``x.f(...)``); None when one passes it otherwise, or none is found,
        or the function is public (other modules may call it)."""
        if not function.name.startswith("_") or function.name.startswith("__"):
            return None
        arguments = function.args
        if name in {a.arg for a in arguments.kwonlyargs} | {
            a.arg for a in (arguments.vararg, arguments.kwarg) if a is not None
        }:
            return None
        positional = [a.arg for a in arguments.posonlyargs + arguments.args]
        method = isinstance(module.parents.get(function), ast.ClassDef)
        if method and not any(
            isinstance(d, ast.Name) and d.id == "staticmethod" for d in function.decorator_list
        ):
            positional = positional[1:]  # self, cls: not passed by x.f(...)
        found: list[tuple[_Module, ast.expr]] = []
        for call in ast.walk(module.tree):
            if not isinstance(call, ast.Call):
                continue
            func = call.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if called != function.name:
                continue
            if any(isinstance(a, ast.Starred) for a in call.args) or any(
                k.arg is None for k in call.keywords
            ):
                return None
            given = dict(zip(positional, call.args, strict=False))
            given.update({k.arg: k.value for k in call.keywords if k.arg is not None})
            if name not in given:
                return None  # its default, or a call this scan misreads
            found.append((module, given[name]))
        return found or None

    def _function(self, name: str, module: _Module) -> list[tuple[_Module, ast.expr]] | None:
        target: _Module | None = module
        if name not in module.functions:
            source = module.imports.get(name)
            target = self.modules.get(source[0]) if source and source[1] == name else None
        if target is None or name not in target.functions:
            return None
        returns = target.functions[name]
        if any(v is None for v in returns):
            return None
        return [(target, v) for v in returns if v is not None]


def emitted_label_values() -> Emitted:
    """For every metric of ``Metrics()``, the values the code can give each label.

    A metric is found by its attribute on ``Metrics`` (``metrics.deliveries``); a use that is
    not ``.labels(...)`` straight away (an alias, an argument: ``counter = metrics.x``)
    leaves its labels open, as does any argument the scan cannot resolve: the check errs
    toward passing, and fails only on a value no code path can produce."""
    wrappers = {
        attr: value
        for attr, value in vars(Metrics()).items()
        if isinstance(value, MetricWrapperBase)
    }
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = _module_name(path)
            modules[name] = _Module(name, ast.parse(path.read_text(encoding="utf-8")))
    scan = _Scan(modules)
    found: dict[str, dict[str, Values]] = {
        attr: {label: frozenset() for label in wrapper._labelnames}
        for attr, wrapper in wrappers.items()
    }
    used: set[str] = set()
    for module in modules.values():
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.Attribute) or node.attr not in wrappers:
                continue
            if not isinstance(node.ctx, ast.Load):  # Metrics.__init__ defining it
                continue
            if isinstance(node.value, ast.Name) and node.value.id[:1].isupper():
                continue  # a class's attribute (``Incident.deliveries``), not a metric
            parent = module.parents.get(node)
            if isinstance(parent, (ast.comprehension, ast.For)) and parent.iter is node:
                continue  # iterated (``for d in found.deliveries``): rows, not a metric
            labels = found[node.attr]
            if module.name != "core.metrics":
                used.add(node.attr)
            call = module.parents.get(parent) if parent is not None else None
            is_labels = isinstance(parent, ast.Attribute) and parent.attr == "labels"
            if not (is_labels and isinstance(call, ast.Call) and call.func is parent):
                if not isinstance(parent, ast.Attribute):  # an alias or an argument
                    labels.update(dict.fromkeys(labels))
                continue
            names = list(wrappers[node.attr]._labelnames)
            given: list[tuple[str, ast.expr]] = [
                (names[i], arg) for i, arg in enumerate(call.args) if i < len(names)
            ]
            given += [(k.arg, k.value) for k in call.keywords if k.arg in labels]
            if any(isinstance(a, ast.Starred) for a in call.args) or any(
                k.arg is None for k in call.keywords
            ):
                labels.update(dict.fromkeys(labels))
                continue
            for label, arg in given:
                resolved = scan.strings(arg, module, arg)
                known = labels[label]
                labels[label] = None if resolved is None or known is None else known | resolved
    values: dict[str, dict[str, Values]] = {}
    used_series: set[str] = set()
    for attr, wrapper in wrappers.items():
        for suffix in _SUFFIXES[metric_kind(wrapper)]:
            values[wrapper._name + suffix] = found[attr]
            if attr in used:
                used_series.add(wrapper._name + suffix)
    return Emitted(values, used_series)


def label_value_problems(expr: str, emitted: Emitted) -> list[str]:
    """Selectors of ``expr`` that match a crisiswatch metric's label against a value the
    code never gives it (``=``, ``!=``, and each alternative of a plain ``a|b`` regex), and
    metrics no code outside core/metrics.py touches (never set: a rule on them never fires)."""
    problems: list[str] = []
    usage_metrics: set[str] = set()

    def visit(node: Any) -> None:
        if not isinstance(node, promql_parser.VectorSelector) or not node.name:
            return
        usage_metrics.add(node.name)
        labels = emitted.values.get(node.name)
        if labels is None:
            return
        for matcher in node.matchers.matchers:
            known = labels.get(matcher.name)
            if known is None:
                continue  # open, or not this metric's label (promql_problems says so)
            if matcher.op in (promql_parser.MatchOp.Equal, promql_parser.MatchOp.NotEqual):
                wanted = [matcher.value]
            elif re.fullmatch(r"[\w-]+(\|[\w-]+)*", matcher.value):
                wanted = matcher.value.split("|")
            else:
                continue
            problems.extend(
                f"{node.name}: the code never sets {matcher.name}={v!r} (it sets {sorted(known)})"
                for v in wanted
                if v not in known
            )

    promql_parser.walk(promql_parser.parse(expr), visit)
    problems += [
        f"{m}: no code sets it"
        for m in sorted(usage_metrics)
        if m in emitted.values and m not in emitted.used
    ]
    return problems
