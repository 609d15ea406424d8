"""Channel configs: one pydantic model per channel type, joined in ``ChannelConfig``.

A channel is a named destination (a Slack webhook, a DingTalk robot, an SMTP mailbox...).
Each type's model lives here so ``alerts.config`` (teams, routes, timing) and the
notifiers (``alerts.notifiers.*``) share them without importing each other.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, get_args
from urllib.parse import parse_qs, urlsplit

from pydantic import BeforeValidator, ConfigDict, Field, SecretStr, field_validator, model_validator

from core.settings import Secret, Section

# pydantic repeats the raw input in its error messages; these sections hold secrets.
_SECRET_SAFE = ConfigDict(extra="forbid", hide_input_in_errors=True)


def _http_url(value: SecretStr, what: str) -> SecretStr:
    # The URL is a secret (Slack webhook URLs are bearer tokens): never echo it back.
    parts = urlsplit(value.get_secret_value())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{what} must be an http(s) URL (value not shown: it is secret)")
    return value


def _query_param(url: SecretStr, name: str) -> None:
    """A robot URL must carry its credential ``name`` in the query string (the robot's
    "copy webhook address" gives it so); the value is never shown."""
    query = parse_qs(urlsplit(url.get_secret_value()).query)
    if not any(value.strip() for value in query.get(name, ())):
        raise ValueError(
            f"webhook_url has no {name} (value not shown: it is secret): use the robot's whole "
            f"webhook address, ...?{name}=..."
        )


_LANGUAGES = {"en": "en", "zh": "zh", "zh-cn": "zh", "zh-hans": "zh"}


def _language(value: Any) -> Any:
    """``en`` or ``zh``; ``zh-CN`` and ``zh-Hans`` (any case) are ``zh``."""
    if not isinstance(value, str) or value.strip().lower() not in _LANGUAGES:
        shown = repr(value)[:40]
        raise ValueError(
            f"language must be en or zh (Simplified Chinese; zh-CN and zh-Hans are read as "
            f"zh), got {shown}"
        )
    return _LANGUAGES[value.strip().lower()]


Language = Annotated[Literal["en", "zh"], BeforeValidator(_language)]
"""The language of a channel's messages (``alerts.notifiers.i18n``)."""


class _Channel(Section):
    """What every channel type has."""

    language: Language = Field(
        "en",
        description="the language of the channel's messages: en or zh (Simplified Chinese; "
        "zh-CN and zh-Hans are accepted as zh)",
    )


class ConsoleChannelConfig(_Channel):
    """Writes the alert to the log (logger ``alerts.console``)."""

    type: Literal["console"] = "console"
    level: Literal["INFO", "WARNING", "ERROR"] = "WARNING"


class WebhookChannelConfig(_Channel):
    """POSTs the alert as signed JSON (HMAC-SHA256, see ``alerts.notifiers.webhook``)."""

    model_config = _SECRET_SAFE

    type: Literal["webhook"] = "webhook"
    url: Secret
    secret: Secret = Field(description="shared key for the X-Crisiswatch-Signature header")
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


class _HookConfig(_Channel):
    """A channel reached by POSTing to one secret URL (the URL is the credential)."""

    model_config = _SECRET_SAFE

    webhook_url: Secret
    timeout: float = Field(10.0, gt=0, le=60)

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: SecretStr) -> SecretStr:
        return _http_url(value, "webhook_url")


class SlackChannelConfig(_HookConfig):
    """A Slack incoming webhook (Block Kit message, Ack/Resolve buttons for a Slack app)."""

    type: Literal["slack"] = "slack"
    buttons: bool = Field(
        True,
        description="add Ack/Resolve buttons; they need the webhook's Slack app to send its "
        "interactions to POST /slack/interactions (settings: slack_app.signing_secret)",
    )


class TeamsChannelConfig(_HookConfig):
    """A Microsoft Teams Workflows webhook ("Post to a channel when a webhook request is
    received"): the message carries one Adaptive Card."""

    type: Literal["teams"] = "teams"


class FeishuChannelConfig(_HookConfig):
    """A Feishu / Lark custom bot (``.../open-apis/bot/v2/hook/<id>``), card message."""

    type: Literal["feishu"] = "feishu"
    secret: Secret | None = Field(
        None, description="the bot's signature verification key (signing is recommended)"
    )


class DingTalkChannelConfig(_HookConfig):
    """A DingTalk custom robot (``https://oapi.dingtalk.com/robot/send?access_token=...``)."""

    type: Literal["dingtalk"] = "dingtalk"
    secret: Secret | None = Field(
        None, description="the robot's 加签 secret (starts with SEC); signing is recommended"
    )
    msgtype: Literal["markdown", "actionCard"] = Field(
        "markdown", description="actionCard shows the ack link as a button"
    )

    @model_validator(mode="after")
    def _robot(self) -> DingTalkChannelConfig:
        # Both are refused by DingTalk on every send (300001 bad token, 310000 bad
        # signature): said at start-up, not as a self-alert on the first crisis.
        _query_param(self.webhook_url, "access_token")
        if self.secret is not None and not self.secret.get_secret_value().startswith("SEC"):
            raise ValueError(
                "secret must be the robot's 加签 secret, which starts with SEC (value not "
                "shown): copy it from the robot's security settings, or leave it out"
            )
        return self


class WeComChannelConfig(_HookConfig):
    """A WeCom (企业微信) group robot (``https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...``)."""

    type: Literal["wecom"] = "wecom"
    msgtype: Literal["markdown", "text"] = Field(
        "markdown",
        description="markdown mentions by user id (<@userid>) only; text can also mention "
        "by mobile number but shows no formatting or links as links",
    )

    @model_validator(mode="after")
    def _robot(self) -> WeComChannelConfig:
        _query_param(self.webhook_url, "key")  # WeCom refuses every send without it
        return self


class EmailChannelConfig(_Channel):
    """Email over SMTP with STARTTLS (aiosmtplib): an HTML part and a plain-text part."""

    model_config = _SECRET_SAFE

    type: Literal["email"] = "email"
    host: str = Field(min_length=1)
    port: int = Field(587, ge=1, le=65535)
    username: str | None = None
    password: Secret | None = None
    starttls: bool = Field(
        True, description="require STARTTLS (off only for a local relay on localhost)"
    )
    ca_file: str | None = Field(
        None, description="PEM file of CAs to trust instead of the system's"
    )
    sender: str = Field(min_length=3, description="From: address")
    to: list[str] = Field(min_length=1, description="recipients")
    subject_prefix: str = "[crisiswatch]"
    timeout: float = Field(20.0, gt=0, le=60)

    @field_validator("sender", "to")
    @classmethod
    def _addresses(cls, value: str | list[str]) -> str | list[str]:
        for address in [value] if isinstance(value, str) else value:
            if "@" not in address or any(c in address for c in "\r\n<>,;"):
                raise ValueError(f"not a plain email address: {address[:100]!r}")
        return value

    @model_validator(mode="after")
    def _starttls_for_remote(self) -> EmailChannelConfig:
        if not self.starttls and self.host not in ("localhost", "127.0.0.1", "::1"):
            raise ValueError("starttls may be off only for a relay on localhost")
        if self.password is not None and self.username is None:
            raise ValueError("password given without username")
        return self


PagerDutySeverity = Literal["critical", "error", "warning", "info"]


def _default_severity() -> dict[int, PagerDutySeverity]:
    return {1: "warning", 2: "error", 3: "critical"}


class PagerDutyChannelConfig(_Channel):
    """PagerDuty Events API v2: one service integration (its routing key)."""

    model_config = _SECRET_SAFE

    type: Literal["pagerduty"] = "pagerduty"
    routing_key: Secret = Field(description="the 32-character integration key")
    url: str = "https://events.pagerduty.com/v2/enqueue"
    source: str = Field("crisiswatch", min_length=1, max_length=255)
    severity: dict[int, PagerDutySeverity] = Field(default_factory=_default_severity)
    timeout: float = Field(10.0, gt=0, le=60)

    @field_validator("routing_key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) != 32:
            raise ValueError("routing_key must be the 32-character integration key (not shown)")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("url must be an http(s) URL")
        return value


AnyChannelConfig = (
    ConsoleChannelConfig
    | WebhookChannelConfig
    | SlackChannelConfig
    | TeamsChannelConfig
    | FeishuChannelConfig
    | DingTalkChannelConfig
    | WeComChannelConfig
    | EmailChannelConfig
    | PagerDutyChannelConfig
)
ChannelConfig = Annotated[AnyChannelConfig, Field(discriminator="type")]

CHANNEL_TYPES: Final = tuple(
    sorted(str(model.model_fields["type"].default) for model in get_args(AnyChannelConfig))
)
"""Every channel ``type``: the keys a person's ``chat_ids`` may use."""

KEYED_CHANNEL_TYPES: Final = frozenset({"pagerduty"})
"""Channel types that hold one alert per incident page, keyed by
``AlertMessage.dedup_key``, with a state (triggered, acknowledged, resolved) that later
events of the same key change. They get one event per incident, never a digest (a digest
would carry one incident's key only), and a page that a later one superseded is resolved
there (``alerts.outbox``)."""


def keyed(channel_type: str) -> bool:
    """Whether channels of ``channel_type`` key their alerts per incident page."""
    return channel_type in KEYED_CHANNEL_TYPES
