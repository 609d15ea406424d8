"""The warning about a misspelt ``CRISISWATCH_`` variable comes out through the configured
log format (time and level), once: it was printed as a bare line, before logging was set
up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.process_support import REPO_ROOT


def _stderr(tmp_path: Path, config: str, *args: str) -> tuple[int, list[str]]:
    path = tmp_path / "config.yaml"
    path.write_text(config, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRISISWATCH_")}
    env["CRISISWATCH_BUS_KIND"] = "memory"  # one underscore: not a setting
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", *args, str(path)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stderr.splitlines()


@pytest.mark.parametrize(
    ("config", "code"),
    [
        ("bus:\n  kind: memory\n", 0),
        ("bus:\n  kind: nonsense\n", 2),  # the warning is logged when the config is refused
    ],
)
def test_check_config_logs_the_misspelt_variable_once_with_its_level(
    tmp_path: Path, config: str, code: int
) -> None:
    returncode, lines = _stderr(tmp_path, config, "check-config")
    assert returncode == code, lines
    warned = [line for line in lines if "CRISISWATCH_BUS_KIND is not a setting" in line]
    assert len(warned) == 1, lines
    assert " WARNING " in warned[0] and "api.settings: environment variable" in warned[0]


def test_a_service_command_logs_it_once_at_the_configured_format(tmp_path: Path) -> None:
    """``db upgrade`` loads the settings, then sets up logging at their ``log_level``."""
    db = tmp_path / "x.db"
    config = f"database:\n  url: sqlite+aiosqlite:///{db}\nlog_level: INFO\n"
    returncode, lines = _stderr(tmp_path, config, "db", "upgrade", "--config")
    assert returncode == 0, lines
    warned = [line for line in lines if "CRISISWATCH_BUS_KIND is not a setting" in line]
    assert len(warned) == 1, lines
    assert " WARNING " in warned[0]
