"""AlertsConfig: working defaults, loud and precise errors, routing and backoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from alerts.config import AlertsConfig, ConsoleChannelConfig, DeliveryConfig
from alerts.routing import AlertAttrs, routed_teams
from alerts.targets import step_targets, team_targets

URL = "https://hooks.example.com/services/T1/B2/SECRETSECRET"


def base(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "channels": {
            "cs": {"type": "console"},
            "pr-room": {"type": "slack", "webhook_url": URL},
            "oncall": {"type": "webhook", "url": URL, "secret": "0123456789abcdef"},
            "counsel": {"type": "console", "level": "ERROR"},
        },
        "people": {
            "olga": {"phone": "+8613800000000", "channels": ["oncall", "counsel"]},
            "li": {"chat_ids": {"dingtalk": "li01"}},
        },
        "teams": {
            "customer_service": {"channels": ["cs"]},
            "pr": {
                "channels": ["pr-room"],
                "members": ["olga", "li"],
                "rota": {"start": "2026-01-05T09:00:00+08:00", "people": ["olga", "li"]},
            },
            "legal": {"channels": ["pr-room", "counsel"], "fallback_channels": ["cs"]},
        },
        "routes": {1: ["customer_service"], 2: ["pr"], 3: ["pr", "legal"]},
    }
    data.update(overrides)
    return data


def test_defaults_give_every_team_a_console_channel() -> None:
    config = AlertsConfig()
    assert set(config.teams) == {"customer_service", "pr", "marketing", "legal", "executives"}
    for name, team in config.teams.items():
        assert team.channels == [f"{name}-console"]
        assert isinstance(config.channels[team.channels[0]], ConsoleChannelConfig)
    teams = {t: routed_teams(config, AlertAttrs(tier=t, watch="w")) for t in (1, 2, 3)}
    assert teams == {
        1: ["customer_service"],
        2: ["pr", "marketing"],
        3: ["pr", "legal", "executives"],
    }
    policy = config.policy_for(3)
    assert policy is not None and policy.steps[0].after == timedelta(minutes=5)
    assert {t: (s.target, s.met_by) for t, s in config.sla.items()} == {
        1: (timedelta(hours=2), "responded"),
        2: (timedelta(hours=1), "responded"),
        3: (timedelta(minutes=10), "acknowledged"),
    }


def test_yaml_style_input_is_accepted() -> None:
    policy = {"steps": [{"after": "PT1H", "notify": "on_call"}, {"after": 600, "notify": "route"}]}
    config = AlertsConfig.model_validate(
        base(escalation_policies={"p": policy}, escalation={"1": "p", "2": "p", "3": None})
    )
    assert config.escalation_policies["p"].steps[1].after == timedelta(minutes=10)
    assert config.policy_for(3) is None
    assert config.channels["pr-room"].type == "slack"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"teams": {"pr": {"channels": ["nope"]}}}, "teams.pr.channels: unknown channel 'nope'"),
        (
            {
                "teams": {
                    "pr": {
                        "channels": ["cs"],
                        "rota": {"start": "2026-01-05T09:00:00Z", "people": ["ghost"]},
                    }
                }
            },
            "teams.pr.rota.people: unknown person 'ghost'",
        ),
        (
            {
                "teams": {
                    "pr": {
                        "channels": ["cs"],
                        "rota": {"start": "2026-01-05T09:00:00", "people": ["olga"]},
                    }
                }
            },
            "start needs a timezone",
        ),
        ({"teams": {"pr": {"channels": ["cs"], "escalation": ["oncall"]}}}, "Extra inputs"),
        (
            {"routes": {1: ["customer_service"], 2: ["pr"], 3: ["pr", "lawyers"]}},
            "routes.routes[2].teams: unknown team 'lawyers'",
        ),
        ({"routes": {3: ["pr"]}}, "routes: tier 1 matches no route with teams"),
        ({"routes": {1: ["pr"], 2: ["pr"], 3: ["pr"], 4: ["pr"]}}, "tier 4 does not exist"),
        (
            {"routes": {"routes": [{"match": {"tier": [3]}, "teams": ["pr"], "colour": 1}]}},
            "routes.routes.0.colour",
        ),
        ({"escalation": {1: "p", 2: "p", 3: "p"}}, "escalation.1: unknown policy 'p'"),
        (
            {"escalation_policies": {"p": {"steps": [{"after": 60, "notify": {"people": ["x"]}}]}}},
            "escalation_policies.p.steps[0].notify.people: unknown person 'x'",
        ),
        ({"escalation_policies": {"p": {"steps": [{"after": 0, "notify": "route"}]}}}, "positive"),
        ({"quiet_hours": {"tiers": [1, 3]}}, "tier 3 is never held"),
        ({"quiet_hours": {"timezone": "Mars/Olympus"}}, "unknown timezone"),
        ({"quiet_hours": {"start": "08:00", "end": "08:00"}}, "both 08:00"),
        ({"sla": {4: {"target": 60, "met_by": "acknowledged"}}}, "sla: tier 4 does not exist"),
        ({"delivery": {"claim_timeout": 5}}, "must exceed channels.pr-room.timeout"),
        ({"ack_path": "/incidents/{incident}/ack"}, "ack_path: only the {id} placeholder"),
    ],
)
def test_bad_references_are_named(change: dict[str, Any], message: str) -> None:
    data = base()
    for key, value in change.items():
        if key == "teams":
            data["teams"] = {**data["teams"], **value}
        else:
            data[key] = value
    with pytest.raises(ValidationError) as info:
        AlertsConfig.model_validate(data)
    assert message in str(info.value)


def test_unknown_channel_type_and_keys_are_errors() -> None:
    with pytest.raises(ValidationError, match="pager"):
        AlertsConfig.model_validate(base(channels={"x": {"type": "pager"}}))
    with pytest.raises(ValidationError, match="Extra inputs"):
        AlertsConfig.model_validate(base(channels={"x": {"type": "console", "colour": "red"}}))


def test_secret_urls_are_not_echoed_in_errors() -> None:
    secret = "ftp://hooks.example.com/T1/very-secret-token"
    with pytest.raises(ValidationError) as info:
        AlertsConfig.model_validate(base(channels={"s": {"type": "slack", "webhook_url": secret}}))
    assert "very-secret-token" not in str(info.value)
    config = AlertsConfig.model_validate(base())
    assert "SECRETSECRET" not in repr(config) and "0123456789abcdef" not in repr(config)


def test_backoff_doubles_up_to_the_cap() -> None:
    delivery = DeliveryConfig(
        initial_backoff=timedelta(seconds=2), max_backoff=timedelta(seconds=30)
    )
    assert [delivery.backoff(n).total_seconds() for n in range(1, 7)] == [2, 4, 8, 16, 30, 30]
    assert delivery.backoff(10_000) == timedelta(seconds=30)


def test_targets_of_teams_and_escalation_steps() -> None:
    config = AlertsConfig.model_validate(base())
    # a channel shared by two teams gets one message naming both
    targets = team_targets(config, ["pr", "legal"])
    assert {ch: t.teams for ch, t in targets.items()} == {
        "pr-room": ["pr", "legal"],
        "counsel": ["legal"],
    }
    assert targets["counsel"].fallbacks == ["cs"]
    monday = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # olga's week (from 09:00 +08:00)
    on_call, described = step_targets(config, "on_call", ["pr", "legal"], monday)
    # olga on her first channel, the next one as fallback; legal has no rota: its channels
    assert {ch: (t.teams, [c.name for c in t.mentions]) for ch, t in on_call.items()} == {
        "oncall": (["pr"], ["olga"]),
        "pr-room": (["legal"], []),
        "counsel": (["legal"], []),
    }
    assert on_call["oncall"].fallbacks == ["counsel"]
    assert on_call["oncall"].mentions[0].phone == "+8613800000000"
    assert described == {"on_call": {"pr": "olga", "legal": None}}
    # next week li is on call; she has no channels: mentioned on the team's channel
    later, _ = step_targets(config, "on_call", ["pr"], monday + timedelta(weeks=1))
    assert [(ch, [c.chat_ids for c in t.mentions]) for ch, t in later.items()] == [
        ("pr-room", [{"dingtalk": "li01"}])
    ]


def test_secrets_stay_out_of_model_level_errors() -> None:
    data = base(routes={3: ["pr"]})  # a model-level error while secrets are in the input
    with pytest.raises(ValidationError) as info:
        AlertsConfig.model_validate(data)
    assert "SECRETSECRET" not in str(info.value) and "0123456789abcdef" not in str(info.value)


def test_the_readme_example_is_a_valid_config() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### Alerts: routing, on-call, escalation, SLAs", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = AlertsConfig.model_validate(yaml.safe_load(block)["alerts"])
    assert config.teams["pr"].rota is not None and config.policy_for(3) is not None
    assert set(config.people) == {"wang_li", "chen_yu", "zhao_min", "liu_yang", "sun_hao"}
