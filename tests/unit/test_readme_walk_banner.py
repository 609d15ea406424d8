"""The README's demo walkthrough: what the start-up banner shows a new user."""

from __future__ import annotations

from api.serve import _banner, with_demo
from api.settings import Settings


def test_the_banner_names_the_incident_console() -> None:
    # The README sends the demo's user to the incident console (``/console/``) to watch the
    # alert appear and acknowledge it, and says the start-up prints "the URLs to use": the
    # banner gave the API, docs and metrics, but not the console's page.
    text = _banner(with_demo(Settings()), "cw_test", "127.0.0.1", 8000)
    assert "console: http://127.0.0.1:8000/console/" in text
