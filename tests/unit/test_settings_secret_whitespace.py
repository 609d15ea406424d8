"""Secrets are read without their surrounding whitespace (``core.settings.Secret``).

A Kubernetes Secret made with ``kubectl create secret --from-file`` and exposed as an
environment variable keeps the file's final newline: kept, it became part of an HMAC key
(every signature silently wrong) or of a credential (refused by the platform). A secret of
whitespace only is an error naming the setting, not an unset one.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from alerts.acklinks import AckLinkConfig
from alerts.channels import (
    DingTalkChannelConfig,
    EmailChannelConfig,
    FeishuChannelConfig,
    PagerDutyChannelConfig,
    SlackChannelConfig,
    TeamsChannelConfig,
    WebhookChannelConfig,
    WeComChannelConfig,
)
from alerts.notifiers import feishu
from api.auth import KeyRing
from api.routers.slack import signature as slack_signature
from api.routers.slack import verify as slack_verify
from api.settings import ApiConfig, ApiKeyConfig, ConfigError, SlackAppConfig, load_settings
from core.settings import BusConfig, DatabaseConfig
from listener.config import WebhookConfig
from listener.sources.mastodon import MastodonConfig
from listener.sources.reddit import RedditConfig
from listener.sources.youtube import YouTubeConfig
from listener.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, signed_headers, verify_signature

HOOK = "https://hooks.example.com/services/T000/B000/XXXX"
LONG = "a-secret-of-more-than-32-characters-0123456789"

# (model, the other fields it needs, the secret field, a clean value of it)
SECRETS: list[tuple[type[BaseModel], dict[str, Any], str, str]] = [
    (WebhookConfig, {}, "secret", LONG),
    (SlackAppConfig, {}, "signing_secret", LONG),
    (AckLinkConfig, {}, "secret", LONG),
    (ApiKeyConfig, {"name": "oncall", "role": "responder"}, "key", LONG),
    (ApiConfig, {}, "metrics_token", LONG),
    (WebhookChannelConfig, {"url": HOOK}, "secret", LONG),
    (WebhookChannelConfig, {"secret": LONG}, "url", HOOK),
    (SlackChannelConfig, {}, "webhook_url", HOOK),
    (TeamsChannelConfig, {}, "webhook_url", HOOK),
    (WeComChannelConfig, {}, "webhook_url", HOOK + "?key=XXXX"),  # a robot URL has its key
    (FeishuChannelConfig, {"webhook_url": HOOK}, "secret", LONG),
    (DingTalkChannelConfig, {"webhook_url": HOOK + "?access_token=X"}, "secret", "SEC" + LONG),
    (
        EmailChannelConfig,
        {"host": "smtp.example.com", "username": "u", "sender": "a@example.com", "to": ["b@x.y"]},
        "password",
        LONG,
    ),
    (PagerDutyChannelConfig, {}, "routing_key", "0123456789abcdef0123456789abcdef"),
    (
        RedditConfig,
        {"client_id": "id", "user_agent": "server:test:1.0", "searches": ["acme"]},
        "client_secret",
        LONG,
    ),
    (MastodonConfig, {"instance": "https://mastodon.example"}, "access_token", LONG),
    (YouTubeConfig, {"videos": ["abc"]}, "api_key", LONG),
    (DatabaseConfig, {}, "url", "postgresql+asyncpg://user:pw@db.example:5432/crisiswatch"),
    (BusConfig, {}, "sasl_password", LONG),
]
IDS = [f"{model.__name__}.{field}" for model, _, field, _ in SECRETS]


def _secret(model: BaseModel, field: str) -> str:
    value = getattr(model, field)
    assert isinstance(value, SecretStr)
    return value.get_secret_value()


@pytest.mark.parametrize(("model", "others", "field", "clean"), SECRETS, ids=IDS)
@pytest.mark.parametrize("around", [("", "\n"), ("", "\r\n"), (" \t", " \n")])
def test_a_secret_is_read_without_surrounding_whitespace(
    model: type[BaseModel],
    others: dict[str, Any],
    field: str,
    clean: str,
    around: tuple[str, str],
) -> None:
    before, after = around
    loaded = model.model_validate({**others, field: before + clean + after})
    assert _secret(loaded, field) == clean


@pytest.mark.parametrize(("model", "others", "field", "clean"), SECRETS, ids=IDS)
@pytest.mark.parametrize("blank", ["", " ", "\n", " \t\r\n"])
def test_a_secret_of_whitespace_only_is_refused(
    model: type[BaseModel], others: dict[str, Any], field: str, clean: str, blank: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        model.model_validate({**others, field: blank})
    errors = refused.value.errors()
    assert [e["loc"] for e in errors] == [(field,)]
    assert "empty or only whitespace" in errors[0]["msg"]


def test_minimum_lengths_are_checked_after_stripping() -> None:
    fifteen = "0123456789abcde"
    with pytest.raises(ValidationError, match="at least 16 characters"):
        WebhookConfig(secret=SecretStr(fifteen + " \n"))
    with pytest.raises(ValidationError, match="at least 32 characters"):
        AckLinkConfig(secret=SecretStr(LONG[:31] + "\n\n"))
    with pytest.raises(ValidationError, match="32-character integration key"):
        PagerDutyChannelConfig(routing_key=SecretStr("x" * 31 + "\n"))


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in [n for n in os.environ if n.startswith("CRISISWATCH_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def test_the_webhook_ingest_signature_verifies_with_a_secret_file_newline(
    environ: pytest.MonkeyPatch,
) -> None:
    environ.setenv("CRISISWATCH_LISTENER__WEBHOOK__ENABLED", "true")
    environ.setenv("CRISISWATCH_LISTENER__WEBHOOK__SECRET", LONG + "\n")
    secret = load_settings().listener.webhook.secret
    assert secret is not None
    now = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    body = b'{"mentions": []}'
    headers = signed_headers(LONG, body, now)  # the sender signs with the clean secret
    given = headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
    verify_signature(secret, *given, body, now)  # raises when it does not match


def test_a_slack_signature_verifies_with_a_secret_file_newline(
    environ: pytest.MonkeyPatch,
) -> None:
    environ.setenv("CRISISWATCH_SLACK_APP__SIGNING_SECRET", LONG + "\n")
    secret = load_settings().slack_app.signing_secret
    assert secret is not None
    body, timestamp = b"payload=%7B%7D", "1767614400"
    given = slack_signature(LONG, timestamp, body)  # what Slack sends
    verdict = slack_verify(
        secret.get_secret_value(), timestamp, body, given, now=1767614400.0, max_age=300
    )
    assert verdict is None


def test_an_api_key_with_a_secret_file_newline_authenticates(
    environ: pytest.MonkeyPatch,
) -> None:
    keys = [{"name": "oncall", "role": "responder", "key": LONG + "\n"}]
    environ.setenv("CRISISWATCH_API__KEYS", json.dumps(keys))
    ring = KeyRing()
    for key in load_settings().api.keys:  # as api.runtime builds it
        ring.add_digest(key.digest(), key.name, key.role, key.watches)
    principal = ring.lookup(LONG)  # the bearer token a client sends
    assert principal is not None and principal.name == "oncall"


def test_a_channel_signs_with_the_clean_secret() -> None:
    channel = FeishuChannelConfig(webhook_url=SecretStr(HOOK), secret=SecretStr(LONG + "\n"))
    assert channel.secret is not None
    timestamp = "1767614400"
    assert feishu.sign(channel.secret.get_secret_value(), timestamp) == feishu.sign(LONG, timestamp)


def test_a_blank_secret_variable_is_an_error_naming_the_setting(
    environ: pytest.MonkeyPatch,
) -> None:
    environ.setenv("CRISISWATCH_LISTENER__WEBHOOK__ENABLED", "true")
    environ.setenv("CRISISWATCH_LISTENER__WEBHOOK__SECRET", " \n")
    with pytest.raises(ConfigError) as refused:
        load_settings()
    message = str(refused.value)
    assert "listener.webhook.secret: secret is empty or only whitespace" in message
    assert "CRISISWATCH_LISTENER__WEBHOOK__SECRET" in message
