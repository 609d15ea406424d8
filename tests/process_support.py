"""Real processes for the fault tests: crisiswatch roles, Tansu brokers, moto's S3 server and
private PostgreSQL clusters, each with its log in a file.

Every process is started in its own session and registered with a ``Processes`` group that
the test's fixture closes: whatever happens, nothing is left running. ``Processes.tails()``
gives the last lines of every log (printed when a test fails).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from core.settings import BusConfig
from tests.fixtures.tansu import accepts, free_port, tail, tansu_binary, tansu_command

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0


def pg_bin() -> Path:
    """PostgreSQL's server binaries: ``CRISISWATCH_TEST_PG_BIN``, else the newest
    ``/usr/lib/postgresql/<version>/bin`` (Debian/Ubuntu)."""
    given = os.environ.get("CRISISWATCH_TEST_PG_BIN")
    if given:
        return Path(given)
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not found:
        raise AssertionError(
            "no PostgreSQL server binaries (initdb) under /usr/lib/postgresql/*/bin: "
            "set CRISISWATCH_TEST_PG_BIN"
        )
    return found[-1].parent


@dataclass
class Managed:
    """One child process (restartable: ``start`` again after ``kill``/``stop``), its output
    appended to ``log``."""

    name: str
    argv: list[str]
    log: Path
    env: Mapping[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> Managed:
        if self.alive:
            raise RuntimeError(f"{self.name} is already running")
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"\n===== start #{self.starts}: {' '.join(self.argv)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(self.env) if self.env is not None else None,
                cwd=REPO_ROOT,
                start_new_session=True,
            )
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """``kill -9``: no shutdown hooks, nothing flushed or committed."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout: float) -> int | None:
        """SIGTERM, then wait up to ``timeout``: the exit code, None if it still runs
        (left running: ``kill`` or the group's ``close`` ends it)."""
        assert self.proc is not None, f"{self.name} was never started"
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def wait_for(
        self, check: Callable[[], bool], what: str, timeout: float = START_TIMEOUT
    ) -> None:
        """Poll ``check`` until true; fail with the log's tail if the process dies first."""
        deadline = time.monotonic() + timeout
        while not check():
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.proc.returncode} before {what}:\n"
                    f"{tail(self.log)}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name}: no {what} within {timeout:.0f} s:\n{tail(self.log)}"
                )
            time.sleep(0.05)


@dataclass
class Processes:
    """The processes of one test; ``close`` stops them all (kill if they linger)."""

    root: Path
    items: list[Managed] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def add(self, name: str, argv: list[str], env: Mapping[str, str] | None = None) -> Managed:
        managed = Managed(name, argv, self.root / f"{name}.log", env)
        self.items.append(managed)
        return managed

    def tails(self, lines: int = 30) -> str:
        return "\n".join(
            f"----- {m.name} (pid {m.proc.pid if m.proc else '-'}) {m.log}\n{tail(m.log, lines)}"
            for m in self.items
        )

    def close(self) -> None:
        for managed in reversed(self.items):
            try:
                managed.stop(timeout=5.0)
            except Exception:  # keep closing the others
                managed.kill()
        for cleanup in reversed(self.cleanups):
            cleanup()


# -- moto (S3) and Tansu -----------------------------------------------------------------


@dataclass
class S3Server:
    """moto's server mode: a local S3-compatible endpoint for Tansu's ``s3://`` storage."""

    process: Managed
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def broker_env(self) -> dict[str, str]:
        """What Tansu (object_store) needs to use this server with dummy credentials."""
        return {
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }

    def create_bucket(self, name: str) -> None:
        response = httpx.put(f"{self.endpoint}/{name}", timeout=10.0)
        response.raise_for_status()


def start_s3(procs: Processes) -> S3Server:
    port = free_port()
    process = procs.add(
        "moto",
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
    ).start()
    process.wait_for(lambda: accepts(port), "S3 endpoint")
    return S3Server(process, port)


def add_tansu(procs: Processes, storage: str, env: Mapping[str, str] | None = None) -> Broker:
    """A Tansu broker on a free port, restartable (``Broker.start``), not started yet."""
    port = free_port()
    argv = tansu_command(tansu_binary(), f"tcp://127.0.0.1:{port}", storage)
    return Broker(procs.add("tansu", argv, {**os.environ, **(env or {})}), port)


@dataclass
class Broker:
    process: Managed
    port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process.start()
        self.process.wait_for(lambda: accepts(self.port), "Kafka listener")


# -- a private PostgreSQL cluster ----------------------------------------------------------


@dataclass
class PgCluster:
    """A throw-away PostgreSQL cluster on a free port (the machine's shared one is never
    touched). As root, its commands run as the ``postgres`` user."""

    data: Path
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(pg_bin() / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}\n"
                f"{tail(self.log)}"
            )
        return done

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")

    def start(self) -> None:
        # fsync off: a stop in immediate mode kills the server, not the machine, so what
        # was written is in the page cache. (synchronous_commit must stay on: off, a
        # crash loses commits already acknowledged.)
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    @property
    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0


def start_pg_cluster(procs: Processes) -> PgCluster:
    """initdb + start; stopped (immediate) and removed by ``procs.close()``."""
    # pytest's tmp_path is root's, mode 0700: the postgres user cannot enter it
    base = Path(tempfile.mkdtemp(prefix="cw-faults-pg-"))
    data = base / "data"
    log = base / "postgresql.log"
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    cluster = PgCluster(data, free_port(), log)

    def cleanup() -> None:
        if data.exists():
            cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)

    procs.cleanups.append(cleanup)
    cluster.init()
    cluster.start()
    return cluster


# -- crisiswatch roles ---------------------------------------------------------------------


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment without CRISISWATCH_* (the config file is the only input)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRISISWATCH_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@dataclass
class RoleProcess:
    """``python -m api.cli <role> --config F --port P``: one crisiswatch stage."""

    process: Managed
    port: int

    def start(self, *, wait_ready: bool = True) -> None:
        self.process.start()
        if wait_ready:
            self.process.wait_for(self.ready, "readiness (/readyz 200)")

    def ready(self) -> bool:
        try:
            response = httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def metric(self, name: str, labels: str = "") -> float:
        """The value of one sample of this process's /metrics (0 when absent)."""
        try:
            text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2.0).text
        except httpx.HTTPError:
            return 0.0
        wanted = f"{name}{{{labels}}}" if labels else name
        for line in text.splitlines():
            key, _, value = line.rpartition(" ")
            if key == wanted:
                return float(value)
        return 0.0


def add_role(procs: Processes, role: str, config: Path, name: str | None = None) -> RoleProcess:
    """A role process on a free port; ``name`` (default: the role) names its log file."""
    port = free_port()
    argv = [sys.executable, "-m", "api.cli", role, "--config", str(config), "--port", str(port)]
    return RoleProcess(procs.add(name or role, argv, child_env()), port)


def kafka_section(bus: BusConfig, **extra: Any) -> dict[str, Any]:
    """The ``bus`` section of a role process's config: the test's Kafka ``BusConfig`` as it
    is (every field that differs from the defaults: the broker, the topic prefix, the
    partitions, the consumer group timing...), then ``extra``."""
    if bus.sasl_password is not None:
        raise ValueError("kafka_section writes the config in clear: no SASL password here")
    section = bus.model_dump(mode="json", exclude_defaults=True, exclude={"sasl_password"})
    return {**section, "kind": "kafka", **extra}


def write_config(path: Path, data: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False), encoding="utf-8")
    return path
