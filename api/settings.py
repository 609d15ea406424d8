"""The one settings object, composed from every package's section.

Loaded from a YAML file (``--config``) and ``CRISISWATCH_*`` environment variables
(``CRISISWATCH_DATABASE__URL``, ``CRISISWATCH_BUS__KIND``, ...). Unknown keys are errors.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from apscheduler.triggers.cron import CronTrigger
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import SettingsError

from alerts.acklinks import AckLinkConfig
from alerts.config import AlertsConfig, public_base_url
from api.auth import MIN_KEY_CHARS
from core.db import sqlite_file
from core.settings import (
    BaseAppSettings,
    BusConfig,
    ConfigFileError,
    DatabaseConfig,
    Secret,
    Section,
)
from listener.config import ListenerConfig
from sentiment.config import ScorerConfig
from sentiment.detector.config import DetectorConfig

log = logging.getLogger(__name__)

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
    key: Secret | None = None
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
        if value is not None and len(value.get_secret_value()) < MIN_KEY_CHARS:
            raise ValueError(f"API keys must be at least {MIN_KEY_CHARS} characters")
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
    metrics_token: Secret | None = Field(
        None,
        description="bearer token every process's GET /metrics asks for ('Authorization: "
        "Bearer <token>'; /healthz and /readyz stay open); unset = /metrics open",
    )

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        """The base of every link in alerts: without a scheme (``cw.acme.example``) the
        links were plain text to Slack and mail clients, and no ack link could be followed."""
        return public_base_url(value, "api.public_url")

    @field_validator("keys")
    @classmethod
    def _one_entry_per_key(cls, keys: list[ApiKeyConfig]) -> list[ApiKeyConfig]:
        """A key given twice (its digest, or the key and its digest) would act as the last
        entry alone, whatever role the first gives it; a name given twice makes the audit
        log (which names the key that acted) ambiguous: both refused, naming the entries."""
        problems = []
        for what, values in (
            ("key (the same SHA-256)", [entry.digest() for entry in keys]),
            ("name", [entry.name for entry in keys]),
        ):
            first: dict[object, int] = {}
            for index, value in enumerate(values):
                earlier = first.setdefault(value, index)
                if earlier != index:
                    a, b = keys[earlier], keys[index]
                    problems.append(
                        f"api.keys.{earlier} ({a.name!r}, {a.role}) and api.keys.{index} "
                        f"({b.name!r}, {b.role}) have the same {what}"
                    )
        if problems:
            raise ValueError(
                "; ".join(problems) + ": each key needs one entry, with a name of its own "
                "(the audit log names the key that acted; to rotate one, add the new key "
                "under a new name)"
            )
        return keys

    def scope_warnings(self, watches: Iterable[str]) -> list[str]:
        """A key scoped to a watch that ``watches`` (the configured watch ids) lacks: shown
        by ``crisiswatch check-config`` and logged at start; not an error (a watch may be
        removed while keys still name it: they see nothing of it)."""
        known = set(watches)
        lines = []
        for key in self.keys:
            unknown = sorted(set(key.watches or ()) - known)
            if unknown:
                lines.append(f"key {key.name!r} is scoped to unknown watches: {', '.join(unknown)}")
        return lines

    @field_validator("metrics_token")
    @classmethod
    def _usable_token(cls, value: SecretStr | None) -> SecretStr | None:
        """At least ``MIN_KEY_CHARS`` (16) characters, printable ASCII without spaces (it
        travels in an HTTP header); surrounding whitespace (a Secret file's newline) is
        dropped at load (``Secret``), as Prometheus drops it from its ``credentials_file``."""
        if value is None:
            return None
        token = value.get_secret_value()
        if len(token) < MIN_KEY_CHARS:
            raise ValueError(f"the metrics token must be at least {MIN_KEY_CHARS} characters")
        if not all("!" <= ch <= "~" for ch in token):
            raise ValueError(
                "the metrics token must be printable ASCII without spaces (an HTTP header)"
            )
        return value


class SlackAppConfig(Section):
    """The Slack app whose Ack/Resolve buttons post to ``POST /slack/interactions``."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    signing_secret: Secret | None = Field(
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
    timezone: str = Field(
        "UTC", min_length=1, description="IANA name ('', which APScheduler reads as the host's)"
    )
    watch: str | None = None

    @model_validator(mode="after")
    def _cron(self) -> DrillScheduleConfig:
        try:
            trigger = CronTrigger.from_crontab(self.cron, timezone=self.timezone)
        except (ValueError, LookupError) as exc:
            raise ValueError(f"drills.cron/timezone: {exc}") from exc
        if trigger.get_next_fire_time(None, datetime.now(UTC)) is None:  # 31 February
            raise ValueError(f"drills.cron {self.cron!r} never fires: no such date")
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
    def _drill_watch_configured(self) -> Settings:
        """Scheduled drills on a watch that is not configured would fail at each firing
        (a log line once a quarter): refused at start-up and by ``check-config``. The
        ``demo`` watch is the one ``crisiswatch run --demo`` adds."""
        watch = self.drills.watch
        ids = [w.id for w in self.listener.watches]
        if self.drills.enabled and watch is not None and watch not in ids and watch != "demo":
            raise ValueError(
                f"drills.watch {watch!r} is not a configured watch (listener.watches: "
                f"{', '.join(ids) or 'none'}): no scheduled drill could run"
            )
        return self

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
    for warning in environment_warnings(os.environ):
        log.warning("%s", warning)
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


class InputError(ConfigError):
    """A command's input file (a replay or bench stream, a truth CSV) is missing or holds
    nothing usable: the command's input is at fault, not the configuration (the CLI says
    "input error"; a ``ConfigError`` still, with its exit status)."""


ENV_PREFIX = "CRISISWATCH_"
NOT_SETTINGS = frozenset({"data", "skip_browser", "chromium", "chromedriver", "console_screenshot"})
"""Variables of the project's tools, not settings (``CRISISWATCH_DATA``, the tests'
``CRISISWATCH_TEST_*``, ...): never warned about."""


SERVICE_LINK = re.compile(
    r"^[A-Z0-9_]+_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?"
    r"|PORT(_[0-9]+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)$"
)
"""The variables Kubernetes gives every pod for each Service of its namespace:
``crisiswatch-api`` gives ``CRISISWATCH_API_SERVICE_HOST``, ``CRISISWATCH_API_PORT``, ..."""


def environment_warnings(environ: Mapping[str, str]) -> list[str]:
    """A ``CRISISWATCH_*`` variable whose first part names no setting is ignored by
    pydantic-settings (``CRISISWATCH_BUS_KIND``: one underscore): one line each, with the
    nearest setting's variable. A misspelling below a section is an error already. The
    value is never shown: it may be a secret."""
    top = set(Settings.model_fields)
    two_levels = [
        f"{name}__{sub}"
        for name, field in Settings.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        for sub in field.annotation.model_fields
    ]
    lines = []
    for variable in sorted(environ):
        if not variable.upper().startswith(ENV_PREFIX):
            continue
        parts = variable[len(ENV_PREFIX) :].lower().split("__")
        if parts[0] in top or parts[0] in NOT_SETTINGS or parts[0].startswith("test_"):
            continue
        if len(parts) == 1 and SERVICE_LINK.match(variable.upper()):
            continue
        head = "__".join(parts[:2])
        near = difflib.get_close_matches(head, [*top, *two_levels], n=1, cutoff=0.75)
        if near:
            suggestion = "__".join([near[0], *parts[2:]]) if "__" in near[0] else near[0]
            hint = f"did you mean {ENV_PREFIX}{suggestion.upper()}?"
        else:
            hint = "a setting's is CRISISWATCH_ and its path, levels joined by __: "
            hint += "CRISISWATCH_BUS__KIND sets bus.kind"
        lines.append(f"environment variable {variable} is not a setting and is ignored ({hint})")
    return lines


def format_validation_error(exc: ValidationError, path: Path | None) -> str:
    where = str(path) if path else "settings"
    whole = exc.title == Settings.__name__  # (replay validates a DetectorConfig alone)
    variables = _variable_paths(os.environ) if whole else {}
    lines = [f"{where}: {exc.error_count()} problem(s)"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = _explain(err)
        if err["type"] == "extra_forbidden" and whole and err["loc"]:
            near = difflib.get_close_matches(
                str(err["loc"][-1]), _keys_at(Settings, err["loc"][:-1]), n=1, cutoff=0.6
            )
            if near:
                msg += f"; did you mean {near[0]!r}?"
        note = _variable_note(err["loc"], variables)
        if err["type"] == "list_type" and note.startswith(" (set in it"):
            note += "; a list is set whole, as JSON"
        msg += note
        lines.append(f"  - {loc}: {msg}")
    return "\n".join(lines)


def _explain(err: Any) -> str:
    """pydantic's message in an operator's words where it is cryptic. The input is never
    shown (it may be a secret)."""
    kind, msg = err["type"], str(err["msg"])
    if kind == "extra_forbidden":
        return "unknown key (not a setting; check the spelling and the section)"
    if kind == "value_error" and "error" in err.get("ctx", {}):
        return str(err["ctx"]["error"])  # without pydantic's "Value error, " prefix
    if kind == "union_tag_not_found":
        key = err.get("ctx", {}).get("discriminator", "type").strip("'")
        return f"the {key!r} key is missing" + (
            " (a channel's type: " + ", ".join(_channel_types()) + ")" if key == "type" else ""
        )
    if kind == "time_delta_parsing":
        return (
            "not a duration: write seconds (300), HH:MM:SS (00:05:00) or ISO 8601 "
            "(PT5M, PT2H, P1D); units such as 5m or 10s are not read"
        )
    value = err.get("input")
    if kind == "string_type" and isinstance(value, bool):
        words = ("no", "off") if value is False else ("yes", "on")
        return (
            f"{msg}: YAML reads an unquoted '{words[0]}' or '{words[1]}' as {str(value).lower()}; "
            f'quote the word ("{words[0]}") where it is meant'
        )
    if kind == "string_type" and isinstance(value, int | float):
        return f"{msg}: YAML reads unquoted digits as a number; quote the value"
    return msg


def _channel_types() -> tuple[str, ...]:
    from alerts.channels import AnyChannelConfig

    return tuple(
        tag for model in get_args(AnyChannelConfig) for tag in _literal_tags(model, "type")
    )


def _literal_tags(model: Any, field: str) -> tuple[Any, ...]:
    info = model.model_fields.get(field) if _is_model(model) else None
    if info is None or get_origin(info.annotation) is not Literal:
        return ()
    return get_args(info.annotation)


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _options(tp: Any) -> list[Any]:
    """The types a value of ``tp`` may be: ``Annotated`` and unions unwrapped."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _options(get_args(tp)[0])
    if origin is Union or type(tp).__name__ == "UnionType":
        return [leaf for member in get_args(tp) for leaf in _options(member)]
    return [tp]


def _step(tp: Any, part: str | int) -> list[tuple[Any, bool]]:
    """The types found one step (``part`` of an error's location) into ``tp``, each with
    whether ``part`` was a union member's tag (a step of pydantic's, not of the data)."""
    found: list[tuple[Any, bool]] = []
    for option in _options(tp):
        origin = get_origin(option)
        if _is_model(option):
            fields = {info.alias or name: info for name, info in option.model_fields.items()}
            if part in fields:
                found.append((fields[part].annotation, False))
            elif part == option.__name__ or part in _literal_tags(option, "type"):
                found.append((option, True))
        elif origin in (list, tuple, set, frozenset) and isinstance(part, int):
            found.extend((arg, False) for arg in get_args(option)[:1])
        elif origin is dict:
            found.extend((arg, False) for arg in get_args(option)[1:2])
    return found


def _walk(root: Any, loc: tuple[str | int, ...]) -> tuple[list[Any], list[str]]:
    """The types at ``loc`` (empty when unsure), and ``loc`` without union tags, lower
    case (the path an environment variable names)."""
    types, path = [root], []
    for part in loc:
        found = [step for tp in types for step in _step(tp, part)]
        if not (found and all(tag for _, tag in found)):
            path.append(str(part).lower())
        types = [tp for tp, _ in found]
    return types, path


def _keys_at(root: Any, loc: tuple[str | int, ...]) -> list[str]:
    """The keys a mapping at ``loc`` accepts (for a did-you-mean; empty when unsure)."""
    types, _ = _walk(root, loc)
    return sorted(
        {
            info.alias or name
            for tp in types
            for option in _options(tp)
            if _is_model(option)
            for name, info in option.model_fields.items()
        }
    )


def _variable_paths(environ: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """The settings path each ``CRISISWATCH_*`` variable sets -> its name."""
    return {
        tuple(name[len(ENV_PREFIX) :].lower().split("__")): name
        for name in environ
        if name.upper().startswith(ENV_PREFIX)
    }


def _variable_note(loc: tuple[str | int, ...], variables: dict[tuple[str, ...], str]) -> str:
    """Which variables set the value at ``loc`` (or a section holding it, or, for a
    section's own problem, values in it): the file's name heads the message, and the
    operator would look for the value there in vain."""
    if not loc or not variables:
        return ""
    _, steps = _walk(Settings, loc)
    above = [path for path in variables if tuple(steps[: len(path)]) == path]
    if above:
        return f" (from environment variable {variables[max(above, key=len)]})"
    below = sorted(
        name
        for path, name in variables.items()
        if len(steps) >= 2 and path[: len(steps)] == tuple(steps)
    )
    if below:
        return f" (set in it by environment variable {', '.join(below)})"
    return ""
