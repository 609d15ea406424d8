"""A key scoped to a watch that is not configured is warned about where the API starts
(``crisiswatch run``, ``crisiswatch api``), in the words ``crisiswatch check-config`` uses:
only check-config said it, and an operator who never ran it saw nothing."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from api import serve
from api.cli import main
from api.runtime import Runtime
from api.settings import load_settings
from core.bus.journal import JournalError
from tests.support import free_port

WARNING = "key 'acme-pr' is scoped to unknown watches: gone"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.upper().startswith("CRISISWATCH_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(
        f"database:\n  url: sqlite+aiosqlite:///{tmp_path}/cw.db\n"
        "listener:\n  watches:\n    - {id: acme, brand: Acme, terms: [acme]}\n"
        "api:\n  keys:\n"
        "    - {name: acme-pr, key: acme-pr-key-0123456789, role: pr, watches: [acme, gone]}\n"
        "    - {name: ops, key: ops-key-0123456789abcdef, role: admin}\n"
    )
    return path


def _start(config: Path, roles: tuple[str, ...] | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Serve ``roles`` as the CLI does, up to the runtime's start (made to fail at once)."""

    async def start(self: Runtime) -> None:
        raise JournalError("stopped here by the test")

    monkeypatch.setattr(Runtime, "start", start)
    with pytest.raises(SystemExit):  # (the start failed: uvicorn's exit status)
        serve.serve_roles(
            load_settings(config), roles=roles, demo=False, host="127.0.0.1", port=free_port()
        )


def test_the_api_start_warns_of_a_key_scoped_to_an_unknown_watch(
    config: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for roles in (None, ("api",)):  # crisiswatch run, crisiswatch api
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="api.serve"):
            _start(config, roles, monkeypatch)
        said = [r for r in caplog.records if r.name == "api.serve"]
        assert [(r.levelno, r.getMessage()) for r in said] == [(logging.WARNING, WARNING)]


def test_a_process_without_the_api_does_not(
    config: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="api.serve"):
        _start(config, ("listener",), monkeypatch)
    assert WARNING not in caplog.text


def test_check_config_says_the_same(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"    {WARNING}\n" in out
    assert "key 'ops'" not in out
