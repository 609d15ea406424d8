"""Settings that ``crisiswatch check-config`` used to accept and that then broke at start
(a traceback) or silently did nothing: each is refused now, in one line, without the value."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from api.cli import main
from api.settings import ApiConfig, DrillScheduleConfig
from core.settings import BusConfig, DatabaseConfig


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.upper().startswith("CRISISWATCH_")]:
        monkeypatch.delenv(name)


def _check_config(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    assert main(["check-config", str(path)]) == 2
    return capsys.readouterr().err


# -- bus: SASL -----------------------------------------------------------------------------


def test_a_sasl_mechanism_kafka_does_not_know_is_refused_by_check_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Any text passed check-config, then every role died at start with aiokafka's
    ValueError in a traceback. Lower case is read as Kafka's upper-case name."""
    err = _check_config(
        tmp_path,
        "bus: {kind: kafka, security_protocol: SASL_SSL, sasl_mechanism: SCRAM-SHA-1,\n"
        "      sasl_username: cw, sasl_password: a-long-password}\n",
        capsys,
    )
    assert "bus.sasl_mechanism" in err and "SCRAM-SHA-256" in err
    bus = BusConfig(
        security_protocol="SASL_SSL",
        sasl_mechanism=" scram-sha-512",  # type: ignore[arg-type]
        sasl_username="cw",
        sasl_password="a-long-password",  # type: ignore[arg-type]
    )
    assert bus.sasl_mechanism == "SCRAM-SHA-512"


def test_sasl_without_its_credentials_is_refused() -> None:
    """PLAIN (the default) and SCRAM need a user and a password: without them aiokafka
    refused to build a client at start (PLAIN) or every login failed (SCRAM)."""
    for missing in ({"sasl_username": "cw"}, {"sasl_password": "a-long-password"}, {}):
        with pytest.raises(ValidationError, match=r"sasl_username and bus\.sasl_password"):
            BusConfig(security_protocol="SASL_PLAINTEXT", **missing)  # type: ignore[arg-type]
    BusConfig()  # PLAINTEXT needs neither
    # Kerberos logs in with the process's ticket or keytab: no user, no password
    BusConfig(security_protocol="SASL_SSL", sasl_mechanism="GSSAPI")


# -- database.url: connection options the driver does not take -----------------------------


def test_a_libpq_option_in_an_asyncpg_url_is_refused_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``?sslmode=require`` (libpq's word; asyncpg's is ``ssl``) passed check-config, then
    ``db upgrade`` and every process failed at the first connect with a TypeError
    traceback. The URL (its password) is not shown."""
    url = "postgresql+asyncpg://cw:pa55word@db.example/cw?sslmode=require"
    err = _check_config(tmp_path, f"database: {{url: '{url}'}}\n", capsys)
    assert "database.url" in err and "'sslmode'" in err and "ssl=require" in err
    assert "pa55word" not in err
    DatabaseConfig(url="postgresql+asyncpg://cw@db/cw?ssl=require&command_timeout=10")  # type: ignore[arg-type]
    DatabaseConfig(url="postgresql+asyncpg://cw@db/cw?prepared_statement_cache_size=0")  # type: ignore[arg-type]


# -- api.public_url --------------------------------------------------------------------------


def test_a_public_url_without_a_scheme_is_refused() -> None:
    """It is the base of every link in alerts: ``cw.acme.example`` gave links Slack and
    mail clients show as plain text (and an ack link nobody can follow)."""
    for url in ("cw.acme.example", "cw.acme.example:8000/", "ftp://cw.acme.example", "https://"):
        with pytest.raises(ValidationError, match=r"api\.public_url must be an http"):
            ApiConfig(public_url=url)
    ApiConfig(public_url="https://cw.acme.example/base/")


def test_the_alerts_public_url_without_a_scheme_is_refused() -> None:
    """The same base for the links the alerter writes (``alerts.public_url``)."""
    from alerts.config import AlertsConfig

    for url in ("cw.acme.example", "ftp://cw.acme.example", "https://"):
        with pytest.raises(ValidationError, match=r"alerts\.public_url must be an http"):
            AlertsConfig(public_url=url)
    assert AlertsConfig(public_url="http://cw.acme.example").public_url == "http://cw.acme.example"
    assert AlertsConfig().public_url is None


# -- drills ----------------------------------------------------------------------------------


def test_a_drill_schedule_that_never_fires_is_refused() -> None:
    """``0 10 31 2 *`` (the 31st of February) was accepted: drills enabled, none ever ran."""
    with pytest.raises(ValidationError, match="never fires"):
        DrillScheduleConfig(cron="0 10 31 2 *")
    DrillScheduleConfig(cron="0 10 29 2 *")  # leap years: it fires


def test_an_empty_drill_timezone_is_refused_not_taken_for_the_hosts() -> None:
    """APScheduler reads an empty zone as the host's local one: the drills' hour followed
    whatever zone the machine (a container image) had."""
    with pytest.raises(ValidationError, match="timezone"):
        DrillScheduleConfig(timezone="")
