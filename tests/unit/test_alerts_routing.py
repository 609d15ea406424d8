"""The routing tree, table-driven from ``data/routing_cases.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.config import AlertsConfig
from alerts.routing import AlertAttrs, match_routes, routed_teams, sources_of

CASES_FILE = Path(__file__).parent / "data" / "routing_cases.yaml"
TABLE: dict[str, Any] = yaml.safe_load(CASES_FILE.read_text())


def _config() -> AlertsConfig:
    raw = TABLE["config"]
    channels = {ch: {"type": "console"} for t in raw["teams"].values() for ch in t["channels"]}
    return AlertsConfig.model_validate({**raw, "channels": channels})


@pytest.mark.parametrize("case", TABLE["cases"], ids=[c["name"] for c in TABLE["cases"]])
def test_routing_table(case: dict[str, Any]) -> None:
    config = _config()
    a = case["attrs"]
    attrs = AlertAttrs(
        tier=a["tier"],
        watch=a["watch"],
        story="s1",
        sources=frozenset(a.get("sources", ())),
        labels=a.get("labels", {}),
    )
    routes = match_routes(config, attrs)
    assert [r.path for r in routes] == case["routes"]
    assert routed_teams(config, attrs) == case["teams"]
    if "group_wait" in case:
        assert routes[0].group_wait.total_seconds() == case["group_wait"]
    assert all(r.group_by == ("story",) for r in routes), "group_by is inherited"


def test_group_key_names_the_route_and_the_grouped_values() -> None:
    config = _config()
    attrs = AlertAttrs(tier=1, watch="acme", story="s9")
    (route,) = match_routes(config, attrs)
    assert route.group_key(attrs) == "routes|story=s9"


def test_sources_are_the_platforms_of_the_mention_ids() -> None:
    assert sources_of(["bsky:1", "weibo:2", "bad"]) == frozenset({"bsky", "weibo"})
