"""The one settings object, composed from every package's section.

Loaded from a YAML file (``--config``) and ``CRISISWATCH_*`` environment variables
(``CRISISWATCH_DATABASE__URL``, ``CRISISWATCH_BUS__KIND``, ...). Unknown keys are errors.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Literal

from apscheduler.triggers.cron import CronTrigger
from pydantic import (
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import SettingsError

from alerts.acklinks import AckLinkConfig
from alerts.config import AlertsConfig
from core.db import sqlite_file
from core.settings import BaseAppSettings, BusConfig, ConfigFileError, DatabaseConfig, Section
from listener.config import ListenerConfig
from sentiment.config import ScorerConfig
from sentiment.detector.config import DetectorConfig

KeyRole = Literal[
    "viewer", "responder", "customer_service", "pr", "legal", "executive", "admin"
]  # what an API key may do (see api/auth.py)


SQLITE_WITH_KAFKA = (
    "bus.kind is kafka but the database is a SQLite file: only processes on this machine "
    "share it (each other machine keeps incidents, deliveries and detector state of its "
    "own); set CRISISWATCH_DATABASE__URL to PostgreSQL for distributed mode"
)


class ApiKeyConfig(Section):
    """One API key: the key itself, or (better) its SHA-256 from ``crisiswatch keys hash``."""

    name: str = Field(min_length=1, max_length=100)
    key: SecretStr | None = None
    key_sha256: str | None = Field(
        None, pattern=r"^[0-9a-fA-F]{64}$", description="hex SHA-256 of the key"
    )
    role: KeyRole
    watches: list[str] | None = Field(
        None, min_length=1, description="watch ids this key may see and act on; unset = all"
    )

    @field_validator("key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("API keys must be at least 16 characters")
        return value

    @model_validator(mode="after")
    def _one_of_key_or_digest(self) -> ApiKeyConfig:
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError("give exactly one of 'key' and 'key_sha256'")
        return self

    def digest(self) -> bytes:
        if self.key_sha256 is not None:
            return bytes.fromhex(self.key_sha256)
        assert self.key is not None
        return hashlib.sha256(self.key.get_secret_value().encode()).digest()


class AuthThrottleConfig(Section):
    """Failed authentications per client address before it is locked out (429)."""

    max_failures: int = Field(10, ge=1, le=10_000)
    window_s: float = Field(60.0, gt=0, le=86_400)
    lockout_s: float = Field(300.0, gt=0, le=86_400)


class ApiConfig(Section):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    public_url: str = Field("http://127.0.0.1:8000", description="base URL used in alert links")
    keys: list[ApiKeyConfig] = Field(default_factory=list)
    auth_throttle: AuthThrottleConfig = Field(default_factory=AuthThrottleConfig)
    max_body_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="largest request body the API reads (413 beyond; signed ingestion has "
        "its own, listener.webhook.max_body_bytes)",
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="bearer token every process's GET /metrics asks for ('Authorization: "
        "Bearer <token>'; /healthz and /readyz stay open); unset = /metrics open",
    )

    @field_validator("metrics_token")
    @classmethod
    def _usable_token(cls, value: SecretStr | None) -> SecretStr | None:
        """At least 16 characters, printable ASCII without spaces (it travels in an HTTP
        header); surrounding whitespace (a Secret file's newline) is dropped, as Prometheus
        drops it from its ``credentials_file``."""
        if value is None:
            return None
        token = value.get_secret_value().strip()
        if len(token) < 16:
            raise ValueError("the metrics token must be at least 16 characters")
        if not all("!" <= ch <= "~" for ch in token):
            raise ValueError(
                "the metrics token must be printable ASCII without spaces (an HTTP header)"
            )
        return SecretStr(token)


class SlackAppConfig(Section):
    """The Slack app whose Ack/Resolve buttons post to ``POST /slack/interactions``."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    signing_secret: SecretStr | None = Field(
        None, description="the app's Signing Secret (Basic Information); unset = endpoint off"
    )
    max_age: int = Field(300, ge=30, le=900, description="oldest request timestamp accepted (s)")


class DrillScheduleConfig(Section):
    """Scheduled crisis drills (``api.drills``): the scenarios take turns, injected into
    ``watch`` (default: the first configured watch) by the process that runs the listener."""

    enabled: bool = Field(False, description="run drills on the schedule")
    cron: str = Field(
        "0 10 1 1,4,7,10 *", description="crontab (minute hour day month weekday): quarterly"
    )
    timezone: str = "UTC"
    watch: str | None = None

    @model_validator(mode="after")
    def _cron(self) -> DrillScheduleConfig:
        try:
            CronTrigger.from_crontab(self.cron, timezone=self.timezone)
        except (ValueError, LookupError) as exc:
            raise ValueError(f"drills.cron/timezone: {exc}") from exc
        return self


class Settings(BaseAppSettings):
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    gc_young_threshold: int = Field(
        10_000,
        ge=0,
        le=10_000_000,
        description="allocations between two runs of Python's garbage collector over young "
        "objects, set by crisiswatch's long-running commands (run and the role commands, "
        "replay, bench; not the classifier's child process). Python's default (700 in "
        "CPython 3.11) cost the embedded process 13 % of its event loop under load; 0 keeps "
        "Python's default",
    )
    bus: BusConfig = Field(default_factory=BusConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    listener: ListenerConfig = Field(default_factory=ListenerConfig)
    scorer: ScorerConfig = Field(default_factory=ScorerConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    ack_links: AckLinkConfig = Field(default_factory=AckLinkConfig)
    slack_app: SlackAppConfig = Field(default_factory=SlackAppConfig)
    drills: DrillScheduleConfig = Field(default_factory=DrillScheduleConfig)

    @model_validator(mode="after")
    def _journal_apart_from_database(self) -> Settings:
        """``bus.journal`` set to the SQLite database's own file (or one of SQLite's files
        beside it) would take the database's lock and overwrite its tables: refused."""
        journal = self.bus.journal
        if journal in ("auto", "off"):
            return self
        database = sqlite_file(self.database.url.get_secret_value())
        if database is None:
            return self
        db = database.resolve()
        taken = {db, *(db.with_name(db.name + end) for end in ("-wal", "-shm", "-journal"))}
        if Path(journal).resolve() in taken:
            raise ValueError(
                f"bus.journal ({journal}) is the SQLite database's own file or one of its "
                "companions: give the journal a file of its own (or 'auto': "
                f"{db.name}.bus-journal beside it)"
            )
        return self


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Load and validate; raises ConfigError with every problem explained.
    ``overrides``: values that win over the file and the environment (a section's dict
    is merged into the section)."""
    try:
        settings = Settings.load(path, **overrides)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, path)) from exc
    except ConfigFileError as exc:
        raise ConfigError(str(exc)) from exc
    except SettingsError as exc:  # an environment variable pydantic-settings cannot parse
        raise ConfigError(_environment_problem(exc)) from exc
    assert isinstance(settings, Settings)
    return settings


def _environment_problem(exc: SettingsError) -> str:
    """What ``SettingsError`` means to an operator: which variables, and why."""
    field = re.search(r'field "([^"]+)"', str(exc))
    prefix = f"CRISISWATCH_{field.group(1)}".upper() if field else "CRISISWATCH_"
    names = sorted(
        n for n in os.environ if n.upper() == prefix or n.upper().startswith(prefix + "__")
    )
    cause = exc.__cause__
    why = f": {cause}" if cause is not None else ""
    return (
        f"environment variable {' or '.join(names) or prefix + '*'}: its value cannot be read"
        f"{why} (a list or a mapping, such as api.keys, is written as JSON: "
        """CRISISWATCH_API__KEYS='[{"name": "pr", "key_sha256": "...", "role": "pr"}]')"""
    )


class ConfigError(ValueError):
    pass


def format_validation_error(exc: ValidationError, path: Path | None) -> str:
    where = str(path) if path else "settings"
    lines = [f"{where}: {exc.error_count()} problem(s)"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not a setting; check the spelling and the section)"
        lines.append(f"  - {loc}: {msg}")
    return "\n".join(lines)
