"""``GET /console/``: the incident console's page, script and stylesheet, under a strict CSP.

The Content-Security-Policy allows only this origin's script and stylesheet, no inline
script or style, no images or frames, and requires Trusted Types so that an HTML sink
(``innerHTML`` and the like) throws instead of parsing data. ``/console/now`` gives the
server's clock, so countdowns agree with the deadlines the server computes.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from importlib import resources
from typing import Final

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel

from api.runtime import Runtime

router = APIRouter(prefix="/console", tags=["console"], include_in_schema=False)

CSP: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
FILES: Final = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}


class ClockOut(BaseModel):
    now: datetime


@cache
def asset(name: str) -> bytes:
    """A file of ``api/console/static`` (read once, on first use)."""
    return resources.files("api.console").joinpath("static", name).read_bytes()


def _serve(name: str) -> Response:
    return Response(asset(name), media_type=FILES[name], headers=HEADERS)


@router.get("")
async def console_redirect() -> RedirectResponse:
    # relative, so the console also works behind a proxy that adds a path prefix
    return RedirectResponse("console/", status_code=status.HTTP_307_TEMPORARY_REDIRECT)


@router.get("/")
async def page() -> Response:
    return _serve("index.html")


@router.get("/now", response_model=ClockOut)
async def server_clock(request: Request) -> ClockOut:
    """The server's time: the console's countdowns are measured against it."""
    runtime: Runtime = request.app.state.runtime
    return ClockOut(now=runtime.clock.now())


@router.get("/{name}")
async def static_file(name: str) -> Response:
    if name not in FILES or name == "index.html":
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no console file {name!r}")
    return _serve(name)
