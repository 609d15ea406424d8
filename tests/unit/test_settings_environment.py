"""An environment variable the settings cannot parse is a configuration error that names
it, never a traceback (``check-config`` and every start-up)."""

from __future__ import annotations

import pytest

from api.cli import main
from api.settings import ConfigError, load_settings


def test_a_variable_that_is_not_json_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRISISWATCH_API__KEYS", "notjson")
    with pytest.raises(ConfigError, match="CRISISWATCH_API__KEYS: its value cannot be read"):
        load_settings()


def test_check_config_says_so_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CRISISWATCH_API__KEYS", "[{")
    assert main(["check-config", "deploy/config/crisiswatch.yaml"]) == 2
    err = capsys.readouterr().err
    assert "CRISISWATCH_API__KEYS" in err and "written as JSON" in err
    assert "Traceback" not in err
