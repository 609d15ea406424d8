"""Who a message goes to: channels, the teams they stand for, the people to @-mention,
and the channels to fall back to when one keeps failing.

``Targets`` maps a channel name to one ``Target``: a channel shared by several teams (or
reached for several people) gets one message that names them all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from alerts.channels import keyed
from alerts.config import AlertsConfig, StepTargets
from alerts.notifiers.base import Contact
from alerts.oncall import contact, team_on_call


@dataclass
class Target:
    teams: list[str] = field(default_factory=list)
    mentions: list[Contact] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)


Targets = dict[str, Target]


def _add(
    out: Targets,
    channel: str,
    team: str | None,
    *,
    mention: Contact | None = None,
    fallbacks: Iterable[str] = (),
) -> None:
    target = out.setdefault(channel, Target())
    if team is not None and team not in target.teams:
        target.teams.append(team)
    if mention is not None and mention not in target.mentions:
        target.mentions.append(mention)
    for fb in fallbacks:
        if fb != channel and fb not in target.fallbacks:
            target.fallbacks.append(fb)


def team_targets(config: AlertsConfig, teams: Iterable[str], out: Targets | None = None) -> Targets:
    """Every channel of every team (teams no longer configured are left out)."""
    out = {} if out is None else out
    for name in teams:
        team = config.teams.get(name)
        if team is None:
            continue
        for channel in team.channels:
            _add(out, channel, name, fallbacks=team.fallback_channels)
    return out


def unkeyed_team_targets(config: AlertsConfig, teams: Iterable[str]) -> tuple[Targets, list[str]]:
    """The teams' channels, less those that key their alerts per incident page
    (``alerts.channels.KEYED_CHANNEL_TYPES``: PagerDuty), for messages that are not the
    incident's page (playbook task reminders); a team left with none gets its first unkeyed
    fallback channel. Also returns the keyed channels left out."""

    def unkeyed(channel: str) -> bool:
        return channel in config.channels and not keyed(config.channels[channel].type)

    out: Targets = {}
    left_out: list[str] = []
    for name in teams:
        team = config.teams.get(name)
        if team is None:
            continue
        channels = [c for c in team.channels if unkeyed(c)]
        fallbacks = [c for c in team.fallback_channels if unkeyed(c)]
        left_out += [c for c in team.channels if c in config.channels and not unkeyed(c)]
        if not channels:
            channels, fallbacks = fallbacks[:1], fallbacks[1:]
        for channel in channels:
            _add(out, channel, name, fallbacks=fallbacks)
    return out, sorted(set(left_out))


def person_targets(
    config: AlertsConfig, person: str, team: str | None, out: Targets | None = None
) -> Targets:
    """The person's first channel (the others as fallbacks), with them @-mentioned; a
    person without channels is mentioned on ``team``'s channels, or without a ``team``
    (a step naming them) on those of their teams (``AlertsConfig.teams_of``)."""
    out = {} if out is None else out
    cfg = config.people.get(person)
    if cfg is None:
        return out
    who = contact(person, cfg)
    team_cfg = config.teams.get(team) if team else None
    if cfg.channels:
        rest = cfg.channels[1:] + (team_cfg.fallback_channels if team_cfg else [])
        _add(out, cfg.channels[0], team, mention=who, fallbacks=rest)
        return out
    for name in [team] if team else config.teams_of(person):
        if (team_cfg := config.teams.get(name)) is not None:
            for channel in team_cfg.channels:
                _add(out, channel, name, mention=who, fallbacks=team_cfg.fallback_channels)
    return out


def on_call_targets(
    config: AlertsConfig, teams: Iterable[str], at: datetime, out: Targets | None = None
) -> tuple[Targets, dict[str, str | None]]:
    """Each team's on-call person; a team with nobody on call is notified on its
    channels. Also returns team -> person (None: nobody) for the timeline."""
    out = {} if out is None else out
    who: dict[str, str | None] = {}
    for team in teams:
        if team not in config.teams:
            continue
        person = team_on_call(config, team, at).person
        who[team] = person
        if person is None or person not in config.people:
            team_targets(config, [team], out)
        else:
            person_targets(config, person, team, out)
    return out, who


def step_targets(
    config: AlertsConfig, notify: str | StepTargets, routed: list[str], at: datetime
) -> tuple[Targets, dict[str, object]]:
    """The targets of one escalation step and a description for the timeline."""
    if notify == "route":
        return team_targets(config, routed), {"teams": routed}
    if notify == "on_call":
        out, who = on_call_targets(config, routed, at)
        return out, {"on_call": who}
    assert isinstance(notify, StepTargets)
    out = team_targets(config, notify.teams)
    for person in notify.people:
        person_targets(config, person, None, out)
    _, who = on_call_targets(config, notify.on_call_of, at, out)
    return out, {"teams": notify.teams, "people": notify.people, "on_call": who}
