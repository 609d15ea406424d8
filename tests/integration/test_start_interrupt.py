"""SIGTERM or Ctrl-C to a real crisiswatch process during its start-up: the start-up is
interrupted, what it had started is stopped, and the process exits (0 after SIGTERM, 130
after Ctrl-C). uvicorn alone only noted the signal for after the start-up, so a database
connect that hangs (60 s), a migration waiting on a lock or a model still loading kept the
process running until the orchestrator's SIGKILL.

A model loading in the classifier's child process cannot be interrupted: the stop waits
for it (at most ``bus.stop_timeout``) and closes the child, or kills it past that."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.process_support import child_env
from tests.support import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS = REPO_ROOT / "sentiment" / "models"
CARD = "en-minilm-l3.json"  # the English model's card: the first file the child reads
EXIT_GUARD = 60.0  # generous: the stops below take a few seconds at most


class Crisiswatch:
    """``python -m api.cli <command>`` with its output in a log file."""

    def __init__(self, tmp_path: Path, command: str, config: dict[str, object]) -> None:
        self.log = tmp_path / f"{command}.log"
        path = tmp_path / f"{command}.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        argv = [sys.executable, "-m", "api.cli", command, "--config", str(path)]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*argv, "--port", str(free_port())],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env=child_env(),
                start_new_session=True,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, check: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + EXIT_GUARD
        while not check():
            assert self.proc.poll() is None, f"exited before {what}:\n{self.text()}"
            assert time.monotonic() < deadline, f"no {what}:\n{self.text()}"
            time.sleep(0.05)

    def exit_code(self) -> int:
        try:
            return self.proc.wait(timeout=EXIT_GUARD)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {EXIT_GUARD:.0f} s after the signal:\n{self.text()}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def processes() -> Iterator[list[Crisiswatch]]:
    started: list[Crisiswatch] = []
    yield started
    for process in started:
        process.close()


@pytest.fixture
def silent_database() -> Iterator[socket.socket]:
    """A "PostgreSQL server" that takes connections and never answers: a connect hangs."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        server.settimeout(EXIT_GUARD)
        yield server


def children_of(pid: int) -> set[int]:
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def gone(pids: set[int]) -> bool:
    """Whether the processes ``pids`` are gone, waited for (the classifier's resource
    tracker exits once it sees its parent gone)."""
    deadline = time.monotonic() + EXIT_GUARD
    while any(Path(f"/proc/{pid}").exists() for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize(("sent", "status"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_a_signal_while_the_database_connect_hangs_stops_the_start_up(
    tmp_path: Path,
    processes: list[Crisiswatch],
    silent_database: socket.socket,
    sent: signal.Signals,
    status: int,
) -> None:
    port = silent_database.getsockname()[1]
    config = {
        "database": {"url": f"postgresql+asyncpg://u@127.0.0.1:{port}/db"},
        "listener": {"watches": []},
    }
    run = Crisiswatch(tmp_path, "run", config)
    processes.append(run)
    connection, _ = silent_database.accept()  # the migration's connect: it hangs there
    with connection:
        run.proc.send_signal(sent)
        assert run.exit_code() == status, run.text()
    log = run.text()
    assert f"{sent.name} during the start-up: interrupting it" in log
    assert "start-up interrupted: stopping what was started" in log
    assert "crisiswatch stopped" in log
    assert "Traceback" not in log and "Application startup failed" not in log


def model_folder_with_a_fifo_card(tmp_path: Path) -> Path:
    """The shipped models, but the English card is a FIFO: the child process loading the
    model blocks on it until the test writes the card (or forever)."""
    folder = tmp_path / "models"
    folder.mkdir()
    for path in MODELS.iterdir():
        if path.name != CARD:
            (folder / path.name).symlink_to(path)
    os.mkfifo(folder / CARD)
    return folder


def open_when_read(fifo: Path, proc: Crisiswatch) -> int:
    """A write end of ``fifo``, once a reader (the child loading the model) has it open."""
    fd: list[int] = []

    def opened() -> bool:
        try:
            fd.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # ENXIO: no reader yet
            return False
        return True

    proc.wait_for(opened, "the classifier's child reading the model")
    return fd[0]


def scorer_config(models: Path, stop_timeout: float) -> dict[str, object]:
    # a role command needs the Kafka bus; nothing listens at this broker, but the model
    # loads before the bus starts, and the SIGTERM comes during the load
    return {
        "bus": {
            "kind": "kafka",
            "bootstrap_servers": f"127.0.0.1:{free_port()}",
            "stop_timeout": stop_timeout,
        },
        "scorer": {"classifier": {"process": True, "model_dir": str(models)}},
    }


def test_sigterm_while_the_model_loads_waits_for_it_and_closes_its_child(
    tmp_path: Path, processes: list[Crisiswatch]
) -> None:
    models = model_folder_with_a_fifo_card(tmp_path)
    scorer = Crisiswatch(tmp_path, "scorer", scorer_config(models, stop_timeout=EXIT_GUARD))
    processes.append(scorer)
    fd = open_when_read(models / CARD, scorer)
    children = children_of(scorer.proc.pid)
    assert children
    scorer.proc.send_signal(signal.SIGTERM)
    scorer.wait_for(lambda: "to finish loading, to close it" in scorer.text(), "wait for the load")
    os.write(fd, (MODELS / CARD).read_bytes())  # the load goes on, and ends
    os.close(fd)
    assert scorer.exit_code() == 0, scorer.text()
    log = scorer.text()
    assert "the sentiment model closed (its load outlived the start-up)" in log
    assert "stopped cleanly after SIGTERM" in log
    assert gone(children), children


def test_a_model_load_past_the_stop_timeout_has_its_child_killed(
    tmp_path: Path, processes: list[Crisiswatch]
) -> None:
    models = model_folder_with_a_fifo_card(tmp_path)
    scorer = Crisiswatch(tmp_path, "scorer", scorer_config(models, stop_timeout=1))
    processes.append(scorer)
    fd = open_when_read(models / CARD, scorer)  # and never written: the load never ends
    try:
        children = children_of(scorer.proc.pid)
        scorer.proc.send_signal(signal.SIGTERM)
        assert scorer.exit_code() == 0, scorer.text()
    finally:
        os.close(fd)
    log = scorer.text()
    assert "the sentiment model is still loading after 1 s" in log
    assert "killed" in log
    assert gone(children), children
