"""deploy/prometheus/rules.yml and the Grafana dashboard beyond "every name exists"
(test_deploy_observability.py): what the expressions do with the series must make sense.

- a dashboard legend's ``{{label}}`` is a label the query's result keeps (``sum by (source)``
  keeps ``source`` only: ``{{channel}}`` there is blank on every line), and so is an alert
  annotation's ``{{ $labels.x }}``, read with the same label arithmetic;
- ``rate``/``increase``/``irate``/``resets`` read counters (``_total``, a histogram's
  ``_bucket``/``_count``/``_sum``), ``delta``/``deriv``/``predict_linear`` gauges: Prometheus
  evaluates both mistakes without an error (a counter turned gauge makes a rule silent);
- ``histogram_quantile`` reads ``_bucket`` series and every aggregation on the way keeps
  ``le`` (without it the result is empty);
- a ``le="..."`` matcher names one of the histogram's bucket bounds as the client writes it;
- a ``job`` matcher names a scrape job of prometheus.yml, and the rule that says a role has no
  process watches every crisiswatch job;
- the Kafka exporter's ``consumergroup`` values the queries match, and the exporter's
  ``--group.filter`` in compose, take the consumer groups the code uses
  (``bus.topic_prefix`` + the stage's group).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import promql_parser as pp
import pytest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.utils import floatToGoString

from alerts.service import GROUP as ALERTER_GROUP
from api.settings import load_settings
from core.metrics import Metrics
from sentiment.detector.service import GROUP as DETECTOR_GROUP
from sentiment.scorer import GROUP as SCORER_GROUP
from tests.deploy_support import (
    DASHBOARD,
    DEPLOY,
    EXTERNAL_METRICS,
    PROMETHEUS,
    ROLES,
    TARGET_LABELS,
    compose,
    exported_series,
    grafana_expr,
    load_yaml,
)

SERIES = {**exported_series(), **EXTERNAL_METRICS}
COUNTER_FUNCTIONS = {"rate", "irate", "increase", "resets"}
GAUGE_FUNCTIONS = {"delta", "idelta", "deriv", "predict_linear", "double_exponential_smoothing"}
SCALAR_FUNCTIONS = {"time", "scalar", "pi", "vector"}


def series_kinds() -> dict[str, str]:
    """Series name -> ``counter`` or ``gauge``, as PromQL functions must treat it."""
    kinds = {"up": "gauge", "kafka_consumergroup_lag": "gauge"}
    for value in vars(Metrics()).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        name, kind = value._name, value._type
        if kind == "counter":
            kinds[name + "_total"], kinds[name + "_created"] = "counter", "gauge"
        elif kind in ("histogram", "summary"):
            for suffix in ("_bucket", "_count", "_sum"):
                kinds[name + suffix] = "counter"
            kinds[name + "_created"] = "gauge"
            if kind == "summary":
                kinds[name] = "gauge"
        else:
            kinds[name] = "gauge"
    return kinds


def bucket_bounds() -> dict[str, set[str]]:
    """``<histogram>_bucket`` -> its ``le`` values as the client exports them (``300.0``)."""
    bounds = {}
    for value in vars(Metrics()).values():
        if isinstance(value, MetricWrapperBase) and value._type == "histogram":
            upper = value._upper_bounds  # type: ignore[attr-defined]
            bounds[value._name + "_bucket"] = {floatToGoString(b) for b in upper}  # type: ignore[no-untyped-call]
    return bounds


KINDS = series_kinds()
BOUNDS = bucket_bounds()


# -- the labels an expression's result keeps ---------------------------------------------


def _is_scalar(node: Any) -> bool:
    if isinstance(node, pp.NumberLiteral):
        return True
    if isinstance(node, pp.ParenExpr | pp.UnaryExpr):
        return _is_scalar(node.expr)
    if isinstance(node, pp.Call):
        return node.func.name in SCALAR_FUNCTIONS - {"vector"}
    if isinstance(node, pp.BinaryExpr):
        return _is_scalar(node.lhs) and _is_scalar(node.rhs)
    return False


def kept_labels(node: Any, series: dict[str, frozenset[str]] = SERIES) -> set[str]:
    """The labels the series of ``node``'s result can carry (an over-approximation where
    PromQL's vector matching would need the data to tell)."""
    if isinstance(node, pp.VectorSelector):
        names = {node.name} if node.name else set()
        names |= {m.value for m in node.matchers.matchers if m.name == "__name__"}
        labels = set(TARGET_LABELS)
        for name in names:
            labels |= series.get(name, frozenset())
        return labels
    if isinstance(node, pp.MatrixSelector):
        return kept_labels(node.vector_selector, series)
    if isinstance(node, pp.ParenExpr | pp.UnaryExpr | pp.SubqueryExpr):
        return kept_labels(node.expr, series)
    if isinstance(node, pp.NumberLiteral | pp.StringLiteral):
        return set()
    if isinstance(node, pp.AggregateExpr):
        inner = kept_labels(node.expr, series)
        if str(node.op) in ("topk", "bottomk", "limitk", "limit_ratio"):
            return inner
        param = node.param
        extra = {param.val} if str(node.op) == "count_values" and param is not None else set()
        if node.modifier is None:
            return extra
        wanted = set(node.modifier.labels)
        if node.modifier.type == pp.AggModifierType.By:
            return (wanted & inner) | extra
        return inner - wanted | extra
    if isinstance(node, pp.Call):
        name, args = node.func.name, list(node.args)
        if name in SCALAR_FUNCTIONS or name == "absent_over_time":
            return set()
        if name == "absent":  # only the equality matchers of a plain selector
            (arg,) = args
            if isinstance(arg, pp.VectorSelector):
                return {m.name for m in arg.matchers.matchers if m.op == pp.MatchOp.Equal}
            return set()
        if name == "histogram_quantile":
            return kept_labels(args[1], series) - {"le"}
        if name in ("label_replace", "label_join"):
            return kept_labels(args[0], series) | {args[1].val}
        vectors = [a for a in args if not isinstance(a, pp.NumberLiteral | pp.StringLiteral)]
        return kept_labels(vectors[0], series) if vectors else set()
    if isinstance(node, pp.BinaryExpr):
        if _is_scalar(node.lhs):
            return kept_labels(node.rhs, series)
        if _is_scalar(node.rhs):
            return kept_labels(node.lhs, series)
        lhs, rhs = kept_labels(node.lhs, series), kept_labels(node.rhs, series)
        op = str(node.op)
        if op == "or":
            return lhs | rhs
        if op in ("and", "unless"):
            return lhs
        modifier = node.modifier
        if modifier is not None and modifier.matching is not None:
            on = set(modifier.matching.labels)
            matching_on = modifier.matching.type == pp.LabelModifierType.Include
            grouped = set(modifier.group_labels or [])
            card = str(modifier.card)
            if card.endswith("ManyToOne"):  # group_left(y): y of the right side
                return lhs | (grouped & rhs)
            if card.endswith("OneToMany"):
                return rhs | (grouped & lhs)
            return lhs & on if matching_on else lhs - on
        return lhs
    raise AssertionError(f"kept_labels: {type(node).__name__} not handled")


def template_labels(text: str) -> set[str]:
    """``{{x}}`` of a legend, ``{{ $labels.x }}`` of an annotation."""
    legend = re.findall(r"\{\{\s*(\w+)\s*\}\}", text)
    annotation = re.findall(r"\$labels\.(\w+)", text)
    return set(legend) | set(annotation)


def legend_problems(expr: str, legend: str) -> list[str]:
    kept = kept_labels(pp.parse(expr))
    return [f"{{{{{x}}}}} is not kept by the query" for x in sorted(template_labels(legend) - kept)]


# -- what the functions read ------------------------------------------------------------


def _walk(node: Any) -> Iterator[Any]:
    found: list[Any] = []
    pp.walk(node, found.append)
    yield from found


def _selectors(node: Any) -> list[Any]:
    return [n for n in _walk(node) if isinstance(n, pp.VectorSelector)]


def function_problems(expr: str) -> list[str]:
    """Functions given series of the wrong kind, in words (empty: none)."""
    problems = []
    for node in _walk(pp.parse(expr)):
        if not isinstance(node, pp.Call):
            continue
        name = node.func.name
        if name in COUNTER_FUNCTIONS | GAUGE_FUNCTIONS:
            wanted = "counter" if name in COUNTER_FUNCTIONS else "gauge"
            for selector in _selectors(node.args[0]):
                kind = KINDS.get(selector.name or "")
                if kind is not None and kind != wanted:
                    problems.append(f"{name}() of {selector.name}, a {kind}")
        if name == "histogram_quantile":
            argument = node.args[1]
            for selector in _selectors(argument):
                if not (selector.name or "").endswith("_bucket"):
                    problems.append(f"histogram_quantile() of {selector.name}, not a _bucket")
            if "le" not in kept_labels(argument):
                problems.append("histogram_quantile(): an aggregation drops 'le'")
    for selector in _selectors(pp.parse(expr)):
        for matcher in selector.matchers.matchers:
            bounds = BOUNDS.get(selector.name or "")
            if matcher.name == "le" and bounds is not None and matcher.value not in bounds:
                problems.append(
                    f"{selector.name}: no bucket le={matcher.value!r} "
                    f"(it has {sorted(bounds, key=float)})"
                )
    return problems


# -- where the expressions are ------------------------------------------------------------


def _panels() -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found = []
    for panel in dashboard["panels"]:
        found += [panel, *panel.get("panels", [])]
    return [p for p in found if p["type"] != "row"]


TARGETS = [
    (f"{p['title']}: {t.get('legendFormat', '')}", grafana_expr(t["expr"]), t)
    for p in _panels()
    for t in p["targets"]
]
RULES = [rule for group in load_yaml(PROMETHEUS / "rules.yml")["groups"] for rule in group["rules"]]
EXPRESSIONS = [(t[0], t[1]) for t in TARGETS] + [(r["alert"], r["expr"]) for r in RULES]


def scrape_jobs() -> set[str]:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    return {job["job_name"] for job in config["scrape_configs"]}


def consumer_groups() -> set[str]:
    """The Kafka consumer group ids the deployed processes join."""
    settings = load_settings(DEPLOY / "config" / "crisiswatch.yaml")
    prefix = settings.bus.topic_prefix
    return {prefix + g for g in (SCORER_GROUP, DETECTOR_GROUP, ALERTER_GROUP)}


def matcher_problems(
    expr: str, label: str, values: set[str], check: Callable[[str], bool] | None = None
) -> list[str]:
    """``label`` matchers of ``expr`` that take none of ``values`` (``=``, ``=~``)."""
    problems = []
    for selector in _selectors(pp.parse(expr)):
        for m in selector.matchers.matchers:
            if m.name != label:
                continue
            if m.op == pp.MatchOp.Equal:
                hits = {v for v in values if v == m.value}
            elif m.op == pp.MatchOp.Re:
                hits = {v for v in values if re.fullmatch(m.value, v)}
            else:
                continue
            if not hits:
                op = "=" if m.op == pp.MatchOp.Equal else "=~"
                problems.append(f"{selector.name}{{{label}{op}{m.value!r}}} matches nothing here")
    return problems


# -- the checks can fail -----------------------------------------------------------------


def test_the_legend_check_can_fail() -> None:
    by_source = "sum by (source) (rate(crisiswatch_mentions_ingested_total[5m]))"
    assert legend_problems(by_source, "{{source}}") == []
    assert legend_problems(by_source, "{{channel}}") == ["{{channel}} is not kept by the query"]
    assert legend_problems("sum(rate(crisiswatch_mentions_ingested_total[5m]))", "{{source}}")
    assert legend_problems("crisiswatch_source_up", "{{source}} {{instance}}") == []
    assert legend_problems("time() - crisiswatch_source_up", "{{source}}") == []
    quantile = "histogram_quantile(0.5, sum by (le, tier) (rate({}[5m])))"
    assert (
        legend_problems(quantile.format("crisiswatch_time_to_ack_seconds_bucket"), "{{tier}}") == []
    )
    assert legend_problems(quantile.format("crisiswatch_time_to_ack_seconds_bucket"), "{{le}}")
    absent = 'label_replace(absent(up{job="a"} == 1), "job", "a", "", "")'
    assert legend_problems(absent, "{{ $labels.job }}") == []
    assert legend_problems(absent, "{{ $labels.instance }}")
    assert (
        legend_problems(f"{by_source} or {absent}", "{{ $labels.job }} {{ $labels.source }}") == []
    )


def test_the_function_check_can_fail() -> None:
    assert function_problems("rate(crisiswatch_deliveries_total[5m])") == []
    assert function_problems("rate(crisiswatch_incidents_open[5m])") == [
        "rate() of crisiswatch_incidents_open, a gauge"
    ]
    assert function_problems("delta(crisiswatch_deliveries_total[5m])") == [
        "delta() of crisiswatch_deliveries_total, a counter"
    ]
    assert function_problems("delta(sum(kafka_consumergroup_lag)[15m:1m])") == []
    good = (
        "histogram_quantile(0.9, sum by (le) (rate(crisiswatch_alert_latency_seconds_bucket[5m])))"
    )
    assert function_problems(good) == []
    assert function_problems(good.replace("by (le)", "by (tier)")) == [
        "histogram_quantile(): an aggregation drops 'le'"
    ]
    assert function_problems(good.replace("_bucket", "_sum")) == [
        "histogram_quantile() of crisiswatch_alert_latency_seconds_sum, not a _bucket",
        "histogram_quantile(): an aggregation drops 'le'",
    ]
    bucket = 'crisiswatch_alert_latency_seconds_bucket{le="%s"}'
    assert function_problems(bucket % "300.0") == []
    assert len(function_problems(bucket % "300")) == 1  # the client writes 300.0
    assert len(function_problems(bucket % "240.0")) == 1


def test_the_matcher_check_can_fail() -> None:
    jobs = {"crisiswatch-api", "kafka-exporter"}
    assert matcher_problems('up{job=~"crisiswatch-.+"}', "job", jobs) == []
    assert matcher_problems('up{job="crisiswatch-apis"}', "job", jobs)
    groups = {"crisiswatch.scorer"}
    lag = 'kafka_consumergroup_lag{consumergroup=~"%s"}'
    assert matcher_problems(lag % "crisiswatch\\\\..+", "consumergroup", groups) == []
    assert matcher_problems(lag % "crisiswatch-.+", "consumergroup", groups)


# -- the deployed files ------------------------------------------------------------------


@pytest.mark.parametrize("where,expr,target", TARGETS, ids=[t[0] for t in TARGETS])
def test_dashboard_legend_names_kept_labels(where: str, expr: str, target: dict[str, Any]) -> None:
    assert legend_problems(expr, target.get("legendFormat", "")) == []


@pytest.mark.parametrize("rule", RULES, ids=[r["alert"] for r in RULES])
def test_annotation_labels_are_kept_by_the_rule(rule: dict[str, Any]) -> None:
    text = " ".join(rule["annotations"].values())
    assert legend_problems(rule["expr"], text) == []


@pytest.mark.parametrize("where,expr", EXPRESSIONS, ids=[e[0] for e in EXPRESSIONS])
def test_functions_read_series_of_their_kind(where: str, expr: str) -> None:
    assert function_problems(expr) == []


@pytest.mark.parametrize("where,expr", EXPRESSIONS, ids=[e[0] for e in EXPRESSIONS])
def test_job_and_consumer_group_matchers_match_what_runs(where: str, expr: str) -> None:
    assert matcher_problems(expr, "job", scrape_jobs()) == []
    assert matcher_problems(expr, "consumergroup", consumer_groups()) == []


def test_a_missing_role_is_noticed_for_every_role() -> None:
    """The rule with ``absent(up{job="..."})`` names every crisiswatch scrape job."""
    crisiswatch = {j for j in scrape_jobs() if j.startswith("crisiswatch-")}
    assert crisiswatch == {f"crisiswatch-{role}" for role in ROLES}
    watched: set[str] = set()
    for rule in RULES:
        for node in _walk(pp.parse(rule["expr"])):
            if isinstance(node, pp.Call) and node.func.name == "absent":
                for selector in _selectors(node):
                    watched |= {m.value for m in selector.matchers.matchers if m.name == "job"}
    assert watched == crisiswatch


def test_kafka_exporter_exports_the_groups_the_code_joins() -> None:
    command = compose()["services"]["kafka-exporter"]["command"]
    (group_filter,) = [c.split("=", 1)[1] for c in command if c.startswith("--group.filter=")]
    for group in consumer_groups():
        assert re.search(group_filter, group), f"--group.filter={group_filter} drops {group}"
