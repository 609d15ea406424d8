"""Configuration as an operator meets it: the YAML file's pitfalls (duplicate keys, tabs,
yes/no read as booleans), environment variables (``null``, a misspelt name, an error in a
variable's value) and problems explained in words, with the path and a did-you-mean."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from api.settings import ConfigError, load_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in [n for n in os.environ if n.upper().startswith("CRISISWATCH_")]:
        monkeypatch.delenv(name)


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "crisiswatch.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _problem(path: Path | None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return str(caught.value)


# -- the file --------------------------------------------------------------------------


def test_a_section_given_twice_is_refused_not_half_lost(tmp_path: Path) -> None:
    """PyYAML keeps the last of two equal keys: the first ``api:`` (its port) vanished."""
    path = _config(tmp_path, "api:\n  port: 9000\nlog_level: INFO\napi:\n  host: 0.0.0.0\n")
    message = _problem(path)
    assert "duplicate key 'api'" in message
    assert "line 4" in message and "line 1" in message


def test_a_key_given_twice_in_a_section_is_refused(tmp_path: Path) -> None:
    path = _config(tmp_path, "bus:\n  kind: kafka\n  partitions: 3\n  kind: memory\n")
    message = _problem(path)
    assert "duplicate key 'kind'" in message and "line 4" in message


def test_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    """A merge key's entries are overridden by the mapping's own keys: not a duplicate."""
    path = _config(
        tmp_path,
        "alerts:\n"
        "  channels:\n"
        "    a: &hook {type: webhook, url: 'https://hooks.example/a',"
        " secret: 'sixteen-characters-at-least', timeout: 5}\n"
        "    b:\n"
        "      <<: *hook\n"
        "      url: 'https://hooks.example/b'\n"
        "  teams:\n"
        "    customer_service: &team {channels: [a, b]}\n"
        "    pr: *team\n    marketing: *team\n    legal: *team\n    executives: *team\n",
    )
    channels = load_settings(path).alerts.channels
    b = channels["b"]
    assert b.type == "webhook" and b.timeout == 5  # type: ignore[union-attr]
    assert b.url.get_secret_value() == "https://hooks.example/b"  # type: ignore[union-attr]


def test_a_tab_in_the_indentation_says_so(tmp_path: Path) -> None:
    message = _problem(_config(tmp_path, "api:\n\tport: 9000\n"))
    assert "line 2" in message and "tabs" in message and "spaces" in message


def test_yes_no_on_off_read_as_booleans_are_explained(tmp_path: Path) -> None:
    """``langs: [en, no]`` (Norwegian) reaches the model as ``[en, False]``."""
    path = _config(tmp_path, "listener:\n  watches:\n    - {id: a, terms: [x], langs: [en, no]}\n")
    message = _problem(path)
    assert "listener.watches.0.langs.1" in message
    assert "quote" in message and "'no'" in message


def test_a_duration_with_a_unit_says_how_durations_are_written(tmp_path: Path) -> None:
    message = _problem(_config(tmp_path, "alerts:\n  tick_interval: 10s\n"))
    assert "alerts.tick_interval" in message
    assert "PT5M" in message and "identifier" not in message


@pytest.mark.parametrize(
    ("text", "where", "suggestion"),
    [
        ("api:\n  prot: 9000\n", "api.prot", "port"),
        ("alert:\n  tick_interval: PT5S\n", "alert:", "alerts"),
        ("listener:\n  watches:\n    - {id: a, term: [x]}\n", "listener.watches.0.term", "terms"),
        (
            "alerts:\n  channels:\n    s: {type: slack, webhok_url: 'https://hooks.example/s'}\n",
            "alerts.channels.s.slack.webhok_url",
            "webhook_url",
        ),
        ("detector:\n  spread3_author: 40\n", "detector.spread3_author", "spread3_authors"),
    ],
)
def test_an_unknown_key_is_named_with_a_suggestion(
    tmp_path: Path, text: str, where: str, suggestion: str
) -> None:
    message = _problem(_config(tmp_path, text))
    assert where in message
    assert f"did you mean '{suggestion}'?" in message


def test_a_channel_without_a_type_says_which_key_is_missing(tmp_path: Path) -> None:
    message = _problem(
        _config(tmp_path, "alerts:\n  channels:\n    x: {url: 'https://a.example'}\n")
    )
    assert "alerts.channels.x" in message and "'type'" in message
    assert "slack" in message and "Unable to extract tag" not in message


# -- environment variables -------------------------------------------------------------


def test_null_in_a_variable_unsets_what_the_file_sets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The documented ``null`` of an optional setting, from the environment: it was read
    as the string 'null' and refused (or, for a policy name, taken as one)."""
    path = _config(
        tmp_path,
        "scorer: {embedder: e5-embed}\n"
        "api: {metrics_token: a-metrics-token-of-some-length}\n"
        "alerts: {quiet_hours: {tiers: [1]}}\n",
    )
    monkeypatch.setenv("CRISISWATCH_SCORER__EMBEDDER", "null")
    monkeypatch.setenv("CRISISWATCH_API__METRICS_TOKEN", "null")
    monkeypatch.setenv("CRISISWATCH_ALERTS__QUIET_HOURS", "null")
    monkeypatch.setenv("CRISISWATCH_ALERTS__DELIVERY__GIVE_UP_AFTER", "null")
    monkeypatch.setenv("CRISISWATCH_DETECTOR__SPREAD3_PREDICTED_SIZE", "null")
    settings = load_settings(path)
    assert settings.scorer.embedder is None
    assert settings.api.metrics_token is None
    assert settings.alerts.quiet_hours is None
    assert settings.alerts.delivery.give_up_after is None
    assert settings.detector.spread3_predicted_size is None


@pytest.mark.parametrize(
    ("variable", "suggestion"),
    [
        ("CRISISWATCH_BUS_KIND", "CRISISWATCH_BUS__KIND"),
        ("CRISISWATCH_DATABSE__URL", "CRISISWATCH_DATABASE__URL"),
        (
            "CRISISWATCH_ALERT__CHANNELS__PR_SLACK__WEBHOOK_URL",
            "CRISISWATCH_ALERTS__CHANNELS__PR_SLACK__WEBHOOK_URL",
        ),
    ],
)
def test_a_misspelt_variable_is_warned_about_with_a_suggestion(
    variable: str,
    suggestion: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Such a variable was silently ignored (a nested misspelling is an error already)."""
    secret = "postgresql+asyncpg://u:hunter2-secret@db/x"
    monkeypatch.setenv(variable, secret)
    with caplog.at_level(logging.WARNING, logger="api.settings"):
        load_settings()
    text = caplog.text
    assert variable in text and "ignored" in text
    assert f"did you mean {suggestion}?" in text
    assert "hunter2" not in text  # the value may be a secret: never shown


def test_the_projects_own_and_kubernetes_service_variables_are_not_warned_about(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Kubernetes gives each pod variables for every Service of its namespace
    (deploy/k8s: crisiswatch-api, crisiswatch-listener, ...): not misspelt settings."""
    monkeypatch.setenv("CRISISWATCH_TEST_POSTGRES", "postgresql+asyncpg://x@y/z")
    monkeypatch.setenv("CRISISWATCH_DATA", "/data")
    monkeypatch.setenv("CRISISWATCH_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("CRISISWATCH_API_SERVICE_HOST", "10.0.0.7")
    monkeypatch.setenv("CRISISWATCH_API_SERVICE_PORT", "8000")
    monkeypatch.setenv("CRISISWATCH_API_SERVICE_PORT_HTTP", "8000")
    monkeypatch.setenv("CRISISWATCH_API_PORT", "tcp://10.0.0.7:8000")
    monkeypatch.setenv("CRISISWATCH_LISTENER_PORT_8000_TCP", "tcp://10.0.0.8:8000")
    monkeypatch.setenv("CRISISWATCH_LISTENER_PORT_8000_TCP_ADDR", "10.0.0.8")
    with caplog.at_level(logging.WARNING, logger="api.settings"):
        load_settings()
    assert "CRISISWATCH" not in caplog.text


def test_a_bad_value_from_a_variable_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The message began with the file's name: the operator searched the file in vain."""
    path = _config(tmp_path, "api:\n  port: 8000\n")
    monkeypatch.setenv("CRISISWATCH_API__PORT", "eighty")
    message = _problem(path)
    assert "api.port" in message and "CRISISWATCH_API__PORT" in message
    assert "eighty" not in message


def test_an_unknown_nested_variable_names_the_variable_and_a_suggestion(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRISISWATCH_API__METRIC_TOKEN", "a-metrics-token-of-some-length")
    message = _problem(None)
    assert "api.metric_token" in message
    assert "CRISISWATCH_API__METRIC_TOKEN" in message
    assert "did you mean 'metrics_token'?" in message
    assert "a-metrics-token" not in message


def test_a_variable_for_a_channel_the_file_lacks_is_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file names it ``pr-slack``; the variable (which cannot hold ``-``) makes a new,
    typeless channel ``pr_slack``."""
    path = _config(
        tmp_path,
        "alerts:\n  channels:\n    pr-slack: {type: slack, webhook_url: 'https://hooks.example/x'}\n",
    )
    monkeypatch.setenv(
        "CRISISWATCH_ALERTS__CHANNELS__PR_SLACK__WEBHOOK_URL", "https://hooks.example/secret-y"
    )
    message = _problem(path)
    assert "alerts.channels.pr_slack" in message and "'type'" in message
    assert "CRISISWATCH_ALERTS__CHANNELS__PR_SLACK__WEBHOOK_URL" in message
    assert "secret-y" not in message


def test_a_database_url_with_a_bad_port_is_a_config_error_that_hides_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLAlchemy's ``int(port)`` escaped as a traceback from check-config and every
    database command, quoting the 'port': a password whose ``@`` or ``:`` was not
    percent-encoded puts part of it there."""
    from api.cli import main

    monkeypatch.setenv("CRISISWATCH_DATABASE__URL", "postgresql+asyncpg://cw@db:Pa55wordPart/cw")
    message = _problem(None)
    assert "database.url" in message and "port" in message
    assert "percent-encoded" in message
    assert "Pa55wordPart" not in message
    assert main(["check-config", "deploy/config/crisiswatch.yaml"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Pa55wordPart" not in err
