"""The per-channel ``language`` setting: ``en`` (default) or ``zh`` (``zh-CN``, ``zh-Hans``
read as ``zh``) on every channel type; anything else is a check-config error naming the
key; every notifier type takes it from its channel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from alerts.channels import CHANNEL_TYPES, ConsoleChannelConfig, FeishuChannelConfig
from alerts.config import AlertsConfig
from alerts.notifiers.registry import build_notifiers
from api.settings import ConfigError, load_settings
from core.clock import ManualClock

PD_KEY = "0123456789abcdef0123456789abcdef"
CHANNELS: dict[str, dict[str, Any]] = {
    "console": {"type": "console"},
    "webhook": {"type": "webhook", "url": "https://hook.example/x", "secret": "s" * 20},
    "slack": {"type": "slack", "webhook_url": "https://hooks.slack.com/services/T/B/X"},
    "teams": {"type": "teams", "webhook_url": "https://teams.example/x"},
    "feishu": {"type": "feishu", "webhook_url": "https://open.feishu.cn/open-apis/bot/v2/hook/x"},
    "dingtalk": {
        "type": "dingtalk",
        "webhook_url": "https://oapi.dingtalk.com/robot/send?access_token=x",
    },
    "wecom": {
        "type": "wecom",
        "webhook_url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=x",
    },
    "email": {"type": "email", "host": "smtp.example", "sender": "a@b.example", "to": ["c@d.e"]},
    "pagerduty": {"type": "pagerduty", "routing_key": PD_KEY},
}


def config(language: str | None) -> AlertsConfig:
    extra = {} if language is None else {"language": language}
    return AlertsConfig.model_validate(
        {
            "channels": {kind: data | extra for kind, data in CHANNELS.items()},
            "teams": {"pr": {"channels": list(CHANNELS)}},
            "routes": {1: ["pr"], 2: ["pr"], 3: ["pr"]},
        }
    )


def test_the_sample_covers_every_channel_type() -> None:
    assert set(CHANNELS) == set(CHANNEL_TYPES)


@pytest.mark.parametrize(
    ("given", "read"),
    [(None, "en"), ("en", "en"), ("zh", "zh"), ("zh-CN", "zh"), ("zh-Hans", "zh"), ("ZH-cn", "zh")],
)
async def test_every_channel_type_takes_the_language(given: str | None, read: str) -> None:
    settings = config(given)
    assert {ch.language for ch in settings.channels.values()} == {read}
    async with httpx.AsyncClient() as http:
        notifiers = build_notifiers(settings, http, ManualClock())
    assert {name: getattr(n, "language", None) for name, n in notifiers.items()} == dict.fromkeys(
        CHANNELS, read
    )


@pytest.mark.parametrize("bad", ["fr", "zh-TW", "english", "", 1])
def test_any_other_language_is_refused_naming_the_key(bad: object) -> None:
    with pytest.raises(ValidationError) as info:
        FeishuChannelConfig.model_validate(
            {"webhook_url": "https://open.feishu.cn/open-apis/bot/v2/hook/x", "language": bad}
        )
    error = info.value.errors()[0]
    assert error["loc"] == ("language",)
    assert "language must be en or zh" in error["msg"] and repr(bad) in error["msg"]


def test_check_config_names_the_channel_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "crisiswatch.yaml"
    path.write_text(
        "alerts:\n"
        "  channels:\n"
        "    pr_feishu: {type: feishu, webhook_url: 'https://open.feishu.cn/open-apis/bot/v2/"
        "hook/SECRETTOKEN', language: fr}\n"
        "  teams: {pr: {channels: [pr_feishu]}}\n"
        "  routes: {1: [pr], 2: [pr], 3: [pr]}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert "alerts.channels.pr_feishu.feishu.language: language must be en or zh" in message
    assert "got 'fr'" in message and "SECRETTOKEN" not in message


def test_the_default_console_channel_stays_english() -> None:
    assert ConsoleChannelConfig().language == "en"
    assert {ch.language for ch in AlertsConfig().channels.values()} == {"en"}
