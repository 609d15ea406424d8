"""Settings machinery: a YAML file plus environment variables, validated by pydantic.

The full settings object is composed in ``api.settings`` (the composition root); this
module holds the shared sections and the loading rules. Environment variables win over
the file: ``CRISISWATCH_DATABASE__URL=...`` sets ``database.url``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


def _stripped_secret(value: Any, info: ValidationInfo) -> Any:
    """A secret without its surrounding whitespace: the final newline of a Kubernetes
    Secret made ``--from-file`` and read as a variable, or of ``$(cat file)``, would
    otherwise be part of an HMAC key (every signature silently wrong) or of a credential
    (refused by the platform). A secret of whitespace only is refused, not taken as unset.
    Runs before the field's own validators, which see the stripped value."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not isinstance(value, str):
        return value  # (refused as SecretStr would refuse it)
    stripped = value.strip()
    if not stripped:
        raise ValueError(
            f"{info.field_name or 'the secret'} is empty or only whitespace (value not "
            "shown): give the secret, or leave the setting out where it is optional"
        )
    return stripped


Secret = Annotated[SecretStr, BeforeValidator(_stripped_secret)]
"""A secret setting (a key, token, password or secret URL): read with its surrounding
whitespace dropped, refused when nothing else is left. Every config section's secrets use
it, so that they are all read the same way."""


KAFKA_REQUEST_TIMEOUT_MS = 40_000  # the Kafka bus's request timeout (aiokafka's default)


class BusConfig(Section):
    kind: Literal["memory", "kafka"] = "memory"
    capacity: int = Field(
        2048,
        ge=1,
        description="memory bus: events a group may lag. At least twice the scorer's batch "
        "(scorer.batch_size), so that its next batch can wait, whole, behind the one being "
        "scored and be classified while that one is published (the bus's prefetch)",
    )
    journal: str = Field(
        "auto",
        min_length=1,
        description="memory bus, embedded process: a SQLite file that keeps the events in "
        "flight, so a crash or a kill loses none (core.bus.journal): 'auto' (beside the "
        "database when that is a SQLite file, else off), 'off', or a file path",
    )
    journal_synchronous: Literal["NORMAL", "FULL"] = Field(
        "NORMAL",
        description="memory bus journal: NORMAL survives a killed process; FULL also a power "
        "loss (an fsync per write)",
    )
    bootstrap_servers: str = "localhost:9092"
    topic_prefix: str = Field("crisiswatch.", description="kafka: prefix of every topic")
    partitions: int = Field(6, ge=1, description="kafka: partitions of topics it creates")
    replication_factor: int = Field(1, ge=1)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI"] | None = Field(
        None,
        description="kafka, SASL_*: PLAIN when unset; PLAIN and SCRAM with bus.sasl_username "
        "and bus.sasl_password; GSSAPI (Kerberos: service name kafka, the ticket cache or "
        "keytab of the process; needs the gssapi package) without them",
    )
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    max_dead_letters_per_minute: int = Field(
        100, ge=0, description="per topic and group; one more halts that consumer (0: no limit)"
    )
    max_failures_in_a_row: int = Field(
        10,
        ge=0,
        description="per topic and group: events in a row whose handler kept failing through "
        "every retry; one more halts that consumer instead of being dead-lettered (a broken "
        "dependency, not bad events: with retries, it dead-letters too slowly for the "
        "per-minute limit). 0: no limit",
    )
    stop_timeout: float = Field(
        15.0, gt=0, description="seconds stop() may take: drain the batch in flight, commit, close"
    )
    # Consumer group timing (kafka). A member that stops heartbeating (kill -9, a lost
    # host) keeps its partitions until the broker gives up on it after
    # ``session_timeout_ms``: that is most of the recovery time after a crash. Shorter
    # recovers faster but risks false rebalances when a healthy process stalls (GC, CPU
    # starvation, a busy event loop) for longer than the session. A clean stop (SIGTERM)
    # leaves the group at once and does not wait for it.
    session_timeout_ms: int = Field(
        10_000,
        gt=0,
        description="kafka: a member silent this long is dropped and its partitions reassigned "
        "(the broker bounds it: group.min/max.session.timeout.ms, 6000 to 1800000 on Apache "
        "Kafka by default)",
    )
    heartbeat_interval_ms: int = Field(
        3_000, gt=0, description="kafka: heartbeat period; at most a third of the session timeout"
    )
    max_poll_interval_ms: int = Field(
        300_000,
        gt=0,
        description="kafka: a consumer that fetches nothing for this long (a handler stuck on "
        "one batch) leaves its group (a halted one leaves at once)",
    )
    rebalance_timeout_ms: int | None = Field(
        None,
        gt=0,
        description="kafka: how long a rebalance waits for members to rejoin (each finishes and "
        "commits its batch in flight first); default: session_timeout_ms",
    )

    @field_validator("journal", mode="before")
    @classmethod
    def _journal_words(cls, value: Any) -> Any:
        """YAML reads an unquoted ``off`` as false; ``Auto``/``OFF`` mean the words too."""
        if value is False:
            return "off"
        if isinstance(value, str) and value.strip().lower() in ("auto", "off"):
            return value.strip().lower()
        return value

    @model_validator(mode="after")
    def _sasl_credentials(self) -> BusConfig:
        """PLAIN and SCRAM log in with a user and a password: without them aiokafka refused
        to build a client at start (a traceback) or every login failed."""
        sasl = self.security_protocol.startswith("SASL")
        password = self.sasl_mechanism != "GSSAPI"  # PLAIN (the default) and SCRAM
        if sasl and password and (self.sasl_username is None or self.sasl_password is None):
            raise ValueError(
                f"bus.security_protocol {self.security_protocol} with sasl_mechanism "
                f"{self.sasl_mechanism or 'PLAIN'} needs bus.sasl_username and "
                "bus.sasl_password"
            )
        return self

    @field_validator("sasl_mechanism", mode="before")
    @classmethod
    def _mechanism_case(cls, value: Any) -> Any:
        """Kafka's names are upper case; ``scram-sha-256`` means the same."""
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _group_timing(self) -> BusConfig:
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError(
                f"bus.heartbeat_interval_ms ({self.heartbeat_interval_ms}) must be at most a "
                f"third of bus.session_timeout_ms ({self.session_timeout_ms}): one late "
                "heartbeat would get a healthy member dropped from its group"
            )
        if self.group_rebalance_timeout_ms >= KAFKA_REQUEST_TIMEOUT_MS:
            which = (
                f"bus.rebalance_timeout_ms ({self.rebalance_timeout_ms})"
                if self.rebalance_timeout_ms is not None
                else f"bus.session_timeout_ms ({self.session_timeout_ms}), also the rebalance "
                "timeout while bus.rebalance_timeout_ms is not set,"
            )
            raise ValueError(
                f"{which} must be below {KAFKA_REQUEST_TIMEOUT_MS}: the client's request "
                "timeout also bounds a join, which the broker may hold for the rebalance timeout"
            )
        return self

    @property
    def group_rebalance_timeout_ms(self) -> int:
        """``rebalance_timeout_ms``, else ``session_timeout_ms`` (aiokafka's default)."""
        return self.rebalance_timeout_ms or self.session_timeout_ms


class DatabaseConfig(Section):
    url: Secret = SecretStr("sqlite+aiosqlite:///./var/crisiswatch.db")
    echo: bool = False
    pool_size: int = Field(5, ge=1)

    @field_validator("url")
    @classmethod
    def _port_is_a_number(cls, value: SecretStr) -> SecretStr:
        """SQLAlchemy raises a bare ValueError (a traceback, quoting the text) for a port
        that is not a number: often part of a password whose ``@``, ``:`` or ``/`` was not
        percent-encoded. Said here, without the URL. (What else makes a URL unusable is
        checked where it is used: ``api.cli``.)"""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value.get_secret_value())
        except ArgumentError:
            return value  # not a URL at all: said by the command's own check
        except ValueError:
            raise ValueError(
                "its port is not a number (value not shown: it may hold a password); a "
                "password or user name holding @ : / # ? % must be percent-encoded "
                "(@ is %40, : is %3A, / is %2F)"
            ) from None
        if url.drivername == "postgresql+asyncpg":
            unknown = sorted(set(url.query) - _asyncpg_options())
            if unknown:
                raise ValueError(
                    f"asyncpg takes no connection option {', '.join(map(repr, unknown))} "
                    "(value not shown: it may hold a password); libpq's sslmode is asyncpg's "
                    "ssl (?ssl=require)"
                )
        return value


def _asyncpg_options() -> set[str]:
    """The ``?name=value`` options of a ``postgresql+asyncpg`` URL: SQLAlchemy's own and
    what ``asyncpg.connect`` takes (another one failed at the first connect, a TypeError
    traceback: ``?sslmode=require``, libpq's word)."""
    import inspect

    import asyncpg  # type: ignore[import-untyped]

    taken = set(inspect.signature(asyncpg.connect).parameters)
    return (taken - {"dsn", "loop", "connection_class", "record_class"}) | {
        "prepared_statement_cache_size",
        "prepared_statement_name_func",
    }


class YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML config file named by the ``_config_file`` init argument."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = load_yaml(path) if path else {}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class ConfigFileError(ValueError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping: PyYAML keeps the
    last one, so a section written twice silently lost the first one's settings. A merge
    key's (``<<: *anchor``) entries may still be overridden by the mapping's own keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                line = first_lines.setdefault(key, key_node.start_mark.line)
            except TypeError:  # an unhashable key: the constructor below refuses it
                continue
            if line != key_node.start_mark.line:
                shown = repr(key) if len(repr(key)) <= 60 else repr(key)[:57] + "..."
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {shown} (first given at line {line + 1}): the later one "
                    "would silently replace the earlier; merge the two",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(f"cannot read config file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigFileError(
            f"cannot read config file {path}: not UTF-8 text (byte {exc.start} is "
            f"{exc.object[exc.start : exc.start + 1]!r}); save it as UTF-8"
        ) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        # Not str(exc): PyYAML quotes the offending line, which may hold a secret.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        context = getattr(exc, "context", None)  # PyYAML's own words ("while parsing ...")
        if context:
            problem = f"{context}, {problem}"
        if "'\\t'" in problem:
            problem += " (YAML does not allow tabs in indentation: indent with spaces)"
        raise ConfigFileError(f"{path} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}: the top level must be a mapping of sections")
    return data


class BaseAppSettings(BaseSettings):
    """Settings loaded from (highest first): init arguments, environment, YAML file."""

    model_config = SettingsConfigDict(
        env_prefix="CRISISWATCH_",
        env_nested_delimiter="__",
        extra="forbid",
        hide_input_in_errors=True,  # a rejected value may be a secret: never echo it
        # CRISISWATCH_SCORER__EMBEDDER=null: the documented null of an optional setting
        # (else it is the string "null", refused or, as a name, taken for one)
        env_parse_none_str="null",
    )

    _yaml_path: ClassVar[Path | None] = None

    @classmethod
    def load(cls, path: Path | None = None, **overrides: Any) -> BaseAppSettings:
        cls._yaml_path = path
        try:
            return cls(**overrides)
        finally:
            cls._yaml_path = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            YamlSource(settings_cls, cls._yaml_path),
            file_secret_settings,
        )
