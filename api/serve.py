"""Serve a process: build the runtime for its roles, the app, and run uvicorn.

SIGTERM (Kubernetes, compose, systemd) is a clean stop: uvicorn stops taking requests and
waits up to ``bus.stop_timeout`` seconds for those in flight, then the lifespan stops the
runtime (the bus stops fetching, finishes the batch in flight, commits and closes, within
``bus.stop_timeout`` again, the embedded bus's drain included) and the process exits 0.
So it exits within about twice ``bus.stop_timeout`` (plus a few seconds of closing:
``api.runtime.StopBudget``); keep the orchestrator's grace period
(``terminationGracePeriodSeconds``, ``stop_grace_period``: 45 s) above that.

A SIGTERM or Ctrl-C during the start-up (a slow database, a migration waiting on a lock, a
Kafka group join, a model loading) interrupts it: what was started is stopped and the
process exits 0 (130 after Ctrl-C), as after a stop once up.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from types import FrameType

import uvicorn

from api.app import create_app
from api.auth import generate_key
from api.collector import tune_collector
from api.runtime import ALL_ROLES, Role, Runtime, stop_budget
from api.settings import Settings
from listener.config import DemoSourceConfig, WatchConfig

log = logging.getLogger(__name__)

DEMO_WATCH_ID = "demo"


def with_demo(settings: Settings) -> Settings:
    """The settings plus the demo brand's watch and its generated stream."""
    demo = settings.listener.sources.demo or DemoSourceConfig()
    watches = list(settings.listener.watches)
    if not any(w.id == DEMO_WATCH_ID for w in watches):
        watches.append(
            WatchConfig(
                id=DEMO_WATCH_ID, brand=demo.brand, terms=[demo.brand], exclude=["cumulonimbus"]
            )
        )
    sources = settings.listener.sources.model_copy(update={"demo": demo})
    listener = settings.listener.model_copy(update={"watches": watches, "sources": sources})
    update: dict[str, object] = {"listener": listener}
    if settings.detector.state_store == "auto":
        # Each run of the demo tells its crisis again, in the same words: with the stories
        # of the last run kept, the new crisis would join the old story (already at tier 3)
        # and nothing new would be alerted. So the demo's detector starts afresh each run.
        update["detector"] = settings.detector.model_copy(update={"state_store": "memory"})
    return settings.model_copy(update=update)


def _banner(settings: Settings, key: str, host: str, port: int) -> str:
    base = f"http://{host}:{port}"
    channels = settings.alerts.channels
    if all(channel.type == "console" for channel in channels.values()):
        where = "alerts appear below (every team is routed to the console channel)."
    else:  # a --config with its own channels: they go there, not (only) below
        where = f"alerts go to the configured channels: {', '.join(sorted(channels))}."
    return "\n".join(
        [
            "",
            "=" * 78,
            " crisiswatch demo: watching the fictional brand "
            f"{settings.listener.sources.demo.brand if settings.listener.sources.demo else ''!s}",
            "   a complaint will turn into a tier-3 crisis in about two minutes;",
            f"   {where}",
            f" API key (responder, new each run): {key}",
            f"   curl -H 'Authorization: Bearer {key}' '{base}/incidents?status=open'",
            f"   curl -X POST -H 'Authorization: Bearer {key}' {base}/incidents/N/ack",
            "   (N: the incident's number in its alert, 'ALERT #N'; 1 on a first run)",
            f" incident console: {base}/console/ (paste the key there)",
            f" API docs: {base}/docs   metrics: {base}/metrics",
            "=" * 78,
            "",
        ]
    )


def serve_roles(
    settings: Settings,
    *,
    roles: Sequence[str] | None,
    demo: bool,
    host: str | None,
    port: int | None,
) -> int:
    host = host or settings.api.host
    port = port or settings.api.port
    try:  # before the start-up (migrations, the model, the sources): not after it
        sockets = bind_sockets(host, port)
    except OSError as exc:
        log.critical("crisiswatch cannot start: %s", _cannot_listen(host, port, exc))
        return STARTUP_FAILURE
    try:
        return _serve(settings, sockets, roles=roles, demo=demo, host=host, port=port)
    finally:
        for sock in sockets:
            sock.close()


STARTUP_FAILURE = 3
"""The exit status of a start that failed (uvicorn's, for a lifespan that failed too)."""


def bind_sockets(host: str, port: int, backlog: int = 2048) -> list[socket.socket]:
    """Sockets listening on ``host:port`` as uvicorn's ``loop.create_server`` would make
    them (each address the host resolves to; ``SO_REUSEADDR`` on POSIX, so a restart is not
    refused for the last run's closing connections; IPv6 sockets IPv6 only), for uvicorn to
    serve on once the start-up is done. They listen at once: a second process cannot take
    the port meanwhile (two bound only would both succeed with ``SO_REUSEADDR``), and a
    connection made during the start-up waits in the backlog. An ``OSError`` if the port
    cannot be had."""
    infos = socket.getaddrinfo(
        host or None,
        port,
        family=socket.AF_UNSPEC,
        type=socket.SOCK_STREAM,
        flags=socket.AI_PASSIVE,
    )
    if not infos:
        raise OSError(errno.EADDRNOTAVAIL, f"{host!r} resolves to no address")
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            if sys.platform != "win32":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _cannot_listen(host: str, port: int, exc: OSError) -> str:
    """Why ``host:port`` cannot be listened on, and what to do, in a line."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: the port is already in use (another crisiswatch, "
            "or another server, listens there): stop it, or choose another port with "
            "--port or api.port (CRISISWATCH_API__PORT)"
        )
    if exc.errno == errno.EACCES:
        return (
            f"cannot listen on {where}: permission denied (ports below 1024 need "
            "privileges): choose another port with --port or api.port (CRISISWATCH_API__PORT)"
        )
    reason = exc.strerror or str(exc)
    return (
        f"cannot listen on {where}: {reason}: set a host of this machine with --host or "
        "api.host (CRISISWATCH_API__HOST), e.g. 127.0.0.1 or 0.0.0.0"
    )


def _serve(
    settings: Settings,
    sockets: list[socket.socket],
    *,
    roles: Sequence[str] | None,
    demo: bool,
    host: str,
    port: int,
) -> int:
    if "public_url" not in settings.api.model_fields_set:  # links in alerts: where we listen
        api = settings.api.model_copy(update={"public_url": f"http://{host}:{port}"})
        settings = settings.model_copy(update={"api": api})
    role_set = ALL_ROLES if roles is None else frozenset(Role(r) for r in roles)
    if demo:
        settings = with_demo(settings)
    tune_collector(settings.gc_young_threshold)
    runtime = Runtime(settings, roles=role_set, migrate=role_set == ALL_ROLES)
    banner: str | None = None
    if demo:  # the key and its commands are shown once the start-up is done, not before a
        key = generate_key()  # start that fails (a database another run holds, say)
        runtime.keyring.add(key, "demo", "responder")
        banner = _banner(settings, key, host, port)
    elif role_set & {Role.API} and not len(runtime.keyring):
        log.warning("no API keys configured (api.keys): every incident endpoint will answer 401")
    if Role.API in role_set:  # as check-config says it (not an error: see scope_warnings)
        for warning in settings.api.scope_warnings(w.id for w in settings.listener.watches):
            log.warning("%s", warning)
    app = create_app(runtime)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=round(stop_budget(settings.bus.stop_timeout).http),
    )
    server = _Server(config, runtime.interrupt_start, banner=banner)
    quiet = _QuietStartFailure(lambda: runtime.start_interrupted)
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addFilter(quiet)
    interrupted_by_ctrl_c = False
    try:
        with _sigterm_after_a_clean_stop_exits_0() as sigterm:
            server.run(sockets=sockets)
    except KeyboardInterrupt:  # uvicorn raises Ctrl-C's SIGINT again once stopped
        interrupted_by_ctrl_c = True
    except SystemExit:  # uvicorn's exit after a start-up that did not finish
        if not runtime.start_interrupted:
            raise  # it failed (STARTUP_FAILURE)
        interrupted_by_ctrl_c = signal.SIGINT in server.signals
    finally:
        uvicorn_log.removeFilter(quiet)
    if server.stop_failed:  # (uvicorn itself carries on to a normal exit)
        log.error("crisiswatch did not stop cleanly: see the errors above (exit status 1)")
        return 1
    if interrupted_by_ctrl_c:
        log.info("stopped after Ctrl-C (exit status 130)")
        return INTERRUPTED
    if sigterm or signal.SIGTERM in server.signals:  # (not raised again after a start-up)
        log.info("stopped cleanly after SIGTERM")
    return 0


INTERRUPTED = 130
"""The exit status after Ctrl-C (128 + SIGINT, as a shell reports it)."""


class _Server(uvicorn.Server):
    """uvicorn serving on sockets bound beforehand, which it does not announce itself, and
    whose SIGTERM or Ctrl-C during the start-up interrupts it (``interrupt_start``: called
    on the event loop; uvicorn alone only notes the signal, for after the start-up). The
    ``banner`` (the demo's key and commands) goes to stderr once it serves, and only then."""

    def __init__(
        self,
        config: uvicorn.Config,
        interrupt_start: Callable[[], bool],
        *,
        banner: str | None = None,
    ) -> None:
        super().__init__(config)
        self._interrupt_start = interrupt_start
        self._banner = banner
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def signals(self) -> list[int]:
        """The signals received (SIGTERM, SIGINT), in order."""
        return list(self._captured_signals)

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self.started or self._loop is None:
            return
        # (a signal handler runs between two bytecodes of the loop's own thread: the
        # interruption, a task's cancel, waits for the loop's next turn)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to interrupt
            self._loop.call_soon_threadsafe(self._interrupt, sig)

    def _interrupt(self, sig: int) -> None:
        if self._interrupt_start():
            log.warning(
                "%s during the start-up: interrupting it, stopping what was started",
                signal.Signals(sig).name,
            )

    @property
    def stop_failed(self) -> bool:
        """Whether the lifespan's stop (``Runtime.stop``) failed: uvicorn logs it, then
        exits as after a clean stop."""
        return bool(getattr(getattr(self, "lifespan", None), "shutdown_failed", False))

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            for sock in sockets or ():
                host, port = sock.getsockname()[:2]
                where = f"[{host}]" if sock.family == socket.AF_INET6 else host
                log.info("serving HTTP on http://%s:%d (Ctrl+C to stop)", where, port)
            if self._banner is not None:
                print(self._banner, file=sys.stderr, flush=True)


class _QuietStartFailure(logging.Filter):
    """Drops uvicorn's traceback of a start that failed for a reason already logged in one
    line (``api.app.StartFailed``); its "Application startup failed" line stays, but for a
    start-up interrupted (``interrupted()``), where both go: that is no failure."""

    def __init__(self, interrupted: Callable[[], bool]) -> None:
        super().__init__()
        self._interrupted = interrupted

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "StartFailed" in message or "StartStopped" in message:
            return False
        return not (self._interrupted() and "Application startup failed" in message)


@contextlib.contextmanager
def _sigterm_after_a_clean_stop_exits_0() -> Iterator[list[int]]:
    """uvicorn catches SIGTERM, shuts down, then raises SIGTERM again with the handler it
    found: with the default one the process dies of the signal (exit 143), which
    orchestrators and ``crisiswatch``'s callers read as a crash. Install a handler that
    only notes it (in the list yielded), so a clean stop returns and the process exits 0."""
    noted: list[int] = []
    if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
        yield noted  # signal handlers belong to the main thread (uvicorn skips them there too)
        return

    def note(signum: int, frame: FrameType | None) -> None:
        noted.append(signum)

    previous = signal.signal(signal.SIGTERM, note)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGTERM, previous)
