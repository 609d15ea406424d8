"""Helpers for the tests of deploy/: load its files, interpolate like Compose, and list the
metric names and labels a PromQL expression uses, against the registry of core/metrics.py.
"""

from __future__ import annotations

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


def exported_series() -> dict[str, frozenset[str]]:
    """Every series name a crisiswatch process can export, with its labels."""
    metrics = Metrics()
    series: dict[str, frozenset[str]] = {}
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        name, kind = value._name, value._type
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
