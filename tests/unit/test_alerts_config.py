"""AlertsConfig: working defaults, loud and precise errors, routing and backoff."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from alerts.config import AlertsConfig, ConsoleChannelConfig, DeliveryConfig
from alerts.routing import alert_targets, escalation_targets

URL = "https://hooks.example.com/services/T1/B2/SECRETSECRET"


def base(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "channels": {
            "cs": {"type": "console"},
            "pr-room": {"type": "slack", "webhook_url": URL},
            "oncall": {"type": "webhook", "url": URL, "secret": "0123456789abcdef"},
            "counsel": {"type": "console", "level": "ERROR"},
        },
        "teams": {
            "customer_service": {"channels": ["cs"]},
            "pr": {"channels": ["pr-room"], "escalation": ["oncall", "counsel"]},
            "legal": {"channels": ["pr-room", "counsel"]},
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
    assert config.routes == {
        1: ["customer_service"],
        2: ["pr", "marketing"],
        3: ["pr", "legal", "executives"],
    }
    assert config.ack_timeout == {
        1: timedelta(minutes=30),
        2: timedelta(minutes=10),
        3: timedelta(minutes=10),
    }


def test_yaml_style_input_is_accepted() -> None:
    config = AlertsConfig.model_validate(
        base(ack_timeout={"1": "PT1H", "2": 600, "3": "00:05:00"}, tick_interval=2)
    )
    assert config.ack_timeout[3] == timedelta(minutes=5)
    assert config.channels["pr-room"].type == "slack"
    assert config.tick_interval == timedelta(seconds=2)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"teams": {"pr": {"channels": ["nope"]}}}, "teams.pr.channels: unknown channel 'nope'"),
        (
            {"teams": {"pr": {"channels": ["cs"], "escalation": ["ghost"]}}},
            "teams.pr.escalation: unknown channel 'ghost'",
        ),
        (
            {"routes": {1: ["customer_service"], 2: ["pr"], 3: ["pr", "lawyers"]}},
            "routes.3: unknown team 'lawyers'",
        ),
        ({"routes": {3: ["pr"]}}, "missing tier(s) [1, 2]"),
        ({"routes": {1: ["pr"], 2: ["pr"], 3: ["pr"], 4: ["pr"]}}, "tier 4 does not exist"),
        ({"ack_timeout": {1: 60, 2: 60}}, "ack_timeout: missing tier(s) [3]"),
        ({"ack_timeout": {1: 60, 2: 0, 3: 60}}, "ack_timeout.2: must be positive"),
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


def test_routing_targets() -> None:
    config = AlertsConfig.model_validate(base())
    # a channel shared by two teams gets one message naming both
    assert alert_targets(config, 3) == {"pr-room": ["pr", "legal"], "counsel": ["legal"]}
    assert alert_targets(config, 1) == {"cs": ["customer_service"]}
    # pr escalates along its list (the last contact repeats); legal has no list: own channels
    assert escalation_targets(config, 3, 1) == {
        "oncall": ["pr"],
        "pr-room": ["legal"],
        "counsel": ["legal"],
    }
    assert escalation_targets(config, 3, 2) == {"counsel": ["pr", "legal"], "pr-room": ["legal"]}
    assert escalation_targets(config, 3, 5) == escalation_targets(config, 3, 2)
    with pytest.raises(ValueError, match="start at 1"):
        escalation_targets(config, 3, 0)


def test_secrets_stay_out_of_model_level_errors() -> None:
    data = base(routes={3: ["pr"]})  # a model-level error while secrets are in the input
    with pytest.raises(ValidationError) as info:
        AlertsConfig.model_validate(data)
    assert "SECRETSECRET" not in str(info.value) and "0123456789abcdef" not in str(info.value)
