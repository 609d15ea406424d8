"""The serving commands take their HTTP port before the start-up: one taken is one clear line
and exit 3, before any migration, model or source; the port taken is served on."""

from __future__ import annotations

import errno
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api import serve
from api.runtime import Runtime
from api.settings import Settings
from core.bus.journal import JournalError
from core.db import upgrade_database_blocking
from tests.support import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
CRISISWATCH = [sys.executable, "-m", "api.cli"]


@pytest.fixture
def occupied() -> Iterator[int]:
    """A port another server listens on (SO_REUSEADDR, as uvicorn's own)."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def _config(tmp_path: Path, *, migrated: bool = False) -> Path:
    """A config on a SQLite file; ``migrated``: as ``crisiswatch db upgrade`` leaves it, as
    a role (``api``) started alone needs it."""
    if migrated:
        upgrade_database_blocking(f"sqlite+aiosqlite:///{tmp_path}/cw.db")
    config = tmp_path / "c.yaml"
    config.write_text(
        f"database:\n  url: sqlite+aiosqlite:///{tmp_path}/cw.db\nlistener:\n  watches: []\n"
    )
    return config


def test_a_port_in_use_fails_before_the_start_up(
    occupied: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    started: list[Runtime] = []

    async def start(self: Runtime) -> None:
        started.append(self)

    monkeypatch.setattr(Runtime, "start", start)
    with caplog.at_level(logging.CRITICAL, logger="api.serve"):
        code = serve.serve_roles(
            Settings(), roles=("api",), demo=False, host="127.0.0.1", port=occupied
        )
    assert code == 3
    assert not started
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert f"cannot listen on 127.0.0.1:{occupied}: the port is already in use" in line
    assert "another crisiswatch" in line and "--port" in line and "api.port" in line


def test_crisiswatch_run_on_a_port_in_use_is_one_line_and_exit_3(
    occupied: int, tmp_path: Path
) -> None:
    done = subprocess.run(
        [*CRISISWATCH, "run", "--config", str(_config(tmp_path)), "--port", str(occupied)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"crisiswatch cannot start: cannot listen on 127.0.0.1:{occupied}" in lines[0]
    assert not (tmp_path / "cw.db").exists()  # no migration ran, nothing was started


def test_a_second_binder_is_refused_while_the_first_still_starts() -> None:
    """Two processes starting on one port: the second is refused at once (bound sockets
    alone, both with SO_REUSEADDR, would both be allowed, and the second fail only after
    its whole start-up)."""
    first = serve.bind_sockets("127.0.0.1", 0)
    try:
        port = first[0].getsockname()[1]
        with pytest.raises(OSError) as refused:
            serve.bind_sockets("127.0.0.1", port)
        assert refused.value.errno == errno.EADDRINUSE
    finally:
        for sock in first:
            sock.close()


def test_the_port_bound_first_is_served_and_sigterm_exits_0(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *CRISISWATCH,
                "api",
                "--config",
                str(_config(tmp_path, migrated=True)),
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert f"serving HTTP on http://127.0.0.1:{port}" in log.read_text()


def test_a_stop_that_fails_is_not_exit_0(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGTERM, then the runtime's stop fails (a bus that cannot commit, a journal that
    cannot close): uvicorn logs "Application shutdown failed" and returns as after a clean
    stop, so the process exited 0 and said "stopped cleanly after SIGTERM"."""

    async def start(self: Runtime) -> None:
        self.ready = True
        signal.raise_signal(signal.SIGTERM)  # (uvicorn's handler: a stop once started)

    async def stop(self: Runtime) -> None:
        raise RuntimeError("the bus could not commit")

    monkeypatch.setattr(Runtime, "start", start)
    monkeypatch.setattr(Runtime, "stop", stop)
    with caplog.at_level(logging.INFO, logger="api.serve"):
        code = serve.serve_roles(
            Settings(), roles=("api",), demo=False, host="127.0.0.1", port=free_port()
        )
    assert code == 1
    said = [r.getMessage() for r in caplog.records if r.name == "api.serve"]
    assert not any("stopped cleanly" in line for line in said), said
    assert any("did not stop cleanly" in line for line in said), said


def test_a_clean_stop_after_sigterm_is_exit_0(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def start(self: Runtime) -> None:
        self.ready = True
        signal.raise_signal(signal.SIGTERM)

    async def stop(self: Runtime) -> None:
        self.ready = False

    monkeypatch.setattr(Runtime, "start", start)
    monkeypatch.setattr(Runtime, "stop", stop)
    with caplog.at_level(logging.INFO, logger="api.serve"):
        code = serve.serve_roles(
            Settings(), roles=("api",), demo=False, host="127.0.0.1", port=free_port()
        )
    assert code == 0
    assert "stopped cleanly after SIGTERM" in [r.getMessage() for r in caplog.records]


def test_the_demo_banner_is_not_printed_by_a_start_that_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second ``crisiswatch run`` on the same database printed the demo's banner (a new
    key, curl commands to use it) before its start-up, then failed 5 s later: the key
    looked usable, and the one line saying why sat below it."""

    async def start(self: Runtime) -> None:
        raise JournalError("the bus journal var/crisiswatch.db.bus-journal is in use")

    monkeypatch.setattr(Runtime, "start", start)
    with pytest.raises(SystemExit) as failed:  # (the CLI's exit status: uvicorn's)
        serve.serve_roles(Settings(), roles=None, demo=True, host="127.0.0.1", port=free_port())
    assert failed.value.code == serve.STARTUP_FAILURE
    err = capsys.readouterr().err
    assert "API key" not in err and "cw_" not in err, err


def test_the_demo_banner_is_printed_once_the_start_up_is_done(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def start(self: Runtime) -> None:
        assert "API key" not in capsys.readouterr().err  # not yet
        self.ready = True
        signal.raise_signal(signal.SIGTERM)  # (a stop once started)

    async def stop(self: Runtime) -> None:
        self.ready = False

    monkeypatch.setattr(Runtime, "start", start)
    monkeypatch.setattr(Runtime, "stop", stop)
    port = free_port()
    code = serve.serve_roles(Settings(), roles=None, demo=True, host="127.0.0.1", port=port)
    assert code == 0
    err = capsys.readouterr().err
    assert err.count(" API key (responder, new each run): cw_") == 1, err
    assert f"http://127.0.0.1:{port}/incidents?status=open" in err
