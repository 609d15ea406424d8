"""Every configuration deploy/ ships passes ``crisiswatch check-config`` as an operator runs
it: each file of deploy/config alone, and the Kubernetes ConfigMap (and the compose file)
with the Secret's variables set, as the pods get them. The output never shows a secret."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.cli import main

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _k8s(kind: str) -> dict[str, Any]:
    docs = [
        doc
        for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if doc and doc.get("kind") == kind
    ]
    (doc,) = docs
    return doc


def _secret_variables() -> dict[str, str]:
    data: dict[str, str] = _k8s("Secret")["stringData"]
    return data


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.upper().startswith("CRISISWATCH_")]:
        monkeypatch.delenv(name)


def _check(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    code = main(["check-config", str(path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"{path}: OK" in out
    return out + err


@pytest.mark.parametrize("path", sorted((DEPLOY / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_each_shipped_config_file_passes(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _check(path, capsys)


@pytest.mark.parametrize("source", ["k8s ConfigMap", "deploy/config/crisiswatch.yaml"])
def test_the_deployed_config_passes_with_the_secrets_variables(
    source: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    if source == "k8s ConfigMap":
        path = tmp_path / "crisiswatch.yaml"
        path.write_text(_k8s("ConfigMap")["data"]["crisiswatch.yaml"], encoding="utf-8")
    else:
        path = DEPLOY / "config" / "crisiswatch.yaml"
    secrets = _secret_variables()
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    with caplog.at_level(logging.WARNING, logger="api.settings"):
        text = _check(path, capsys)
    assert "database: postgresql+asyncpg" in text
    assert "/metrics: behind api.metrics_token" in text
    assert "is not a setting" not in caplog.text  # every variable of the Secret is read
    for name, value in secrets.items():
        if name != "CRISISWATCH_API__KEYS":  # (a digest, and named in the output)
            assert value not in text, f"{name}'s value is shown"
    assert "REPLACE-ME@" not in text  # the database password
