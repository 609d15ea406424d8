"""The ``alerts`` config section: channels, people, teams and rotas, the routing tree,
escalation policies, SLA clocks, quiet hours, inhibition and delivery.

The defaults need no configuration at all: every team gets its own console channel, every
tier is routed to the teams of the response plan, and every tier has an escalation policy
that needs no people (it re-notifies the team channels). ``crisiswatch run`` alerts to the
log. Every reference (a team's channel, a rota's person, a policy's team) is checked, and
every problem is reported with its path (``teams.pr.rota.people: unknown person 'bob'``).

Escalation waits are shorter than the response plan's deadlines on purpose, so that the
escalation arrives while the deadline can still be met. SLA clocks (``sla``) are the plan's
deadlines themselves: tier 1 private reply within 2 h, tier 2 statement within 1 h, tier 3
acknowledged (emergency group convened) within 10 min.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from alerts.channels import (
    CHANNEL_TYPES,
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
    "EscalationPolicy",
    "EscalationStep",
    "InhibitConfig",
    "Matchers",
    "PersonConfig",
    "PlaybookTask",
    "QuietHours",
    "RotaConfig",
    "RotaOverride",
    "RouteConfig",
    "SlaConfig",
    "SlackChannelConfig",
    "StepTargets",
    "TeamConfig",
    "WebhookChannelConfig",
]

# pydantic repeats the raw input in its error messages; these sections hold secrets.
_SECRET_SAFE = ConfigDict(extra="forbid", hide_input_in_errors=True)

TIERS = (1, 2, 3)
MAX_NAME = 255
"""The longest channel, team or person name: they are stored by name in columns of 255
characters (``alert_deliveries.channel``, ``ack_tokens.channel``, ``incident_tasks.team``,
``ack_tokens.recipient``, ``incident_roles.person``); a longer one would make PostgreSQL
refuse the rows that name it (and the signal that queues them be retried forever)."""
DEFAULT_TEAMS = ("customer_service", "pr", "marketing", "legal", "executives")
GROUP_KEYS = ("watch", "story", "tier", "source")
SELF_WATCH = "crisiswatch"
"""The watch of incidents about crisiswatch itself (``alerts.selfalert``)."""


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{what} needs a timezone (e.g. 2026-01-05T09:00:00+08:00)")
    return value


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {value!r}") from exc
    return value


# -- people, teams, rotas -------------------------------------------------------------


class PersonConfig(Section):
    """A person: contact points, and the channels that reach them directly, in order
    (the first is used, the next ones when it keeps failing)."""

    name: str | None = Field(None, description="display name (default: the key)")
    email: str | None = None
    phone: str | None = Field(None, description="mobile number (DingTalk/WeCom @, SMS)")
    chat_ids: dict[str, str] = Field(
        default_factory=dict, description="channel type -> the person's user id there"
    )
    channels: list[str] = Field(
        default_factory=list,
        description="channels that reach this person, in order; empty = the team's "
        "channels, with the person @-mentioned",
    )


class RotaOverride(Section):
    """Someone else is on call from ``start`` to ``end`` (a holiday, a swap)."""

    start: datetime
    end: datetime
    person: str
    reason: str = ""

    @model_validator(mode="after")
    def _window(self) -> RotaOverride:
        _aware(self.start, "start")
        _aware(self.end, "end")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


ROTATION_PERIODS = {"daily": timedelta(days=1), "weekly": timedelta(weeks=1)}


class RotaConfig(Section):
    """An on-call rotation: ``people`` take turns, one ``rotation`` period each, the
    first from ``start`` (whose time of day is the handoff time).

    Without ``timezone`` the turns are exact 24 h / 7 d periods from ``start``, so the
    handoff keeps ``start``'s UTC offset all year. With an IANA ``timezone`` the handoff is
    at ``start``'s local time of day there on each turn's date, across DST changes; a
    handoff time the clocks skip is read with the offset before the jump (02:30 on a
    02:00->03:00 night is 03:30 new time) and one they repeat is its first occurrence
    (RFC 5545's rule; ``fold=0``)."""

    rotation: Literal["daily", "weekly"] = "weekly"
    start: datetime = Field(description="first handoff, with a timezone")
    people: list[str] = Field(min_length=1)
    overrides: list[RotaOverride] = Field(default_factory=list)
    timezone: str | None = Field(
        None,
        description="IANA zone (e.g. America/New_York) whose wall clock the handoff time "
        "follows across DST; none = start's fixed UTC offset",
    )

    @field_validator("start")
    @classmethod
    def _start(cls, value: datetime, info: ValidationInfo) -> datetime:
        _aware(value, "start")
        # The handoffs are computed from start, one period at a time, in UTC and in the
        # rota's zone (a day either way): near the ends of the calendar they overflow.
        period = ROTATION_PERIODS.get(info.data.get("rotation", "weekly"), timedelta(weeks=1))
        earliest = datetime.min.replace(tzinfo=UTC) + timedelta(days=2)
        latest = datetime.max.replace(tzinfo=UTC) - period - timedelta(days=2)
        if not earliest <= value <= latest:
            raise ValueError(
                f"rota start {value.isoformat()} is too near the end of the calendar: its "
                f"handoffs, one {period.days}-day period apart, would fall outside the years "
                f"1-9999; give the first handoff's real date and time, between "
                f"{earliest.date().isoformat()} and {latest.date().isoformat()} "
                "(e.g. 2026-01-05T09:00:00+08:00)"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return None if value is None else _zone(value)

    @model_validator(mode="after")
    def _start_in_the_zone(self) -> RotaConfig:
        """With a ``timezone``, ``start`` must be written in it (its offset the zone's on
        that date): ``09:00+08:00`` with America/New_York would hand off at 20:00 there."""
        if self.timezone is not None:
            local = self.start.astimezone(ZoneInfo(self.timezone))
            if local.utcoffset() != self.start.utcoffset():
                raise ValueError(
                    f"rota start {self.start.isoformat()} is not in {self.timezone}, whose "
                    f"offset that day is {local.isoformat()[-6:]}: write start as its local "
                    f"time there ({local.isoformat()}, or the handoff time you mean)"
                )
        return self


class TeamConfig(Section):
    channels: list[str] = Field(min_length=1, description="channel names alerts go to")
    fallback_channels: list[str] = Field(
        default_factory=list,
        description="used in order when a team channel keeps failing",
    )
    members: list[str] = Field(default_factory=list, description="people (keys of people)")
    rota: RotaConfig | None = Field(None, description="who is on call; none = nobody")


# -- routing tree ---------------------------------------------------------------------


MatchValue = Annotated[str, Field(min_length=1, max_length=200)]
"""A value a matcher compares (the length constraint also refuses a lone surrogate, which
could be neither stored as given nor written in an answer)."""


class Matchers(Section):
    """All given matchers must match; a list matches any of its values."""

    tier: list[int] | None = None
    watch: list[MatchValue] | None = None
    source: list[MatchValue] | None = Field(
        None, description="platform of any evidence mention (bluesky, mastodon, rss, ...)"
    )
    language: list[MatchValue] | None = None
    labels: dict[MatchValue, MatchValue] = Field(default_factory=dict)

    @field_validator("tier")
    @classmethod
    def _tiers(cls, value: list[int] | None) -> list[int] | None:
        for tier in value or ():
            if tier not in TIERS:
                raise ValueError(f"tier {tier} does not exist (tiers are 1, 2, 3)")
        return value


class RouteConfig(Section):
    """A node of the routing tree. Unset fields inherit from the parent."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    match: Matchers = Field(default_factory=Matchers)
    teams: list[str] | None = Field(None, description="who gets the alert")
    continue_: bool = Field(
        False, alias="continue", description="after matching, try the next siblings too"
    )
    group_by: list[Literal["watch", "story", "tier", "source"]] | None = None
    group_wait: timedelta | None = None
    group_interval: timedelta | None = None
    repeat_interval: timedelta | None = None
    routes: list[RouteConfig] = Field(default_factory=list)


def _default_routes() -> RouteConfig:
    return RouteConfig.model_validate(
        {
            "teams": ["customer_service"],
            "group_by": ["story"],
            "group_wait": timedelta(0),
            "group_interval": timedelta(minutes=5),
            "repeat_interval": timedelta(hours=4),
            "routes": [
                {"match": {"tier": [1]}, "teams": ["customer_service"]},
                {"match": {"tier": [2]}, "teams": ["pr", "marketing"]},
                {"match": {"tier": [3]}, "teams": ["pr", "legal", "executives"]},
            ],
        }
    )


class InhibitConfig(Section):
    """An open incident of ``source_tier`` mutes lower-tier alerts for the same story or
    watch (``equal``: any of them)."""

    enabled: bool = True
    source_tier: int = Field(3, ge=2, le=3)
    equal: list[Literal["story", "watch"]] = Field(
        default_factory=lambda: ["story", "watch"],  # type: ignore[arg-type]
        min_length=1,
    )


class QuietHours(Section):
    """Alerts of ``tiers`` raised between ``start`` and ``end`` (local time) wait and go
    out as one digest per channel at ``end``. Tier 3 is never held."""

    start: time = time(22, 0)
    end: time = time(8, 0)
    timezone: str = "UTC"
    tiers: list[int] = Field(default_factory=lambda: [1])

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        return _zone(value)

    @model_validator(mode="after")
    def _some_hours(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError(
                f"quiet_hours start and end are both {self.start:%H:%M}: the quiet time would "
                "be empty or last all day; give the hours alerts of these tiers wait (e.g. "
                "start 22:00, end 08:00)"
            )
        return self

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, value: list[int]) -> list[int]:
        if 3 in value:
            raise ValueError("tier 3 is never held: remove it from quiet_hours.tiers")
        for tier in value:
            if tier not in TIERS:
                raise ValueError(f"tier {tier} does not exist")
        return value


# -- escalation -----------------------------------------------------------------------


class StepTargets(Section):
    teams: list[str] = Field(default_factory=list, description="these teams' channels")
    people: list[str] = Field(default_factory=list, description="these people directly")
    on_call_of: list[str] = Field(
        default_factory=list, description="the on-call person of these teams, directly"
    )


StepNotify = Literal["route", "on_call"] | StepTargets


class EscalationStep(Section):
    after: timedelta = Field(description="wait since the previous step (or the alert)")
    notify: StepNotify = Field(
        description='"route": the routed teams\' channels again; "on_call": each routed '
        "team's on-call person directly; or explicit teams/people/on_call_of"
    )

    @field_validator("after")
    @classmethod
    def _after(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("after must be positive")
        return value


class EscalationPolicy(Section):
    steps: list[EscalationStep] = Field(min_length=1)
    repeat: int = Field(1, ge=1, le=20, description="how many times the steps run")


def _default_policies() -> dict[str, EscalationPolicy]:
    def policy(wait: timedelta, repeat: int) -> EscalationPolicy:
        return EscalationPolicy(
            steps=[
                EscalationStep(after=wait, notify="on_call"),
                EscalationStep(after=wait, notify="route"),
            ],
            repeat=repeat,
        )

    return {
        "tier-1": policy(timedelta(minutes=30), 2),
        "tier-2": policy(timedelta(minutes=10), 2),
        "tier-3": policy(timedelta(minutes=5), 3),
    }


def _default_escalation() -> dict[int, str | None]:
    return {1: "tier-1", 2: "tier-2", 3: "tier-3"}


class SlaConfig(Section):
    target: timedelta
    met_by: Literal["acknowledged", "responded", "resolved"] = Field(
        description="what stops the clock: an ack, a recorded response (reply, "
        "statement), or resolving the incident"
    )
    warn_at: list[float] = Field(default_factory=lambda: [0.5, 0.8])
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> SlaConfig:
        if self.target <= timedelta(0):
            raise ValueError("target must be positive")
        if any(not 0 < w < 1 for w in self.warn_at) or self.warn_at != sorted(self.warn_at):
            raise ValueError("warn_at: ascending fractions between 0 and 1")
        return self


def _default_sla() -> dict[int, SlaConfig]:
    return {
        1: SlaConfig(target=timedelta(hours=2), met_by="responded", description="private reply"),
        2: SlaConfig(target=timedelta(hours=1), met_by="responded", description="statement"),
        3: SlaConfig(
            target=timedelta(minutes=10),
            met_by="acknowledged",
            description="emergency group convened",
        ),
    }


# -- playbooks ------------------------------------------------------------------------

IncidentRoleName = Literal[
    "incident_lead", "pr_owner", "legal_reviewer", "customer_service_owner", "executive_sponsor"
]


class PlaybookTask(Section):
    """A task created on an incident when it reaches the playbook's tier or a higher one
    (playbooks are cumulative: ``AlertsConfig.playbooks``)."""

    key: str = Field(pattern=r"^[a-z0-9_]{1,64}$", description="unique per incident")
    title: str = Field(min_length=1, max_length=300)
    team: str = Field(
        description="the team that owns it (reminders go to its channels; a team that is "
        "not configured, in the default playbooks: the incident's routed teams)"
    )
    owner_role: IncidentRoleName | None = Field(
        None, description="the incident role that owns it (shown in reminders and reports)"
    )
    due: timedelta | None = Field(
        None,
        description="time allowed after the alert; none: the tier's SLA target (the plan's "
        "deadline when the tier has no SLA)",
    )
    remind_before: list[timedelta] = Field(
        default_factory=lambda: [timedelta(minutes=15)],
        description="remind the team this long before the due time (and at it)",
    )
    completed_by_response: Literal["reply", "statement"] | None = Field(
        None, description="recording a response of this kind completes the task"
    )


def _default_playbooks() -> dict[int, list[PlaybookTask]]:
    def task(key: str, title: str, team: str, role: str, **more: Any) -> PlaybookTask:
        return PlaybookTask.model_validate(
            {"key": key, "title": title, "team": team, "owner_role": role, **more}
        )

    return {
        1: [
            task(
                "private_reply",
                "Reply privately to the author with the standard script",
                "customer_service",
                "customer_service_owner",
                completed_by_response="reply",
            )
        ],
        2: [
            task(
                "publish_statement",
                "Publish a legally reviewed statement from the official account",
                "pr",
                "pr_owner",
                completed_by_response="statement",
            ),
            task(
                "internal_investigation",
                "Open an internal investigation",
                "pr",
                "incident_lead",
            ),
        ],
        3: [
            task(
                "convene_emergency_group",
                "Convene the executive-led emergency group",
                "executives",
                "executive_sponsor",
                remind_before=[timedelta(minutes=5)],
            ),
            task(
                "legal_review_statements",
                "Legal review of every statement before it goes out",
                "legal",
                "legal_reviewer",
                remind_before=[timedelta(minutes=5)],
            ),
        ],
    }


# -- delivery -------------------------------------------------------------------------


class DeliveryConfig(Section):
    """How long a delivery keeps trying its channel.

    A *retryable* failure (timeout, connection refused, 5xx, 429, a platform's "throttled"
    code) is retried with capped exponential backoff (``initial_backoff`` doubling up to
    ``max_backoff``, +/- ``jitter``, never sooner than the channel's ``Retry-After``) until
    one of:

    * it is delivered;
    * the incident no longer needs it: an alert, upgrade or escalation of an incident that
      has been acknowledged (or is mitigating, resolved, closed) is cancelled; a task
      reminder or an ack follow-up once it is resolved;
    * ``give_up_after`` has passed since its first failure (the age limit; default 6 h):
      it fails for good and, with no fallback channel left, opens the self-alert;
    * ``max_attempts``, if set (default none), attempts were used.

    ``keep_trying_tier`` (default 3): a delivery of an incident at this tier or above that
    is still open (nobody acknowledged it) is never given up, by age or by count: a crisis
    alert keeps trying, every ``max_backoff``, until it is delivered or acknowledged
    (``crisiswatch_alert_deliveries_retrying`` and the ``CrisiswatchDeliveryStillRetrying`` rule
    show it meanwhile). A permanent error (4xx other than 408/425/429, a bad webhook)
    still fails at once. ``max_attempts`` used to be the only limit (default 8: about 4
    minutes of backoff, shorter than many chat outages); configs that set it still load and
    it is still honoured, below ``keep_trying_tier``.
    """

    max_attempts: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="optional: give up after this many attempts on a channel (below "
        "keep_trying_tier); by default only give_up_after limits retries",
    )
    give_up_after: timedelta | None = Field(
        timedelta(hours=6),
        description="a delivery still failing this long after its first failure fails for "
        "good (self-alert); null: never (until delivered or the incident no longer needs it)",
    )
    keep_trying_tier: int | None = Field(
        3,
        ge=1,
        le=3,
        description="deliveries of an open (unacknowledged) incident at this tier or above "
        "are never given up on a retryable error; null: the limits apply to every tier",
    )
    fallback_after: int = Field(
        3, ge=1, le=50, description="failed attempts on one channel before the next one"
    )
    fallback_if_wait_over: timedelta = Field(
        timedelta(seconds=60),
        description="a channel that asks to wait longer (Retry-After) is left for the next "
        "one at once",
    )
    initial_backoff: timedelta = timedelta(seconds=2)
    max_backoff: timedelta = timedelta(minutes=1)
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
        if self.give_up_after is not None and self.give_up_after <= timedelta(0):
            raise ValueError("give_up_after must be positive (or null: never)")
        return self

    def backoff(self, attempts: int) -> timedelta:
        """Delay before the next try after ``attempts`` failed ones (no jitter)."""
        factor: int = 2 ** min(max(attempts - 1, 0), 30)
        return min(self.max_backoff, self.initial_backoff * factor)


class SelfAlertConfig(Section):
    """A channel that fails for good opens an incident about crisiswatch itself (watch
    ``crisiswatch``), routed through the tree like any other."""

    enabled: bool = True
    tier: int = Field(2, ge=1, le=3)


def _default_channels() -> dict[str, AnyChannelConfig]:
    return {f"{team}-console": ConsoleChannelConfig() for team in DEFAULT_TEAMS}


def _default_teams() -> dict[str, TeamConfig]:
    return {team: TeamConfig(channels=[f"{team}-console"]) for team in DEFAULT_TEAMS}


def _route_problems(route: RouteConfig, path: str, config: AlertsConfig) -> list[str]:
    problems = [
        f"{path}.teams: unknown team {team!r} (teams: {sorted(config.teams)})"
        for team in route.teams or ()
        if team not in config.teams
    ]
    for field in ("group_wait", "group_interval", "repeat_interval"):
        value = getattr(route, field)
        if value is not None and value < timedelta(0):
            problems.append(f"{path}.{field}: must not be negative")
    for i, child in enumerate(route.routes):
        problems.extend(_route_problems(child, f"{path}.routes[{i}]", config))
    return problems


def public_base_url(value: str, name: str) -> str:
    """``value`` when it is an http(s) URL with a host (the base of links in alerts: without
    a scheme they were plain text to Slack and mail clients); else a ValueError naming
    ``name``."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{name} must be an http(s) URL: https://crisiswatch.example.com")
    return value


class AlertsConfig(Section):
    model_config = _SECRET_SAFE

    channels: dict[str, ChannelConfig] = Field(default_factory=_default_channels)
    people: dict[str, PersonConfig] = Field(default_factory=dict)
    teams: dict[str, TeamConfig] = Field(default_factory=_default_teams)
    routes: RouteConfig = Field(
        default_factory=_default_routes, description="the routing tree (its root)"
    )
    inhibit: InhibitConfig = Field(default_factory=InhibitConfig)
    quiet_hours: QuietHours | None = None
    escalation_policies: dict[str, EscalationPolicy] = Field(default_factory=_default_policies)
    escalation: dict[int, str | None] = Field(
        default_factory=_default_escalation, description="tier -> policy name (null: none)"
    )
    sla: dict[int, SlaConfig] = Field(default_factory=_default_sla)
    playbooks: dict[int, list[PlaybookTask]] = Field(
        default_factory=_default_playbooks,
        description="tier -> its tasks; cumulative: an incident of tier T has the tasks of "
        "every tier up to T, however it came there (opened at T, or raised past a tier), "
        "each due by its own tier's time from the alert and recording that tier; a key "
        "listed at several tiers is created once, by the highest tier's rules up to T "
        "unless a lower tier's make it due sooner (a deadline is never loosened)",
    )
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    self_alert: SelfAlertConfig = Field(default_factory=SelfAlertConfig)
    tick_interval: timedelta = Field(
        timedelta(seconds=5), description="how often the outbox and escalations are checked"
    )
    deliver_on_signal: bool = Field(
        True, description="send the new alerts right after a signal instead of at the next tick"
    )
    public_url: str | None = Field(
        None, description="base URL of the crisiswatch API, for links in alerts"
    )
    incident_path: str = Field(
        "/console/#incident={id}",
        description="path (under public_url) of the 'Open incident' link in alerts: the "
        "incident console, which asks for the API key (the JSON API's own "
        "/incidents/{id} answers a browser 401); machines get the API URL as api_url",
    )
    ack_path: str = Field("/incidents/{id}/ack", description="API path shown as the ack hint")
    evidence_in_alert: int = Field(3, ge=0, le=10, description="evidence snippets per alert")
    watch_labels: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="watch id -> labels the routes can match on"
    )

    @field_validator("public_url")
    @classmethod
    def _http_public_url(cls, value: str | None) -> str | None:
        """The base of the links in alerts: without a scheme (``cw.acme.example``) they were
        plain text to Slack and mail clients (as ``api.public_url``)."""
        return None if value is None else public_base_url(value, "alerts.public_url")

    @model_validator(mode="before")
    @classmethod
    def _legacy_routes(cls, data: Any) -> Any:
        """``routes: {1: [teams], 2: [...], 3: [...]}`` (the first config format) is a
        tree with one child per tier."""
        if isinstance(data, dict):
            routes = data.get("routes")
            if isinstance(routes, dict) and routes and all(_is_tier_key(k) for k in routes):
                data = dict(data)
                data["routes"] = {
                    "teams": [],
                    "routes": [
                        {"match": {"tier": [int(k)]}, "teams": v} for k, v in routes.items()
                    ],
                }
        return data

    @model_validator(mode="after")
    def _references(self) -> AlertsConfig:
        problems: list[str] = []
        problems.extend(self._name_problems())
        problems.extend(self._people_problems())
        for team_name, team in self.teams.items():
            problems.extend(self._team_problems(team_name, team))
        problems.extend(_route_problems(self.routes, "routes", self))
        for tier in TIERS:
            problems.extend(_dead_ends(self.routes, (), "routes", tier, backed=False))
        problems.extend(self._policy_problems())
        for tier in sorted(self.sla):
            if tier not in TIERS:
                problems.append(f"sla: tier {tier} does not exist (tiers are 1, 2, 3)")
        problems.extend(self._playbook_problems())
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

    def teams_of(self, person: str) -> list[str]:
        """The teams whose ``members`` or rota ``people`` name ``person``: where a person
        without channels is @-mentioned when a step names them."""
        return [
            name
            for name, team in self.teams.items()
            if person in team.members or (team.rota is not None and person in team.rota.people)
        ]

    def _name_problems(self) -> list[str]:
        """Names longer than the database columns that store them (``MAX_NAME``)."""
        named: dict[str, Mapping[str, Any]] = {
            "channels": self.channels,
            "teams": self.teams,
            "people": self.people,
        }
        return [
            f"{section}: the name {name[:60]!r}{'…' if len(name) > 60 else ''} is "
            f"{len(name)} characters long; at most {MAX_NAME} are allowed (it is stored "
            "in the database by name): shorten it"
            for section, entries in named.items()
            for name in entries
            if len(name) > MAX_NAME
        ]

    def _channel_problems(self, names: list[str], path: str) -> list[str]:
        return [
            f"{path}: unknown channel {name!r} (channels: {sorted(self.channels)})"
            for name in names
            if name not in self.channels
        ]

    def _person_problems(self, names: list[str], path: str) -> list[str]:
        return [
            f"{path}: unknown person {name!r} (people: {sorted(self.people)})"
            for name in names
            if name not in self.people
        ]

    def _team_ref_problems(self, names: list[str], path: str) -> list[str]:
        return [
            f"{path}: unknown team {name!r} (teams: {sorted(self.teams)})"
            for name in names
            if name not in self.teams
        ]

    def _people_problems(self) -> list[str]:
        problems: list[str] = []
        for name, person in self.people.items():
            problems.extend(self._channel_problems(person.channels, f"people.{name}.channels"))
            problems.extend(
                f"people.{name}.chat_ids: {kind!r} is not a channel type, so no channel "
                f"would @-mention {name} by it (channel types: {', '.join(CHANNEL_TYPES)})"
                for kind in person.chat_ids
                if kind not in CHANNEL_TYPES
            )
        return problems

    def _team_problems(self, name: str, team: TeamConfig) -> list[str]:
        path = f"teams.{name}"
        problems = self._channel_problems(team.channels, f"{path}.channels")
        problems += self._channel_problems(team.fallback_channels, f"{path}.fallback_channels")
        problems += self._person_problems(team.members, f"{path}.members")
        if team.rota is not None:
            problems += self._person_problems(team.rota.people, f"{path}.rota.people")
            for i, override in enumerate(team.rota.overrides):
                problems += self._person_problems(
                    [override.person], f"{path}.rota.overrides[{i}].person"
                )
        return problems

    def _policy_problems(self) -> list[str]:
        problems: list[str] = []
        for name, policy in self.escalation_policies.items():
            for i, step in enumerate(policy.steps):
                if isinstance(step.notify, StepTargets):
                    path = f"escalation_policies.{name}.steps[{i}].notify"
                    problems += self._team_ref_problems(step.notify.teams, f"{path}.teams")
                    problems += self._team_ref_problems(
                        step.notify.on_call_of, f"{path}.on_call_of"
                    )
                    problems += self._person_problems(step.notify.people, f"{path}.people")
                    problems += [
                        f"{path}.people: {person!r} has no channels and is in no team's "
                        "members or rota: nothing would reach them (give them channels)"
                        for person in step.notify.people
                        if person in self.people
                        and not self.people[person].channels
                        and not self.teams_of(person)
                    ]
        for tier, policy_name in sorted(self.escalation.items()):
            if tier not in TIERS:
                problems.append(f"escalation: tier {tier} does not exist (tiers are 1, 2, 3)")
            elif policy_name is not None and policy_name not in self.escalation_policies:
                problems.append(
                    f"escalation.{tier}: unknown policy {policy_name!r} "
                    f"(escalation_policies: {sorted(self.escalation_policies)})"
                )
        return problems

    def _playbook_problems(self) -> list[str]:
        problems: list[str] = []
        for tier, tasks in sorted(self.playbooks.items()):
            if tier not in TIERS:
                problems.append(f"playbooks: tier {tier} does not exist (tiers are 1, 2, 3)")
                continue
            keys = [t.key for t in tasks]
            for key in sorted({k for k in keys if keys.count(k) > 1}):
                problems.append(f"playbooks.{tier}: task key {key!r} is used twice")
            for i, task in enumerate(tasks):
                path = f"playbooks.{tier}[{i}]"
                if "playbooks" in self.model_fields_set:  # the defaults' teams may be absent
                    problems += self._team_ref_problems([task.team], f"{path}.team")
                if task.due is not None and task.due <= timedelta(0):
                    problems.append(f"{path}.due: must be positive")
                if any(r < timedelta(0) for r in task.remind_before):
                    problems.append(f"{path}.remind_before: must not be negative")
        return problems

    def task_due(self, tier: int, task: PlaybookTask) -> timedelta:
        """Time a playbook task has: its own ``due``, its tier's SLA target, or (no SLA
        configured for the tier) the response plan's deadline."""
        if task.due is not None:
            return task.due
        sla = self.sla.get(tier)
        return sla.target if sla is not None else _default_sla()[tier].target

    def policy_for(self, tier: int) -> EscalationPolicy | None:
        name = self.escalation.get(tier)
        return self.escalation_policies.get(name) if name else None

    # A map given in the config (``escalation``, ``sla``) replaces the default one whole:
    # ``escalation: {3: my-policy}`` leaves tiers 1 and 2 with none. Merging would change
    # what existing configs mean, so the gaps are said instead (check-config, start-up).
    # Every tier is routed (``_references``), so every tier's gap counts.

    def escalation_warnings(self) -> list[str]:
        """One line per tier that has no escalation policy, naming the setting to add."""
        lines = []
        policies = ", ".join(sorted(self.escalation_policies)) or "none defined"
        for tier in TIERS:
            if self.escalation.get(tier) is not None:
                continue
            why = (
                f"alerts.escalation.{tier} is null"
                if tier in self.escalation
                else "alerts.escalation leaves it out (a map given replaces the default one "
                "whole, it is not merged)"
            )
            missed = (
                f", and a missed alerts.sla.{tier} deadline escalates to no one"
                if tier in self.sla
                else ""
            )
            lines.append(
                f"tier {tier} has no escalation policy: {why}, so its unacknowledged alerts "
                f"are never escalated{missed}; set alerts.escalation.{tier}: <policy> "
                f"(escalation_policies: {policies})"
            )
        return lines

    def membership_warnings(self) -> list[str]:
        """One line per person a team's rota or an override puts on call who is not in
        its ``members`` (they are paged all the same). An empty ``members`` is not
        tracked: no line."""
        lines = []
        for name, team in self.teams.items():
            if not team.members or team.rota is None:
                continue
            named = [("rota.people", person) for person in team.rota.people]
            named += [
                (f"rota.overrides[{i}].person", override.person)
                for i, override in enumerate(team.rota.overrides)
            ]
            seen: set[str] = set()
            for where, person in named:
                if person in team.members or person in seen:
                    continue
                seen.add(person)
                lines.append(
                    f"team {name}: {person!r} is on call by alerts.teams.{name}.{where} but "
                    f"not in its members ({', '.join(team.members)}), and is paged for it "
                    f"all the same; add them to alerts.teams.{name}.members (or correct the "
                    "rota)"
                )
        return lines

    def route_warnings(self, watches: Collection[str]) -> list[str]:
        """One line per route matcher that no alert can ever satisfy, and per
        ``watch_labels`` entry of a watch that does not exist: a typo there does not fail,
        it silently sends the alerts the route was written for elsewhere. ``watches``: the
        configured watch ids (empty: not known here, and not checked)."""
        known = ", ".join(sorted(watches))
        pairs = {(k, v) for labels in self.watch_labels.values() for k, v in labels.items()}
        pairs |= {("drill", "true"), ("drill", "false")}  # every incident carries it
        lines: list[str] = []
        for path, node in _route_nodes(self.routes, "alerts.routes"):
            match = node.match
            if watches:
                lines.extend(
                    f"{path}.match.watch: no watch {watch!r} is configured (watches: "
                    f"{known}), so this route never matches it"
                    for watch in match.watch or ()
                    if watch not in watches and watch != SELF_WATCH
                )
            missing = [f"{k}={v}" for k, v in match.labels.items() if (k, v) not in pairs]
            if missing:
                lines.append(
                    f"{path}.match.labels: no watch has {', '.join(missing)} in "
                    "alerts.watch_labels, so this route never matches"
                )
            languages = [lang for lang in match.language or () if ("language", lang) in pairs]
            if match.language is not None and not languages:
                lines.append(
                    f"{path}.match.language: no watch has "
                    f"{' or '.join(f'language={lang}' for lang in match.language)} in "
                    "alerts.watch_labels (the language matcher reads that label of the watch), "
                    "so this route never matches"
                )
        if watches:
            lines.extend(
                f"alerts.watch_labels.{watch}: no watch {watch!r} is configured (watches: {known})"
                for watch in self.watch_labels
                if watch not in watches
            )
        return lines

    def sla_warnings(self) -> list[str]:
        """One line per tier that has no SLA clock, naming the setting to add."""
        return [
            f"tier {tier} has no SLA clock: alerts.sla leaves it out (a map given replaces "
            "the default one whole, it is not merged), so the response plan's deadline "
            f"({plan.description} in {plan.target}) is not watched; set alerts.sla.{tier}"
            for tier, plan in _default_sla().items()
            if tier not in self.sla
        ]


def _is_tier_key(key: object) -> bool:
    return isinstance(key, int) or (isinstance(key, str) and key.isascii() and key.isdigit())


def _route_nodes(node: RouteConfig, path: str) -> Iterator[tuple[str, RouteConfig]]:
    """Every node of the routing tree below ``node``, with its path."""
    for i, child in enumerate(node.routes):
        child_path = f"{path}.routes[{i}]"
        yield child_path, child
        yield from _route_nodes(child, child_path)


def _catches_every(match: Matchers) -> bool:
    """Whether a route's matchers take every alert of the tiers they allow."""
    return (
        match.watch is None
        and match.source is None
        and match.language is None
        and (not match.labels)
    )


def _dead_ends(
    node: RouteConfig, inherited: Sequence[str], path: str, tier: int, *, backed: bool
) -> list[str]:
    """Where an alert of ``tier`` can end with no teams (``routing.match_routes`` drops
    such a result, so the alert would reach no one): a node whose teams are empty (unset
    all the way up, or set to ``[]``) and which is the result for the alerts its children
    do not all take (Alertmanager's rule: a node none of whose children match is the
    result). ``backed``: an earlier route that takes every alert of the tier and has
    ``continue`` already gave them teams, so what follows only adds some."""
    teams = node.teams if node.teams is not None else inherited
    problems: list[str] = []
    caught, partial = False, []
    for i, child in enumerate(node.routes):
        if child.match.tier is not None and tier not in child.match.tier:
            continue
        child_path = f"{path}.routes[{i}]"
        below = _dead_ends(child, teams, child_path, tier, backed=backed)
        problems.extend(below)
        if not _catches_every(child.match):
            partial.append(child_path)
            continue
        caught = True
        if not child.continue_:
            break
        backed = backed or not below
    if caught or teams or backed:
        return problems
    give = "the root" if path == "routes" else path
    if partial:
        problem = (
            f"{path}: a tier {tier} alert that matches none of {', '.join(partial)} stops at "
            f"{path}, which has no teams: it would alert no one (give {give} teams, or add a "
            f"route that takes every tier-{tier} alert)"
        )
    else:
        problem = (
            f"{path}: tier {tier} matches no route with teams (give {give} teams, or a route "
            "for it)"
        )
    return [problem, *problems]
