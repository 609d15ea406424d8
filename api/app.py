"""FastAPI app factory. The lifespan owns the Runtime (and so every resource)."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import OperationalError
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alerts.incidents import IncidentNotFound, InvalidTransition
from alerts.templates.render import RenderError, TemplateProblem
from alerts.templates.service import (
    BadVariables,
    RenderBusy,
    ReviewRefused,
    TemplateConflict,
    TemplateNotFound,
)
from alerts.templates.workflow import TransitionRefused
from alerts.workflow.drills import DrillNotFound
from alerts.workflow.service import InvalidMerge, RoleNotAssigned
from alerts.workflow.tasks import TaskNotFound
from api.auth import AuthThrottle, RefusalLog, SharedThrottle, hidden_when_missing
from api.bodylimit import BodyLimit, route_families
from api.console.router import router as console_router
from api.dbrevision import DatabaseNotMigrated
from api.docs import ASSETS, add_docs
from api.drills import DrillBusUnreachable, DrillRefused, DrillSchedule, DrillUnavailable
from api.jsonkeys import refuse_duplicate_keys
from api.queryparams import refuse_unknown_query
from api.routers import (
    ack,
    alerting,
    audit,
    drills,
    health,
    incidents,
    ingest,
    responses,
    slack,
    sources,
    templates,
    workflow,
)
from api.runtime import Role, Runtime, StartInterrupted
from api.settings import ConfigError
from api.textinput import refuse_nul
from core.bus import BusStartError
from core.bus.journal import JournalError
from core.db import MigratedByANewerRelease
from listener.service import PublishFailed
from sentiment.errors import ModelLoadError
from sentiment.process import ClassifierProcessError

log = logging.getLogger(__name__)

START_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    MigratedByANewerRelease,
    DatabaseNotMigrated,
    JournalError,
    BusStartError,
    ModelLoadError,
    ClassifierProcessError,
    OperationalError,
    OSError,
)
"""What an operator fixes (a setting, a file, a folder, the database's address): said in one
line at start, without a traceback. Anything else is a bug and keeps its traceback."""


API_ROUTERS: tuple[APIRouter, ...] = (
    incidents.router,
    alerting.router,
    templates.router,
    responses.router,
    audit.router,
    workflow.router,
    drills.router,
)
"""The API role's routers: NUL in stored text, a key given twice in a JSON body and unknown
query parameters are refused."""
CHAT_ROUTERS: tuple[APIRouter, ...] = (ack.router, slack.router, console_router)
"""The API role's routers clicked in chat apps (which may add query parameters of their
own), or static files: NUL in stored text and a key given twice in a JSON body are refused."""
LISTENER_ROUTERS: tuple[APIRouter, ...] = (ingest.router, sources.router)
ROUTERS: tuple[APIRouter, ...] = (health.router, *API_ROUTERS, *CHAT_ROUTERS, *LISTENER_ROUTERS)
"""Every router the app may include (by its roles): their paths' first segments are the
endpoint families that label refusals (``api.bodylimit``)."""


JSON_CSP = "default-src 'none'; frame-ancestors 'none'"
"""A JSON answer loads nothing and is framed by nothing (a page sets a CSP of its own)."""
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)


class SecurityHeaders:
    """Headers every answer carries unless its route set its own (the console's CSP, an
    ack page's): no MIME sniffing, no framing, no referrer; ``Cache-Control: no-store``
    (what a key read, an incident, a report, the audit log, is kept by no browser or proxy
    cache) but on the documentation's static assets; JSON gets ``JSON_CSP``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = str(scope.get("path", "")).startswith(ASSETS + "/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                secure(MutableHeaders(scope=message), cacheable=cacheable)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def secure(headers: MutableHeaders, *, cacheable: bool = False) -> None:
    """Add ``SecurityHeaders``' headers to ``headers`` where the answer set none of its own.
    Also called by the handler of an unexpected error: Starlette answers a 500 from its
    outermost middleware, which ``SecurityHeaders`` does not wrap."""
    for name, value in SECURITY_HEADERS:
        headers.setdefault(name, value)
    if not cacheable:
        headers.setdefault("Cache-Control", "no-store")
    if headers.get("content-type", "").startswith("application/json"):
        headers.setdefault("Content-Security-Policy", JSON_CSP)


class StartFailed(RuntimeError):
    """The runtime could not start for one of START_ERRORS (already logged, in a line)."""


class StartStopped(StartFailed):
    """The start-up was interrupted (SIGTERM, Ctrl-C): not a failure (already logged)."""


def create_app(runtime: Runtime) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await runtime.start()
        except START_ERRORS as exc:  # Runtime.start has stopped what it had started
            log.critical("crisiswatch cannot start: %s", exc)
            raise StartFailed(str(exc)) from None
        except StartInterrupted as exc:  # asked to stop: it has (the server exits, quietly)
            log.info("%s", exc)
            raise StartStopped(str(exc)) from None
        drill_schedule = DrillSchedule(runtime)
        await drill_schedule.start()
        try:
            yield
        finally:
            await drill_schedule.stop()
            await runtime.stop()

    app = FastAPI(
        title="crisiswatch",
        version="0.1.0",
        description="Social listening and tiered crisis alerts: incidents, acks, ingestion, "
        "legally reviewed response templates, audit log.",
        lifespan=lifespan,
        docs_url=None,  # served from installed files, not a CDN (``api.docs``)
        redoc_url=None,
    )
    add_docs(app)
    settings = runtime.settings
    app.add_middleware(
        BodyLimit,
        limit_for=lambda path: (
            settings.listener.webhook.max_body_bytes
            if path.startswith(ingest.router.prefix)
            else settings.api.max_body_bytes
        ),
        endpoint_of=route_families(
            route.path for router in ROUTERS for route in router.routes if hasattr(route, "path")
        ),
        metrics=runtime.metrics,
    )
    app.add_middleware(SecurityHeaders)  # outermost: a 413 of BodyLimit gets them too
    app.state.runtime = runtime
    app.state.keyring = runtime.keyring
    app.state.metrics = runtime.metrics
    throttle = runtime.settings.api.auth_throttle
    app.state.auth_throttle = SharedThrottle(
        AuthThrottle(runtime.clock, throttle.max_failures, throttle.window_s, throttle.lockout_s),
        sessions=lambda: runtime.sessions,  # set once the runtime has started
        metrics=runtime.metrics,
    )
    app.state.refusal_log = RefusalLog(runtime.clock)  # wrong keys and tokens, in the log
    app.include_router(health.router)
    if Role.API in runtime.roles:
        # PostgreSQL text cannot hold NUL, a JSON key given twice cannot be told: a 422
        stored_text = [Depends(refuse_nul), Depends(refuse_duplicate_keys)]
        strict = [*stored_text, Depends(refuse_unknown_query)]
        for router in API_ROUTERS:
            app.include_router(router, dependencies=strict)
        for router in CHAT_ROUTERS:
            app.include_router(router, dependencies=stored_text)
    if Role.LISTENER in runtime.roles:
        for router in LISTENER_ROUTERS:
            app.include_router(router)

    @app.exception_handler(IncidentNotFound)
    async def not_found(request: Request, exc: IncidentNotFound) -> JSONResponse:
        return _missing(request, exc, f"incident {exc.incident_id}")

    @app.exception_handler(DrillNotFound)
    async def drill_not_found(request: Request, exc: DrillNotFound) -> JSONResponse:
        return _missing(request, exc, f"drill {exc.drill_id}")

    @app.exception_handler(InvalidTransition)
    async def conflict(request: Request, exc: InvalidTransition) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": str(exc)})

    # response templates: unknown 404, wrong state 409, four-eyes 403, unusable text 422
    for error, code in (
        (TemplateNotFound, 404),
        (TemplateConflict, 409),
        (TransitionRefused, 409),
        (ReviewRefused, 403),
        (TemplateProblem, 422),
        (RenderError, 422),
        (BadVariables, 422),
        # incident workflow: unknown task / unassigned role 404, merge into itself 422
        (TaskNotFound, 404),
        (RoleNotAssigned, 404),
        (InvalidMerge, 422),
        (DrillRefused, 422),
        (DrillUnavailable, 409),
        (DrillBusUnreachable, 503),
    ):
        app.add_exception_handler(error, _answer(code))

    @app.exception_handler(RenderBusy)
    async def renders_busy(request: Request, exc: RenderBusy) -> JSONResponse:
        """Every template render slot stayed taken for the whole wait: nothing was
        rendered or recorded, the caller retries (counted where it is refused)."""
        return JSONResponse(
            status_code=503,
            content={"detail": str(exc)},
            headers={"Retry-After": str(exc.retry_after)},
        )

    @app.exception_handler(PublishFailed)
    async def bus_down(request: Request, exc: PublishFailed) -> JSONResponse:
        """The webhook's batch was not taken by the bus: nothing of it was kept (dedup
        forgot it), the sender retries the whole batch."""
        return JSONResponse(
            status_code=503,
            content={"detail": f"the bus cannot take mentions now ({exc}); retry later"},
            headers={"Retry-After": "10"},
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's own 422, made safe to encode: an input holding a lone surrogate
        (``"\\ud800"``, half an emoji) broke the default handler's JSON, a 500."""
        return JSONResponse(status_code=422, content={"detail": _safe(exc.errors())})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, loggable_path(request))
        answer = JSONResponse(
            status_code=500,
            content={"detail": "internal error; it has been logged"},
        )
        secure(answer.headers)  # answered outside ``SecurityHeaders`` (Starlette's 500)
        return answer

    return app


SECRET_PATH_PARAMS: Final = frozenset({"token"})
"""Path parameters that are credentials (an ack link's single-use token, good for a day):
never logged (``loggable_path``). The Slack route's secrets travel in headers and body."""
SECRET_PATHS: Final = tuple(
    sorted(
        {
            route.path
            for router in ROUTERS
            for route in router.routes
            if isinstance(route, APIRoute) and SECRET_PATH_PARAMS & route.param_convertors.keys()
        }
    )
)
"""The route templates holding a credential (``/ack/{token}``)."""


def loggable_path(request: Request) -> str:
    """The request's path as a log line may show it: the route's template (``/ack/{token}``)
    where the path holds a credential (``SECRET_PATHS``), also for a path under one that no
    route took (``/ack/<token>/more``); else the path itself."""
    path = request.url.path
    for template in SECRET_PATHS:
        if path.startswith(template.partition("{")[0]):
            return template
    return path


def _missing(request: Request, exc: LookupError, what: str) -> JSONResponse:
    """404 for ``what`` (an incident, a drill) that does not exist; for a key scoped to
    some watches the 403 another watch's gets (``api.auth.hidden_when_missing``)."""
    hidden = hidden_when_missing(request, what)
    if hidden is not None:
        return JSONResponse(status_code=hidden.status_code, content={"detail": hidden.detail})
    return JSONResponse(status_code=404, content={"detail": str(exc)})


def _answer(code: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=code, content={"detail": str(exc)})

    return handler


def _safe(value: Any) -> Any:
    """``value`` with every string encodable as UTF-8 (lone surrogates become U+FFFD) and
    anything else JSON cannot carry as its ``str`` (``NaN``, ``Infinity``: Python's JSON
    reader takes them in a body, its writer refuses them)."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(_safe(k)): _safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return _safe(str(value))
