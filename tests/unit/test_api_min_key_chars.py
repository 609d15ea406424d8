"""The shortest API key is one constant, ``api.auth.MIN_KEY_CHARS``: the config's keys (and
metrics token, ``api.settings``) and ``crisiswatch keys hash`` follow it. Was: 16 written
three times, free to drift apart."""

from __future__ import annotations

import io
import sys

import pytest
from pydantic import ValidationError

import api.auth
import api.settings
from api.cli import main
from api.settings import ApiConfig, ApiKeyConfig

LONGER = 20  # a minimum other than 16: each place follows the constant


def test_settings_take_the_constant_from_auth() -> None:
    assert api.settings.MIN_KEY_CHARS is api.auth.MIN_KEY_CHARS == 16


def test_config_keys_and_metrics_token_follow_the_constant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(api.settings, "MIN_KEY_CHARS", LONGER)
    key = "k" * (LONGER - 1)
    with pytest.raises(ValidationError, match=f"at least {LONGER} characters"):
        ApiKeyConfig(name="a", key=key, role="viewer")
    with pytest.raises(ValidationError, match=f"at least {LONGER} characters"):
        ApiConfig(metrics_token=key)
    ApiKeyConfig(name="a", key="k" * LONGER, role="viewer")


def test_keys_hash_follows_the_constant(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(api.auth, "MIN_KEY_CHARS", LONGER)
    monkeypatch.setattr(sys, "stdin", io.StringIO("k" * (LONGER - 1) + "\n"))
    assert main(["keys", "hash"]) == 2
    assert f"at least {LONGER} characters" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO("k" * LONGER + "\n"))
    assert main(["keys", "hash"]) == 0
