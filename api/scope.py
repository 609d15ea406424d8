"""What ties an object to watches, for keys scoped to some watches (``Principal.watches``).

Incidents and drills have one watch. A silence is limited to the watches of its ``watch``
matcher (none: every watch). A team belongs to the watches whose alerts the routing tree
may send it, and to every watch when an escalation policy notifies it (or its on-call
person) by name, or a playbook task of a tier is its (reminders go to the task's team):
``teams_of_watches`` says which teams a scoped key may see on call.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import Enum
from typing import Any

from alerts.config import TIERS, AlertsConfig, Matchers, RouteConfig, StepTargets


def silence_watches(matchers: Mapping[str, Any]) -> list[str] | None:
    """The watches a stored silence is limited to (``None``: every watch)."""
    watches = matchers.get("watch")
    return [str(w) for w in watches] if isinstance(watches, list) else None


class _Match(Enum):
    NO = 0
    MAYBE = 1
    YES = 2


def _may_match(m: Matchers, tier: int, watch: str, labels: Mapping[str, str]) -> _Match:
    """Whether a route's matchers match an alert of ``watch`` at ``tier``, as far as they
    can be known without the alert: its evidence's platforms (``source``) and, unless
    ``watch_labels`` fixes it, its ``drill`` label may be anything (``MAYBE``)."""
    if m.tier is not None and tier not in m.tier:
        return _Match.NO
    if m.watch is not None and watch not in m.watch:
        return _Match.NO
    if m.language is not None and labels.get("language") not in m.language:
        return _Match.NO
    verdict = _Match.YES
    for key, value in m.labels.items():
        if key == "drill" and key not in labels:  # set per incident: true or false
            if value not in ("true", "false"):
                return _Match.NO
            verdict = _Match.MAYBE
        elif labels.get(key) != value:
            return _Match.NO
    if m.source is not None:
        if not m.source:
            return _Match.NO
        verdict = _Match.MAYBE  # an alert's sources are its evidence's platforms
    return verdict


def _reachable(
    node: RouteConfig, teams: tuple[str, ...], tier: int, watch: str, labels: Mapping[str, str]
) -> set[str]:
    """The teams of every route an alert of ``watch`` at ``tier`` may take below ``node``
    (``alerts.routing``'s rules: first matching child wins unless ``continue``; a node
    none of whose children match is the result; unset teams are inherited)."""
    found: set[str] = set()
    child_matched = False
    for child in node.routes:
        verdict = _may_match(child.match, tier, watch, labels)
        if verdict is _Match.NO:
            continue
        inherited = tuple(child.teams) if child.teams is not None else teams
        found |= _reachable(child, inherited, tier, watch, labels)
        if verdict is _Match.YES:
            child_matched = True
            if not child.continue_:
                break
    if not child_matched:  # possibly no child matches: this node is the result
        found |= set(teams)
    return found


def watches_named(config: AlertsConfig) -> set[str]:
    """The watches the alerting config names (route matchers, ``watch_labels``), and
    ``""``: any other watch, which only routes without a ``watch`` matcher match."""
    named = {"", *config.watch_labels}
    todo = [config.routes]
    while todo:
        node = todo.pop()
        named.update(node.match.watch or ())
        todo.extend(node.routes)
    return named


def teams_of_watches(
    config: AlertsConfig, watches: Collection[str], tiers: Collection[int] = TIERS
) -> set[str]:
    """The configured teams that alerts of ``watches`` at ``tiers`` (default: any) may
    reach: those the routing tree may route them to (from any platform) and those the
    escalation of one of those tiers may notify by name (``notify: {teams, on_call_of}``)
    or that own a playbook task of one of them (``playbooks[tier][*].team`` of that tier
    and every lower one: playbooks are cumulative, a tier-3 incident has the tier-1 and
    tier-2 tasks too, and their reminders go to those teams)."""
    found: set[str] = set()
    root = tuple(config.routes.teams or ())
    for watch in watches:
        labels = config.watch_labels.get(watch, {})
        for tier in tiers:
            found |= _reachable(config.routes, root, tier, watch, labels)
    for tier in tiers:
        policy = config.policy_for(tier)
        for step in policy.steps if policy is not None else ():
            if isinstance(step.notify, StepTargets):
                found.update(step.notify.teams, step.notify.on_call_of)
    highest = max(tiers, default=0)
    for tier, playbook in config.playbooks.items():
        if tier <= highest:
            found.update(task.team for task in playbook)
    return found & set(config.teams)
