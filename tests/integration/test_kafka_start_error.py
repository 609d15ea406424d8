"""A Kafka bus that cannot start (no broker at ``bus.bootstrap_servers``) is something an
operator fixes: one CRITICAL line naming the address, exit 3, no traceback (it was a
``RuntimeError`` outside ``api.app.START_ERRORS``: a full traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from core.db import upgrade_database_blocking
from tests.process_support import child_env
from tests.support import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_a_kafka_bus_that_cannot_start_is_one_line_and_exit_3(tmp_path: Path) -> None:
    nobody = free_port()  # nothing listens there
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'cw.db'}"
    upgrade_database_blocking(db_url)  # (a role checks its database's schema first)
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database": {"url": db_url},
                "bus": {"kind": "kafka", "bootstrap_servers": f"127.0.0.1:{nobody}"},
            }
        ),
        encoding="utf-8",
    )
    argv = ["detector", "--config", str(config), "--port", str(free_port())]
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        env=child_env(),
    )
    assert done.returncode == 3, done.stderr
    said = done.stdout + done.stderr
    assert f"crisiswatch cannot start: cannot start the Kafka bus at 127.0.0.1:{nobody}" in said
    assert "Traceback" not in said, said
