"""deploy/prometheus and deploy/grafana: every PromQL expression parses, and every metric
and label it names exists in the registry ``core.metrics.Metrics()`` builds (or is one of
the few outside metrics in ``EXTERNAL_METRICS``). This is the test that catches a renamed
metric. Every label value a selector matches is one the code can set (a scan of the
``.labels(...)`` calls: ``outcome="failure"`` where the code says ``"failed"`` would match
nothing, and the rule never fire), and some code sets every metric used. What signals
trouble has a panel, and where an operator must act, a rule. Also: rule file structure,
scrape jobs and ports against compose and k8s, and the dashboard's provisioning and layout.
"""

from __future__ import annotations

import json
import re
from typing import Any

import promql_parser
import pytest

from tests.deploy_support import (
    DASHBOARD,
    DEPLOY,
    PROMETHEUS,
    ROLES,
    all_panels,
    compose,
    emitted_label_values,
    exported_series,
    grafana_expr,
    k8s_documents,
    label_value_problems,
    load_yaml,
    promql_problems,
    promql_usage,
)

SERIES = exported_series()
EMITTED = emitted_label_values()
RULES = load_yaml(PROMETHEUS / "rules.yml")
ALL_RULES = [rule for group in RULES["groups"] for rule in group["rules"]]


def panels() -> list[dict[str, Any]]:
    return [p for p in all_panels() if p["type"] != "row"]


PANEL_QUERIES = [(p["title"], t["expr"]) for p in panels() for t in p["targets"]]


def test_the_drift_check_can_fail() -> None:
    assert promql_problems("rate(crisiswatch_mentions_ingested_total[5m])", SERIES) == []
    assert promql_problems("rate(crisiswatch_mentions_ingested[5m])", SERIES) == [
        "unknown metric 'crisiswatch_mentions_ingested'"
    ]
    assert promql_problems('crisiswatch_source_up{channel="x"}', SERIES) == [
        "crisiswatch_source_up has no label 'channel'"
    ]
    assert promql_problems("sum by (watch) (crisiswatch_incidents_open)", SERIES) == [
        "no metric here has label 'watch'"
    ]
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(crisiswatch_deliveries_total[5m])")


def test_the_label_value_check_can_fail() -> None:
    expr = 'crisiswatch_deliveries_total{outcome="%s"}'
    assert label_value_problems(expr % "failed", EMITTED) == []
    assert label_value_problems(expr % "failure", EMITTED) == [
        "crisiswatch_deliveries_total: the code never sets outcome='failure' "
        "(it sets ['cancelled', 'failed', 'retry', 'sent'])"
    ]
    cascade = 'crisiswatch_listener_cascade_db_errors_total{operation=~"%s"}'
    assert label_value_problems(cascade % "save|prune", EMITTED) == []
    assert len(label_value_problems(cascade % "save|store", EMITTED)) == 1
    # resolved through a helper's callers, a loop over constants, drill_label()
    for selector in (
        'crisiswatch_auth_throttle_db_errors_total{operation="count"}',
        'crisiswatch_alert_item_errors_total{step="escalate"}',
        'crisiswatch_sla_breaches_total{drill="false"}',
    ):
        assert label_value_problems(selector, EMITTED) == [], selector
        assert label_value_problems(selector.replace('="', '="x'), EMITTED), selector
    # a value the scan cannot resolve (a source's name) is not checked
    assert label_value_problems('crisiswatch_source_up{source="rss"}', EMITTED) == []


@pytest.mark.parametrize("rule", ALL_RULES, ids=[r["alert"] for r in ALL_RULES])
def test_alert_rule(rule: dict[str, Any]) -> None:
    assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
    assert re.fullmatch(r"Crisiswatch[A-Z][A-Za-z]+", rule["alert"])
    assert promql_problems(rule["expr"], SERIES) == []
    assert label_value_problems(rule["expr"], EMITTED) == []
    if "for" in rule:
        promql_parser.parse_duration(rule["for"])
    assert rule["labels"]["severity"] in {"critical", "warning"}
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    # {{ $labels.x }} in an annotation must be a label the expression's result can carry
    usage = promql_usage(rule["expr"])
    if "absent(" in rule["expr"]:
        # absent() of anything but a plain selector keeps no labels; label_replace adds some
        carried = set(re.findall(r'label_replace\(.+?,\s*"(\w+)"', rule["expr"], re.S))
    else:
        carried = set(usage.grouped) | {"job", "instance"}
        for metric in usage.metrics:
            carried |= SERIES.get(metric, frozenset())
    for text in rule["annotations"].values():
        for label in re.findall(r"\$labels\.(\w+)", text):
            assert label in carried, f"{rule['alert']}: $labels.{label}"


def test_rule_groups_are_unique_and_cover_the_issue() -> None:
    names = [g["name"] for g in RULES["groups"]]
    assert len(names) == len(set(names))
    alerts = [r["alert"] for r in ALL_RULES]
    assert len(alerts) == len(set(alerts))
    used = set().union(*(promql_usage(r["expr"]).metrics for r in ALL_RULES))
    for needed in (
        "up",  # a process down
        "crisiswatch_source_last_event_timestamp_seconds",  # a source stalled
        "kafka_consumergroup_lag",  # consumer lag growing
        "crisiswatch_deliveries_total",  # deliveries failing
        "crisiswatch_sla_breaches_total",  # an SLA breached
        "crisiswatch_bus_consumer_halted",  # a consumer halted by the dead-letter limit
        "crisiswatch_source_future_dated_total",  # a source's dates keep running ahead
        "crisiswatch_detector_future_dated_mentions_total",  # bad timestamps at the detector
        "crisiswatch_source_window_cuts_total",  # a platform limit cut a poll's window
        "crisiswatch_alert_item_errors_total",  # one incident's alerting step failing
        "crisiswatch_classifier_process_restarts_total",  # the classifier's child dying
        "crisiswatch_auth_throttle_db_errors_total",  # the shared lockout without database
        "crisiswatch_inbound_refused_total",  # webhook senders refused (bus, signature)
    ):
        assert needed in used, needed


@pytest.mark.parametrize("title,expr", PANEL_QUERIES, ids=[t for t, _ in PANEL_QUERIES])
def test_dashboard_query(title: str, expr: str) -> None:
    assert promql_problems(grafana_expr(expr), SERIES) == []
    assert label_value_problems(grafana_expr(expr), EMITTED) == []


def test_dashboard_structure_and_coverage() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in all_panels()]
    assert len(ids) == len(set(ids))
    datasource = load_yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yaml")
    (source,) = datasource["datasources"]
    for panel in panels():
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert panel["targets"], panel["title"]
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
    used = set().union(*(promql_usage(grafana_expr(e)).metrics for _, e in PANEL_QUERIES))
    for needed in (
        "crisiswatch_mentions_ingested_total",  # mentions/s by source
        "crisiswatch_mentions_scored_total",  # sentiment mix
        "crisiswatch_incidents_open",  # open incidents by tier
        "crisiswatch_alert_latency_seconds_bucket",  # alert latency p50/p99
        "crisiswatch_time_to_ack_seconds_bucket",  # time to ack
        "crisiswatch_sla_breaches_total",  # SLA breaches
        "kafka_consumergroup_lag",  # consumer lag
        "crisiswatch_bus_consumer_lag",  # consumer lag as the processes report it
        "crisiswatch_deliveries_total",  # delivery failures
        "crisiswatch_source_up",  # source health
        "crisiswatch_source_reconnects_total",  # reconnects after errors (a stalled stream too)
        "crisiswatch_bus_consumer_halted",  # halted consumers
        "crisiswatch_source_future_dated_total",  # mentions re-dated at their source
        "crisiswatch_detector_future_dated_mentions_total",  # counted at event time
        "crisiswatch_listener_cascade_unsaved",  # the cascade index waiting for the database
        "crisiswatch_listener_cascade_dropped_total",  # ... and what it lost
        # what else goes wrong, where an operator looks for it
        "crisiswatch_source_targets_failing",  # source health: coverage gaps
        "crisiswatch_source_page_caps_total",
        "crisiswatch_source_window_cuts_total",
        "crisiswatch_inbound_refused_total",  # webhook, Slack and ack-link refusals
        "crisiswatch_classifier_process_restarts_total",  # the scorer's classifier
        "crisiswatch_alert_tick_errors_total",  # the alerter's steps
        "crisiswatch_alert_item_errors_total",
        "crisiswatch_detector_restores_total",  # the detector's state
        "crisiswatch_detector_state_fenced_total",
        "crisiswatch_auth_failures_total",  # API security
        "crisiswatch_auth_throttle_db_errors_total",
    ):
        assert needed in used, needed


def test_dashboard_panels_do_not_overlap() -> None:
    """Grafana moves an overlapping panel on import: the layout is not the one reviewed.
    Rows hold the panels below them up to the next row; a collapsed row's own panels are
    laid out as if it were open."""
    taken: dict[tuple[int, int], str] = {}
    for panel in all_panels():
        grid = panel["gridPos"]
        assert grid["w"] >= 1 and grid["h"] >= 1 and grid["x"] >= 0 and grid["y"] >= 0
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                other = taken.setdefault((x, y), panel["title"])
                assert other == panel["title"], f"{panel['title']!r} overlaps {other!r}"


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """``host:container[:ro]`` volume strings as host -> container."""
    return dict(v.split(":")[:2] for v in service["volumes"])


def test_grafana_and_prometheus_mounts_match_their_configs() -> None:
    services = compose()["services"]
    grafana = _mounts(services["grafana"])
    provider = load_yaml(DEPLOY / "grafana/provisioning/dashboards/crisiswatch.yaml")
    (dashboards,) = provider["providers"]
    assert grafana["../grafana/dashboards"] == dashboards["options"]["path"]
    assert grafana["../grafana/provisioning"] == "/etc/grafana/provisioning"
    datasource = load_yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yaml")
    (source,) = datasource["datasources"]
    port = services["prometheus"]["ports"][0].rsplit(":", 1)[-1]
    assert source["url"] == f"http://prometheus:{port}"
    prometheus = _mounts(services["prometheus"])
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    assert prometheus["../prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert config["rule_files"] == [prometheus["../prometheus/rules.yml"]]
    for host in prometheus:
        assert host.startswith("../") is False or (DEPLOY / "compose" / host).exists(), host


def test_every_process_is_scraped_on_the_port_it_serves() -> None:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    services = compose()["services"]
    for role in ROLES:
        (sd,) = jobs[f"crisiswatch-{role}"]["dns_sd_configs"]
        (name,) = sd["names"]
        assert services[name]["command"][0] == role, f"{name} does not run {role}"
        health = " ".join(services[name]["healthcheck"]["test"])
        assert f"127.0.0.1:{sd['port']}/" in health, f"{role}: scraped on {sd['port']}"
    exporter = jobs["kafka-exporter"]["static_configs"][0]["targets"][0]
    assert exporter.split(":")[0] in services


def test_prometheus_sends_the_metrics_token_every_process_asks_for() -> None:
    """Compose: each crisiswatch job reads its bearer token from the file of a secret
    mounted into Prometheus, made from the variable that every role's
    ``CRISISWATCH_API__METRICS_TOKEN`` (``api.metrics_token``) is set from; the other jobs
    (kafka-exporter, Prometheus itself) are not sent it."""
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    data = compose()
    services = data["services"]
    mounted = {}
    for secret in services["prometheus"].get("secrets", []):
        source = secret if isinstance(secret, str) else secret["source"]
        target = source if isinstance(secret, str) else secret.get("target", source)
        mounted[target if target.startswith("/") else f"/run/secrets/{target}"] = source
    for role in ROLES:
        auth = jobs[f"crisiswatch-{role}"]["authorization"]
        assert auth.get("type", "Bearer") == "Bearer", role
        assert set(auth) <= {"type", "credentials_file"}, f"{role}: the token inline"
        source = mounted[auth["credentials_file"]]  # KeyError: not mounted
        variable = data["secrets"][source]["environment"]
        (name,) = jobs[f"crisiswatch-{role}"]["dns_sd_configs"][0]["names"]
        env = services[name].get("environment", {})
        assert env["CRISISWATCH_API__METRICS_TOKEN"].startswith(f"${{{variable}:?"), role
    for other in set(jobs) - {f"crisiswatch-{role}" for role in ROLES}:
        assert "authorization" not in jobs[other], other


def test_kubernetes_scrape_config_keeps_the_pods_http_port() -> None:
    config = load_yaml(PROMETHEUS / "prometheus-k8s.yml")
    (job,) = config["scrape_configs"]
    relabel = {tuple(r["source_labels"]): r for r in job["relabel_configs"]}
    port_name = relabel[("__meta_kubernetes_pod_container_port_name",)]["regex"]
    part_of = relabel[("__meta_kubernetes_pod_label_app_kubernetes_io_part_of",)]["regex"]
    component = relabel[("__meta_kubernetes_pod_label_app_kubernetes_io_component",)]
    assert component["target_label"] == "job"
    assert component["replacement"] == "crisiswatch-$1"  # the compose job names
    # every pod's /metrics asks for the Secret's token (test_deploy_k8s checks the pods)
    assert job["authorization"]["type"] == "Bearer"
    assert set(job["authorization"]) == {"type", "credentials_file"}
    assert job["authorization"]["credentials_file"].startswith("/etc/prometheus/secrets/")
    roles = set()
    for _, doc in k8s_documents():
        if doc["kind"] != "Deployment":
            continue
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == part_of
        roles.add(labels["app.kubernetes.io/component"])
        ports = doc["spec"]["template"]["spec"]["containers"][0]["ports"]
        assert [p["containerPort"] for p in ports if p["name"] == port_name] == [8000]
    assert roles == set(ROLES)
