"""The README's channel names can be reached by an environment variable: a secret of a
copied example (a Slack URL, a signing secret) is set the way the deployments set theirs,
``CRISISWATCH_ALERTS__CHANNELS__<NAME>__<FIELD>``, which a shell cannot write for a name
holding ``-`` (and pydantic-settings reads in lower case)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from api.settings import load_settings

README = Path(__file__).resolve().parents[2] / "README.md"
REACHABLE = re.compile(r"^[a-z0-9_]+$")


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def test_every_channel_named_in_the_readme_can_be_set_from_a_shell() -> None:
    named = []
    for block in yaml_blocks():
        try:
            data = yaml.safe_load(block)
        except yaml.YAMLError:
            continue  # (a fragment with an ellipsis)
        alerts = data.get("alerts") if isinstance(data, dict) else None
        channels = alerts.get("channels") if isinstance(alerts, dict) else None
        if isinstance(channels, dict):
            named.extend(str(name) for name in channels)
    assert "pr_slack" in named
    unreachable = sorted({name for name in named if not REACHABLE.match(name)})
    assert not unreachable, f"no environment variable can set these channels: {unreachable}"


def test_the_deployments_slack_variable_sets_the_readme_examples_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The variable deploy/ hands the alerter (compose, the k8s Secret) overrides the
    README configuration example's Slack channel; it was a configuration error
    (``alerts.channels.pr_slack: Unable to extract tag using discriminator 'type'``)."""
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- configuration-example -->\n```yaml\n(.*?)```", text, re.DOTALL)
    assert match
    config = tmp_path / "crisiswatch.yaml"
    config.write_text(match.group(1), encoding="utf-8")
    url = "https://hooks.slack.com/services/T9/B9/from-the-environment"
    monkeypatch.setenv("CRISISWATCH_ALERTS__CHANNELS__PR_SLACK__WEBHOOK_URL", url)
    channel = load_settings(config).alerts.channels["pr_slack"]
    assert channel.type == "slack"
    assert channel.webhook_url.get_secret_value() == url  # type: ignore[union-attr]
