"""The API's documentation pages work air-gapped: ``/docs`` and ``/redoc`` load their
scripts, styles and icon from this server, never from a CDN (FastAPI's own pages load
them from cdn.jsdelivr.net and fonts from Google, so offline they stayed blank)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from api.runtime import Runtime
from tests.integration.test_console_browser import WAIT_S, LiveServer, _chrome, live

__all__ = ["live"]  # the fixture, imported for these tests

pytestmark = pytest.mark.browser


def _external(page: str, server: str) -> list[str]:
    """Every absolute http(s) URL a page's tags load from (``src``/``href``), and any in
    its scripts, that is not the server's own."""
    urls = re.findall(r"""(?:src|href|url)\s*[=:(]\s*['"]?(https?://[^'")\s>]+)""", page)
    return [u for u in urls if not u.startswith(server)]


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_documentation_pages_load_nothing_from_elsewhere(
    live: tuple[LiveServer, Runtime], path: str
) -> None:
    server, _ = live
    page = httpx.get(server.url + path, timeout=WAIT_S)
    assert page.status_code == 200, page.text
    assert "text/html" in page.headers["content-type"]
    assert _external(page.text, server.url) == [], page.text
    assets = re.findall(r"""(?:src|href)=['"](/docs-assets/[^'"]+)['"]""", page.text)
    assert len(assets) >= 2 if path == "/docs" else len(assets) >= 1, page.text
    for asset in assets:
        got = httpx.get(server.url + asset, timeout=WAIT_S)
        assert got.status_code == 200, asset
        assert len(got.content) > 1000, asset


def test_swagger_ui_renders_every_operation_offline(live: tuple[LiveServer, Runtime]) -> None:
    """In a browser that can reach only this server (the test machine has no internet
    either), Swagger UI draws the API's operations from ``/openapi.json``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server, _ = live
    paths = httpx.get(server.url + "/openapi.json", timeout=WAIT_S).json()["paths"]
    operations = sum(len(ops) for ops in paths.values())
    driver = _chrome()
    try:
        driver.get(server.url + "/docs")

        def drawn(d: Any) -> int:
            return len(d.find_elements(By.CSS_SELECTOR, ".opblock"))

        WebDriverWait(driver, WAIT_S).until(lambda d: drawn(d) >= operations)
        assert drawn(driver) == operations
        assert "incidents" in driver.find_element(By.CSS_SELECTOR, ".swagger-ui").text
        errors = [
            e["message"]
            for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and "favicon" not in e["message"]
        ]
        assert errors == []
    finally:
        driver.quit()
