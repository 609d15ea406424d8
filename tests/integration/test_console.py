"""The incident console's files, headers and the deadline fields it reads (no browser)."""

from __future__ import annotations

import re
import tomllib
from datetime import timedelta
from fnmatch import fnmatch
from pathlib import Path

from api.console.router import FILES
from core.clock import ManualClock
from tests.access_support import key_headers, open_incident, role_api

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "api" / "console" / "static"


async def test_page_script_and_style_are_served_under_a_strict_csp(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with role_api(tmp_path, clock) as (client, _):
        r = await client.get("/console")
        assert r.status_code == 307
        assert r.headers["location"] == "console/"
        page = await client.get("/console/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert "require-trusted-types-for 'script'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        # no inline script or style: every <script> has a src, no style/on* attributes
        assert re.findall(r"<script(?![^>]*\bsrc=)", page.text) == []
        assert not re.search(r"\s(style|on\w+)=", page.text)
        for name, media in (("console.js", "text/javascript"), ("console.css", "text/css")):
            r = await client.get(f"/console/{name}")
            assert r.status_code == 200
            assert r.headers["content-type"].startswith(media)
            assert r.headers["content-security-policy"] == csp
        assert (await client.get("/console/secrets.txt")).status_code == 404
        assert (await client.get("/console/index.html")).status_code == 404
        # the server's clock, for the countdowns
        r = await client.get("/console/now")
        assert r.json()["now"].startswith(clock.now().isoformat()[:19])


def test_the_script_uses_no_html_sink_and_keeps_the_key_out_of_urls() -> None:
    script = (STATIC / "console.js").read_text("utf-8")
    code = "\n".join(line for line in script.splitlines() if not line.strip().startswith("//"))
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function", "localStorage"):  # fmt: skip
        assert sink not in code, sink
    assert "sessionStorage" in code
    assert "Authorization" in code
    assert not re.search(r"[?&](api_)?key=", code)


def test_console_files_are_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["api.console"]
    for name in FILES:
        assert (STATIC / name).is_file(), name
        assert any(fnmatch(f"static/{name}", p) for p in patterns), name


async def test_incidents_expose_their_sla_deadline(tmp_path: Path, clock: ManualClock) -> None:
    async with role_api(tmp_path, clock) as (client, runtime):
        tier2 = await open_incident(runtime, clock, tier=2)
        tier3 = await open_incident(runtime, clock, tier=3)
        r = await client.get(f"/incidents/{tier2}", headers=key_headers("viewer"))
        body = r.json()
        due = clock.now() + timedelta(hours=1)  # the default tier-2 SLA: a statement in 1 h
        assert body["sla_due_at"].startswith(due.isoformat()[:19])
        assert body["sla_met_by"] == "responded"
        assert body["sla_met_at"] is None
        assert body["sla_breached_at"] is None
        clock.advance(60)
        r = await client.post(f"/incidents/{tier3}/ack", headers=key_headers("responder"))
        assert r.json()["sla_met_by"] == "acknowledged"
        assert r.json()["sla_met_at"].startswith(clock.now().isoformat()[:19])
        listed = await client.get("/incidents", headers=key_headers("viewer"))
        assert {i["id"]: i["sla_met_by"] for i in listed.json()["items"]} == {
            tier2: "responded",
            tier3: "acknowledged",
        }
