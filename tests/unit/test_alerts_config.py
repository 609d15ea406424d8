"""AlertsConfig: working defaults, loud and precise errors, routing and backoff."""

from __future__ import annotations

import os
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


# -- configs that load but would never alert (check-config walk, 2026-11-29) ----------


def _tree(**root: Any) -> dict[str, Any]:
    return base(routes=root)


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        (  # the only tier-1 route wants a source: a tier-1 alert from elsewhere stops at
            # the root, which has no teams (it was accepted and alerted no one)
            {
                "teams": [],
                "routes": [
                    {"match": {"tier": [1], "source": ["weibo"]}, "teams": ["customer_service"]},
                    {"match": {"tier": [2, 3]}, "teams": ["pr"]},
                ],
            },
            "routes: a tier 1 alert that matches none of routes.routes[0] stops at routes, "
            "which has no teams",
        ),
        (  # a child that clears its teams and whose own children are all conditional
            {
                "teams": ["customer_service"],
                "routes": [
                    {
                        "match": {"tier": [3]},
                        "teams": [],
                        "routes": [{"match": {"labels": {"region": "cn"}}, "teams": ["legal"]}],
                    }
                ],
            },
            "routes.routes[0]: a tier 3 alert that matches none of routes.routes[0].routes[0] "
            "stops at routes.routes[0], which has no teams",
        ),
        (  # a leaf that clears its teams
            {"teams": ["pr"], "routes": [{"match": {"watch": ["acme"]}, "teams": []}]},
            "routes.routes[0]: tier 1 matches no route with teams",
        ),
    ],
)
def test_a_route_that_would_alert_no_one_is_an_error(routes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        AlertsConfig.model_validate(_tree(**routes))
    assert message in str(info.value)


@pytest.mark.parametrize(
    "routes",
    [
        {  # a catch-all route with continue: the conditional sibling after it only adds
            "teams": [],
            "routes": [
                {"match": {"tier": [1, 2, 3]}, "teams": ["pr"], "continue": True},
                {"match": {"labels": {"region": "cn"}}, "teams": ["legal"]},
            ],
        },
        {  # conditional routes first, then one per tier that catches the rest
            "teams": [],
            "routes": [
                {"match": {"tier": [1], "source": ["weibo"]}, "teams": ["legal"]},
                {"match": {"tier": [1]}, "teams": ["customer_service"]},
                {"match": {"tier": [2, 3]}, "teams": ["pr"]},
            ],
        },
        {"teams": ["pr"], "routes": [{"match": {"tier": [3], "watch": ["a"]}}]},
    ],
)
def test_routes_that_reach_a_team_for_every_alert_load(routes: dict[str, Any]) -> None:
    AlertsConfig.model_validate(_tree(**routes))


def test_chat_ids_must_name_a_channel_type_that_mentions() -> None:
    people = {**base()["people"], "olga": {"chat_ids": {"slak": "U01OLGA"}}}  # a typo
    with pytest.raises(ValidationError) as info:
        AlertsConfig.model_validate(base(people=people))
    assert "people.olga.chat_ids: 'slak' is not a channel type" in str(info.value)
    assert "dingtalk, email, feishu, pagerduty, slack, teams, webhook, wecom" in str(info.value)
    ids = {"slack": "U1", "dingtalk": "d", "wecom": "w", "feishu": "f", "teams": "t"}
    ok = {**base()["people"], "olga": {"chat_ids": ids}}
    AlertsConfig.model_validate(base(people=ok))


@pytest.mark.parametrize(
    ("channel", "message"),
    [
        (
            {"type": "dingtalk", "webhook_url": "https://oapi.dingtalk.com/robot/send"},
            "webhook_url has no access_token",
        ),
        (
            {"type": "wecom", "webhook_url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"},
            "webhook_url has no key",
        ),
        (
            {
                "type": "dingtalk",
                "webhook_url": "https://oapi.dingtalk.com/robot/send?access_token=abc",
                "secret": "not-the-robot-secret",
            },
            "secret must be the robot's 加签 secret, which starts with SEC",
        ),
    ],
)
def test_robot_urls_and_secrets_that_the_platform_refuses_are_errors(
    channel: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        AlertsConfig.model_validate(base(channels={**base()["channels"], "robot": channel}))
    assert message in str(info.value)
    assert "abc" not in str(info.value) and "not-the-robot-secret" not in str(info.value)


def test_routes_that_can_never_match_are_warned_about() -> None:
    routes = {
        "teams": ["customer_service"],
        "routes": [
            {"match": {"watch": ["crisiswatch"]}, "teams": ["legal"]},  # our own: known
            {"match": {"watch": ["acmee"]}, "teams": ["pr"]},  # a typo of acme
            {"match": {"tier": [3], "labels": {"regoin": "cn"}}, "teams": ["legal"]},
            {"match": {"language": ["zh"], "labels": {"drill": "false"}}, "teams": ["pr"]},
            {"match": {"labels": {"region": "cn"}}, "teams": ["pr"]},  # set below: fine
        ],
    }
    config = AlertsConfig.model_validate(
        base(routes=routes, watch_labels={"acme": {"region": "cn"}, "ghost": {"region": "us"}})
    )
    warnings = config.route_warnings({"acme", "beta"})
    assert warnings == [
        "alerts.routes.routes[1].match.watch: no watch 'acmee' is configured (watches: acme, "
        "beta), so this route never matches it",
        "alerts.routes.routes[2].match.labels: no watch has regoin=cn in alerts.watch_labels, "
        "so this route never matches",
        "alerts.routes.routes[3].match.language: no watch has language=zh in "
        "alerts.watch_labels (the language matcher reads that label of the watch), so this "
        "route never matches",
        "alerts.watch_labels.ghost: no watch 'ghost' is configured (watches: acme, beta)",
    ]
    # without watches (replay, bench) the watch names cannot be checked; labels still are
    assert len(config.route_warnings(set())) == 2


def test_check_config_says_which_routes_never_match(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.cli import main

    for name in [n for n in os.environ if n.upper().startswith("CRISISWATCH_")]:
        monkeypatch.delenv(name)
    alerts = base(
        routes={"teams": ["pr"], "routes": [{"match": {"watch": ["acmee"]}, "teams": ["legal"]}]}
    )
    config = {"listener": {"watches": [{"id": "acme", "brand": "Acme", "terms": ["acme"]}]}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**config, "alerts": alerts}), encoding="utf-8")
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "warning: alerts.routes.routes[0].match.watch: no watch 'acmee'" in out
