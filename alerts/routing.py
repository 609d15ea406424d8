"""Who gets an alert: tier -> teams -> channels (foundation of the later routing tree).

Both functions return ``{channel name: [team names]}`` in config order, so a channel
shared by several teams gets one message that names them all.
"""

from __future__ import annotations

from alerts.config import AlertsConfig


def alert_targets(config: AlertsConfig, tier: int) -> dict[str, list[str]]:
    """The channels of every team routed for ``tier``."""
    out: dict[str, list[str]] = {}
    for team_name in config.teams_for(tier):
        for channel in config.teams[team_name].channels:
            out.setdefault(channel, []).append(team_name)
    return out


def escalation_targets(config: AlertsConfig, tier: int, level: int) -> dict[str, list[str]]:
    """Escalation ``level`` (1, 2, ...): each routed team's ``escalation[level-1]`` contact;
    past the end of the list the last contact is repeated; a team with no escalation
    contacts is escalated on its own channels."""
    if level < 1:
        raise ValueError("escalation levels start at 1")
    out: dict[str, list[str]] = {}
    for team_name in config.teams_for(tier):
        team = config.teams[team_name]
        contacts = (
            [team.escalation[min(level, len(team.escalation)) - 1]]
            if team.escalation
            else team.channels
        )
        for channel in contacts:
            out.setdefault(channel, []).append(team_name)
    return out
