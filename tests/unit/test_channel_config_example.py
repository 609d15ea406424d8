"""The README's configuration and channel examples are valid configurations; the channel
example builds every notifier."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from alerts.notifiers.registry import build_notifiers
from api.settings import ConfigError, load_settings
from core.clock import ManualClock

README = Path(__file__).resolve().parents[2] / "README.md"


def example(tmp_path: Path, marker: str = "channels-example") -> Path:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- {marker} -->\n```yaml\n(.*?)```", text, re.DOTALL)
    assert match, f"the README lost its {marker}"
    path = tmp_path / "crisiswatch.yaml"
    path.write_text(match.group(1), encoding="utf-8")
    return path


async def test_readme_example_loads_and_builds_every_channel(tmp_path: Path) -> None:
    settings = load_settings(example(tmp_path))
    kinds = {ch.type for ch in settings.alerts.channels.values()}
    assert kinds == {
        "slack",
        "teams",
        "feishu",
        "dingtalk",
        "wecom",
        "email",
        "pagerduty",
        "webhook",
    }
    assert settings.ack_links.enabled and settings.slack_app.signing_secret is not None
    async with httpx.AsyncClient() as client:
        notifiers = build_notifiers(settings.alerts, client, ManualClock())
    assert {n.kind for n in notifiers.values()} == kinds


def test_config_errors_never_echo_secrets(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "alerts:\n  channels:\n    pd: {type: pagerduty, routing_key: 'short-SECRET-key'}\n"
        "    mail: {type: email, host: smtp.example, starttls: false, sender: a@b.c, to: [x@y.z]}\n"
        "  teams: {pr: {channels: [pd]}}\n"
        "  routes: {1: [pr], 2: [pr], 3: [pr]}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert "routing_key must be the 32-character integration key" in message
    assert "starttls may be off only for a relay on localhost" in message
    assert "short-SECRET-key" not in message


def test_readme_configuration_example_loads(tmp_path: Path) -> None:
    settings = load_settings(example(tmp_path, "configuration-example"))
    assert settings.listener.webhook.enabled
    assert set(settings.alerts.teams) >= {"pr", "legal"}
