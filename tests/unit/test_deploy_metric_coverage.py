"""Every metric crisiswatch exports is in front of an operator: some panel of the provisioned
Grafana dashboard or some rule of deploy/prometheus/rules.yml reads one of its series. A new
metric (``core/metrics.py``) with neither fails here, unless ``ALLOWED_UNSHOWN`` says why no
one needs to see it. And since only the registry ``Metrics()`` builds is checked (it is the
one a process's ``/metrics`` serves), no code of the packages defines a metric elsewhere.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping

from tests.deploy_support import (
    PACKAGES,
    PROMETHEUS,
    ROOT,
    all_panels,
    exported_families,
    grafana_expr,
    load_yaml,
    promql_usage,
)

ALLOWED_UNSHOWN: dict[str, str] = {
    # "crisiswatch_x": "one line: why no panel and no rule needs it",
}
"""Metrics exported on purpose without a panel or a rule, each with its reason (keep short)."""

METRIC_CLASSES = frozenset({"Counter", "Gauge", "Histogram", "Summary", "Info", "Enum"})
"""prometheus_client's metric classes: constructing one defines a metric."""


def panel_expressions() -> list[str]:
    """Every query of every panel, Grafana's interval variables filled in."""
    return [grafana_expr(t["expr"]) for one in all_panels() for t in one.get("targets", [])]


def rule_expressions() -> list[str]:
    rules = load_yaml(PROMETHEUS / "rules.yml")
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def unshown(expressions: Iterable[str], families: Mapping[str, frozenset[str]]) -> list[str]:
    """The metrics none of whose series any of ``expressions`` reads."""
    read: set[str] = set()
    for expr in expressions:
        read |= promql_usage(expr).metrics
    return sorted(name for name, series in families.items() if not series & read)


def metrics_defined(module: str, source: str) -> list[str]:
    """``module:line`` of each construction of a prometheus_client metric class in
    ``source`` (``Counter(...)`` imported from it, or ``prometheus_client.Counter(...)``)."""
    tree = ast.parse(source)
    local: set[str] = set()  # names bound to a metric class by an import
    modules: set[str] = set()  # names bound to the prometheus_client package itself
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("prometheus_client"):
            local |= {a.asname or a.name for a in node.names if a.name in METRIC_CLASSES}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "prometheus_client":
                    modules.add(alias.asname or alias.name)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        by_name = isinstance(func, ast.Name) and func.id in local
        by_attribute = (
            isinstance(func, ast.Attribute)
            and func.attr in METRIC_CLASSES
            and isinstance(func.value, ast.Name)
            and func.value.id in modules
        )
        if by_name or by_attribute:
            found.append(f"{module}:{node.lineno}")
    return found


FAMILIES = exported_families()
EXPRESSIONS = panel_expressions() + rule_expressions()


def test_the_coverage_check_can_fail() -> None:
    assert unshown([], FAMILIES) == sorted(FAMILIES)
    latency = (
        "histogram_quantile(0.99, sum by (le) (rate(crisiswatch_alert_latency_seconds_bucket[5m])))"
    )
    missing = unshown([latency], FAMILIES)
    assert "crisiswatch_alert_latency_seconds" not in missing  # any series of it counts
    assert "crisiswatch_time_to_ack_seconds" in missing
    by_name = '{__name__="crisiswatch_deliveries_total"}'
    assert "crisiswatch_deliveries" not in unshown([by_name], FAMILIES)


def test_the_definition_check_can_fail() -> None:
    defined = "from prometheus_client import Counter\nX = Counter('x', 'An x')\n"
    assert metrics_defined("m", defined) == ["m:2"]
    assert metrics_defined("m", "import prometheus_client as p\np.Gauge('y', 'A y')\n") == ["m:2"]
    # a type annotation is no definition; nor is collections.Counter
    hint = "from prometheus_client import Counter\ndef f(c: Counter) -> None: ...\n"
    assert metrics_defined("m", hint) == []
    assert metrics_defined("m", "from collections import Counter\nCounter('ab')\n") == []


def test_every_exported_metric_is_on_a_panel_or_in_a_rule() -> None:
    missing = [m for m in unshown(EXPRESSIONS, FAMILIES) if m not in ALLOWED_UNSHOWN]
    assert missing == [], (
        "exported, but on no panel of deploy/grafana/dashboards and in no rule of "
        "deploy/prometheus/rules.yml (add a panel, or a line to ALLOWED_UNSHOWN saying why "
        f"no one needs to see it): {missing}"
    )


def test_the_allow_list_is_current() -> None:
    missing = unshown(EXPRESSIONS, FAMILIES)
    for name, reason in ALLOWED_UNSHOWN.items():
        assert name in FAMILIES, f"{name}: no such metric in core/metrics.py"
        assert reason.strip(), f"{name}: say why it needs no panel"
        assert name in missing, f"{name} is shown now: take it off ALLOWED_UNSHOWN"


def test_every_metric_is_defined_in_the_registry_the_processes_serve() -> None:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "core" / "metrics.py":
                continue
            name = str(path.relative_to(ROOT))
            found += metrics_defined(name, path.read_text(encoding="utf-8"))
    assert found == [], f"metrics defined outside core/metrics.py (add them to Metrics): {found}"
