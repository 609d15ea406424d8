"""Drill incidents are measured in their own series (``drill="true"``): their alert latency
and time to statement never move the real ones, and every alert rule and dashboard panel
that reads an incident metric with a ``drill`` label reads real incidents only."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import promql_parser
import pytest

from alerts import incidents as svc
from core.clock import ManualClock
from core.db import unit_of_work
from tests.deploy_support import DASHBOARD, PROMETHEUS, exported_series, load_yaml
from tests.integration.test_alerts_policies import Sessions, World, make_world, signal


@pytest.fixture
async def world(sessions: Sessions, clock: ManualClock) -> AsyncIterator[World]:
    async for w in make_world(sessions, clock):
        yield w


async def test_a_drills_alert_latency_and_statement_are_a_drills_own_series(
    world: World,
) -> None:
    # a real tier-2 incident alerted at once, and a drill whose mentions came in an hour ago
    # (a replayed drill): the drill's hour must not show as the real latency
    await world.signal("r", tier=2, story="real")
    drill = signal(world.clock, "d", tier=2, story="drill").model_copy(
        update={"drill": True, "trigger_received_at": world.clock.now() - timedelta(hours=1)}
    )
    await world.service.handle_signals([drill])
    await world.service.sent()
    assert world.sent() == ["pr", "pr"]
    latency = "crisiswatch_alert_latency_seconds"
    assert world.metric(f"{latency}_count", tier="2", drill="false") == 1
    assert world.metric(f"{latency}_sum", tier="2", drill="false") == 0
    assert world.metric(f"{latency}_count", tier="2", drill="true") == 1
    assert world.metric(f"{latency}_sum", tier="2", drill="true") == 3600

    incident = await world.incident("drill")
    assert incident.drill
    world.clock.set(incident.alerted_at + timedelta(minutes=20))
    async with unit_of_work(world.sessions) as session:
        await svc.record_response(
            session, incident.id, "statement", "pr-lead", world.clock, metrics=world.service.metrics
        )
    statement = "crisiswatch_time_to_statement_seconds"
    assert world.metric(f"{statement}_count", tier="2", drill="true") == 1
    assert world.metric(f"{statement}_sum", tier="2", drill="true") == 1200
    assert world.metric(f"{statement}_count", tier="2", drill="false") == 0


SERIES = exported_series()
DRILL_LABELLED = sorted(name for name, labels in SERIES.items() if "drill" in labels)


def _queries() -> list[tuple[str, str]]:
    rules = load_yaml(PROMETHEUS / "rules.yml")
    found = [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for panel in dashboard["panels"]:
        for p in [panel, *panel.get("panels", [])]:
            found += [(p["title"], t["expr"]) for t in p.get("targets", [])]
    return found


def _unfiltered(expr: str) -> list[str]:
    """Selectors of drill-labelled metrics in ``expr`` that do not select drill="false"."""
    for variable in ("$__rate_interval", "$__interval", "$__range"):
        expr = expr.replace(variable, "5m")
    missing: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name in DRILL_LABELLED:
            real = any(
                m.name == "drill" and m.op == promql_parser.MatchOp.Equal and m.value == "false"
                for m in node.matchers.matchers
            )
            if not real:
                missing.append(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return missing


def test_the_latency_and_statement_metrics_carry_a_drill_label() -> None:
    for name in (
        "crisiswatch_alert_latency_seconds_bucket",
        "crisiswatch_time_to_statement_seconds_bucket",
        "crisiswatch_time_to_ack_seconds_bucket",
        "crisiswatch_sla_breaches_total",
    ):
        assert name in DRILL_LABELLED, name
    assert _unfiltered("rate(crisiswatch_alert_latency_seconds_bucket[5m])") == [
        "crisiswatch_alert_latency_seconds_bucket"
    ]
    assert _unfiltered('rate(crisiswatch_alert_latency_seconds_bucket{drill="false"}[5m])') == []


@pytest.mark.parametrize("name,expr", _queries(), ids=[q[0] for q in _queries()])
def test_rules_and_panels_read_real_incidents_only(name: str, expr: str) -> None:
    assert _unfiltered(expr) == [], name
