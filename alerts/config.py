"""The ``alerts`` config section: channels, teams, routes, ack deadlines, delivery.

Foundation version: a tier routes to teams, a team owns chat channels and an ordered list
of escalation contacts (channel names). The defaults need no configuration at all: every
team gets its own console channel, so ``crisiswatch run`` alerts to the log.

Ack deadlines (``ack_timeout``): how long an alert may stay unacknowledged before it
escalates. They are shorter than the response plan's deadlines on purpose, so that the
escalation arrives while the deadline can still be met:

* tier 1 (customer service must answer within 2 h): 30 min;
* tier 2 (PR statement within 1 h; "reach the responsible people within 10 min"): 10 min;
* tier 3 (immediate, group convened within 10 min): 10 min.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import ConfigDict, Field, model_validator

from alerts.channels import (
    AnyChannelConfig,
    ChannelConfig,
    ConsoleChannelConfig,
    SlackChannelConfig,
    WebhookChannelConfig,
)
from core.settings import Section

__all__ = [
    "AlertsConfig",
    "AnyChannelConfig",
    "ChannelConfig",
    "ConsoleChannelConfig",
    "DeliveryConfig",
    "SlackChannelConfig",
    "TeamConfig",
    "WebhookChannelConfig",
]

# pydantic repeats the raw input in its error messages; these sections hold secrets.
_SECRET_SAFE = ConfigDict(extra="forbid", hide_input_in_errors=True)

TIERS = (1, 2, 3)
DEFAULT_TEAMS = ("customer_service", "pr", "marketing", "legal", "executives")


class TeamConfig(Section):
    channels: list[str] = Field(min_length=1, description="channel names alerts go to")
    escalation: list[str] = Field(
        default_factory=list,
        description="ordered contacts (channel names) for escalation levels 1, 2, ...; the "
        "last one repeats; empty = escalate to the team's own channels",
    )


class DeliveryConfig(Section):
    max_attempts: int = Field(8, ge=1, le=50)
    initial_backoff: timedelta = timedelta(seconds=2)
    max_backoff: timedelta = timedelta(minutes=5)
    jitter: float = Field(0.2, ge=0, lt=1, description="+/- fraction applied to each backoff")
    claim_timeout: timedelta = Field(
        timedelta(minutes=2),
        description="a claimed delivery whose outcome was never recorded (crash) is sent "
        "again after this long; must exceed every channel's timeout",
    )
    batch_size: int = Field(50, ge=1, le=1000)

    @model_validator(mode="after")
    def _positive(self) -> DeliveryConfig:
        if self.initial_backoff <= timedelta(0):
            raise ValueError("initial_backoff must be positive")
        if self.max_backoff < self.initial_backoff:
            raise ValueError("max_backoff must be at least initial_backoff")
        return self

    def backoff(self, attempts: int) -> timedelta:
        """Delay before the next try after ``attempts`` failed ones (no jitter)."""
        factor: int = 2 ** min(max(attempts - 1, 0), 30)
        return min(self.max_backoff, self.initial_backoff * factor)


def _default_channels() -> dict[str, AnyChannelConfig]:
    return {f"{team}-console": ConsoleChannelConfig() for team in DEFAULT_TEAMS}


def _default_teams() -> dict[str, TeamConfig]:
    return {team: TeamConfig(channels=[f"{team}-console"]) for team in DEFAULT_TEAMS}


def _default_routes() -> dict[int, list[str]]:
    return {1: ["customer_service"], 2: ["pr", "marketing"], 3: ["pr", "legal", "executives"]}


def _default_ack_timeout() -> dict[int, timedelta]:
    return {1: timedelta(minutes=30), 2: timedelta(minutes=10), 3: timedelta(minutes=10)}


class AlertsConfig(Section):
    model_config = _SECRET_SAFE

    channels: dict[str, ChannelConfig] = Field(default_factory=_default_channels)
    teams: dict[str, TeamConfig] = Field(default_factory=_default_teams)
    routes: dict[int, list[str]] = Field(
        default_factory=_default_routes, description="tier -> the teams alerted"
    )
    ack_timeout: dict[int, timedelta] = Field(
        default_factory=_default_ack_timeout,
        description="tier -> how long an alert may go unacknowledged before it escalates",
    )
    max_escalations: int = Field(4, ge=0, le=20)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    tick_interval: timedelta = Field(
        timedelta(seconds=5), description="how often the outbox and escalations are checked"
    )
    deliver_on_signal: bool = Field(
        True, description="send the new alerts right after a signal instead of at the next tick"
    )
    public_url: str | None = Field(
        None, description="base URL of the crisiswatch API, for links in alerts"
    )
    incident_path: str = Field("/incidents/{id}", description="API path of an incident")
    ack_path: str = Field("/incidents/{id}/ack", description="API path shown as the ack hint")
    evidence_in_alert: int = Field(3, ge=0, le=10, description="evidence snippets per alert")

    @model_validator(mode="after")
    def _references(self) -> AlertsConfig:
        problems: list[str] = []
        for team_name, team in self.teams.items():
            for field_name in ("channels", "escalation"):
                for channel in getattr(team, field_name):
                    if channel not in self.channels:
                        problems.append(
                            f"teams.{team_name}.{field_name}: unknown channel {channel!r} "
                            f"(channels: {sorted(self.channels)})"
                        )
        for tier, teams in sorted(self.routes.items()):
            if tier not in TIERS:
                problems.append(f"routes: tier {tier} does not exist (tiers are 1, 2, 3)")
            if not teams:
                problems.append(f"routes.{tier}: routes to no team")
            for team_name in teams:
                if team_name not in self.teams:
                    problems.append(
                        f"routes.{tier}: unknown team {team_name!r} (teams: {sorted(self.teams)})"
                    )
        missing = [t for t in TIERS if t not in self.routes]
        if missing:
            problems.append(f"routes: every tier needs teams; missing tier(s) {missing}")
        for tier, timeout in sorted(self.ack_timeout.items()):
            if tier not in TIERS:
                problems.append(f"ack_timeout: tier {tier} does not exist (tiers are 1, 2, 3)")
            if timeout <= timedelta(0):
                problems.append(f"ack_timeout.{tier}: must be positive")
        missing = [t for t in TIERS if t not in self.ack_timeout]
        if missing:
            problems.append(f"ack_timeout: missing tier(s) {missing}")
        if self.tick_interval <= timedelta(0):
            problems.append("tick_interval: must be positive")
        claim = self.delivery.claim_timeout.total_seconds()
        for name, channel in self.channels.items():
            send_timeout: float | None = getattr(channel, "timeout", None)
            if send_timeout is not None and claim <= send_timeout:
                problems.append(
                    f"delivery.claim_timeout ({claim:g}s) must exceed channels.{name}.timeout "
                    f"({send_timeout:g}s), or a slow send would be sent twice"
                )
        for path_name in ("incident_path", "ack_path"):
            try:
                getattr(self, path_name).format(id=1)
            except (KeyError, IndexError, ValueError) as exc:
                problems.append(f"{path_name}: only the {{id}} placeholder is allowed ({exc})")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def teams_for(self, tier: int) -> list[str]:
        return list(self.routes.get(tier, ()))
