"""The broker start helper shared by the tests and the benchmarks fails clearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.tansu import TansuError, free_port, wait_accepting


def test_a_broker_that_exits_at_start_is_reported_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "tansu.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "print('bind: address in use'); raise SystemExit(3)"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    with pytest.raises(TansuError, match="exited with 3") as caught:
        wait_accepting(proc, free_port(), log, timeout=30)
    assert "bind: address in use" in str(caught.value)


def test_a_broker_that_never_listens_times_out(tmp_path: Path) -> None:
    log = tmp_path / "tansu.log"
    log.write_text("still starting\n")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with pytest.raises(TansuError, match="did not accept connections") as caught:
            wait_accepting(proc, free_port(), log, timeout=0.3)
        assert "still starting" in str(caught.value)
    finally:
        proc.kill()
        proc.wait()
