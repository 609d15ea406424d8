"""The routing tree: which teams an alert goes to, with which grouping.

Alertmanager's rules: the root matches everything; a node's children are tried in order
and the first one that matches wins, unless it has ``continue: true`` (then the next
siblings are tried too); a node none of whose children match is itself the result. Unset
fields (teams, group_by, group_wait, group_interval, repeat_interval) are inherited.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from alerts.config import AlertsConfig, Matchers, RouteConfig

MAX_GROUP_KEY = 512
"""The longest digest group key (``alert_deliveries.digest_group`` is ``String(512)``)."""


@dataclass(frozen=True)
class AlertAttrs:
    """What routes match on, for one incident."""

    tier: int
    watch: str
    story: str = ""
    sources: frozenset[str] = frozenset()
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def language(self) -> str | None:
        return self.labels.get("language")


@dataclass(frozen=True)
class Route:
    path: str
    teams: tuple[str, ...]
    group_by: tuple[str, ...]
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta

    def group_key(self, attrs: AlertAttrs) -> str:
        values = {
            "watch": attrs.watch,
            "story": attrs.story,
            "tier": str(attrs.tier),
            "source": ",".join(sorted(attrs.sources)),
        }
        return fit_key(self.path + "|" + "|".join(f"{k}={values[k]}" for k in self.group_by))


def fit_key(key: str, limit: int = MAX_GROUP_KEY) -> str:
    """``key`` when it fits ``limit`` characters, else its head and a hash of the whole
    (a long story id, many sources): still one key per group, and readable."""
    if len(key) <= limit:
        return key
    digest = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
    return f"{key[: limit - len(digest) - 1]}~{digest}"


def sources_of(mention_ids: Iterable[str]) -> frozenset[str]:
    """Platforms of mention ids (``"<source>:<native id>"``)."""
    return frozenset(i.split(":", 1)[0] for i in mention_ids if ":" in i)


def matches(m: Matchers, attrs: AlertAttrs) -> bool:
    if m.tier is not None and attrs.tier not in m.tier:
        return False
    if m.watch is not None and attrs.watch not in m.watch:
        return False
    if m.source is not None and not attrs.sources & set(m.source):
        return False
    if m.language is not None and attrs.language not in m.language:
        return False
    return all(attrs.labels.get(k) == v for k, v in m.labels.items())


_ROOT = Route(
    path="routes",
    teams=(),
    group_by=(),
    group_wait=timedelta(0),
    group_interval=timedelta(minutes=5),
    repeat_interval=timedelta(hours=4),
)


def _inherit(node: RouteConfig, parent: Route, path: str) -> Route:
    return Route(
        path=path,
        teams=tuple(node.teams) if node.teams is not None else parent.teams,
        group_by=tuple(node.group_by) if node.group_by is not None else parent.group_by,
        group_wait=node.group_wait if node.group_wait is not None else parent.group_wait,
        group_interval=(
            node.group_interval if node.group_interval is not None else parent.group_interval
        ),
        repeat_interval=(
            node.repeat_interval if node.repeat_interval is not None else parent.repeat_interval
        ),
    )


def _walk(node: RouteConfig, here: Route, attrs: AlertAttrs) -> list[Route]:
    found: list[Route] = []
    for i, child in enumerate(node.routes):
        if not matches(child.match, attrs):
            continue
        found.extend(_walk(child, _inherit(child, here, f"{here.path}.routes[{i}]"), attrs))
        if not child.continue_:
            break
    return found or [here]


def match_routes(config: AlertsConfig, attrs: AlertAttrs) -> list[Route]:
    """Every route the alert takes (more than one only through ``continue``)."""
    root = _inherit(config.routes, _ROOT, "routes")
    return [r for r in _walk(config.routes, root, attrs) if r.teams]


def routed_teams(config: AlertsConfig, attrs: AlertAttrs) -> list[str]:
    """The teams of every matched route, in order, each once."""
    out: dict[str, None] = {}
    for route in match_routes(config, attrs):
        out.update(dict.fromkeys(route.teams))
    return list(out)
