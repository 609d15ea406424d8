"""The routing tree, table-driven from ``data/routing_cases.yaml``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.config import AlertsConfig
from alerts.routing import MAX_GROUP_KEY, AlertAttrs, match_routes, routed_teams, sources_of

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


def test_a_short_group_key_is_unchanged() -> None:
    route = match_routes(_config(), AlertAttrs(tier=2, watch="acme"))[0]
    route = replace(route, group_by=("watch", "story", "tier", "source"))
    attrs = AlertAttrs(tier=2, watch="acme", story="acme:b1", sources=frozenset({"x", "bsky"}))
    assert route.group_key(attrs) == f"{route.path}|watch=acme|story=acme:b1|tier=2|source=bsky,x"


def test_a_long_group_key_fits_its_column_and_stays_one_per_group() -> None:
    route = match_routes(_config(), AlertAttrs(tier=2, watch="acme"))[0]
    route = replace(route, group_by=("watch", "story", "tier", "source"))

    def key(story: str) -> str:
        sources = frozenset(f"instance-{i}.example.social" for i in range(20))
        return route.group_key(AlertAttrs(tier=2, watch="w" * 100, story=story, sources=sources))

    a, b = key("acme:" + "a" * 250), key("acme:" + "a" * 249 + "b")
    assert len(a) == len(b) == MAX_GROUP_KEY
    assert a == key("acme:" + "a" * 250), "the same group, the same key"
    assert a != b, "groups that differ only past the head keep apart"
    assert a.startswith(f"{route.path}|watch={'w' * 100}|story=acme:aaa")
