"""Channel configs: one pydantic model per channel type, joined in ``ChannelConfig``.

A channel is a named destination (a Slack webhook, a DingTalk robot, an SMTP mailbox...).
Each type's model lives here so ``alerts.config`` (teams, routes, timing) and the
notifiers (``alerts.notifiers.*``) share them without importing each other.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, SecretStr, field_validator

from core.settings import Section

# pydantic repeats the raw input in its error messages; these sections hold secrets.
_SECRET_SAFE = ConfigDict(extra="forbid", hide_input_in_errors=True)


def _http_url(value: SecretStr, what: str) -> SecretStr:
    # The URL is a secret (Slack webhook URLs are bearer tokens): never echo it back.
    parts = urlsplit(value.get_secret_value())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{what} must be an http(s) URL (value not shown: it is secret)")
    return value


class ConsoleChannelConfig(Section):
    """Writes the alert to the log (logger ``alerts.console``)."""

    type: Literal["console"] = "console"
    level: Literal["INFO", "WARNING", "ERROR"] = "WARNING"


class WebhookChannelConfig(Section):
    """POSTs the alert as signed JSON (HMAC-SHA256, see ``alerts.notifiers.webhook``)."""

    model_config = _SECRET_SAFE

    type: Literal["webhook"] = "webhook"
    url: SecretStr
    secret: SecretStr = Field(description="shared key for the X-Crisiswatch-Signature header")
    timeout: float = Field(10.0, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr) -> SecretStr:
        return _http_url(value, "url")

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("the signing secret must be at least 16 characters")
        return value


class SlackChannelConfig(Section):
    """A Slack incoming webhook (Block Kit message)."""

    model_config = _SECRET_SAFE

    type: Literal["slack"] = "slack"
    webhook_url: SecretStr
    timeout: float = Field(10.0, gt=0, le=60)

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: SecretStr) -> SecretStr:
        return _http_url(value, "webhook_url")


AnyChannelConfig = ConsoleChannelConfig | WebhookChannelConfig | SlackChannelConfig
ChannelConfig = Annotated[AnyChannelConfig, Field(discriminator="type")]
