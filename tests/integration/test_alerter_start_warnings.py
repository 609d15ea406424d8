"""An alerter says at start what ``check-config`` says about its routes: a matcher that
no alert can satisfy (a watch's name misspelt) sends that route's alerts elsewhere
without an error, and a deployment that never runs ``check-config`` saw nothing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from alerts.config import AlertsConfig
from api.runtime import Role, Runtime
from api.settings import Settings
from core.settings import BusConfig, DatabaseConfig
from listener.config import ListenerConfig, WatchConfig
from tests.fakes import FakeClassifier


async def test_an_alerter_warns_at_start_about_a_route_that_never_matches(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    alerts = AlertsConfig.model_validate(
        {
            "channels": {"log": {"type": "console"}},
            "teams": {"pr": {"channels": ["log"]}, "legal": {"channels": ["log"]}},
            "routes": {
                "teams": ["pr"],
                "routes": [{"match": {"watch": ["acmee"]}, "teams": ["legal"]}],
            },
        }
    )
    settings = Settings(
        database=DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"),
        bus=BusConfig(journal="off"),
        listener=ListenerConfig(watches=[WatchConfig(id="acme", brand="Acme", terms=["acme"])]),
        alerts=alerts,
    )
    runtime = Runtime(
        settings, roles=frozenset({Role.ALERTER}), classifier=FakeClassifier(), migrate=True
    )
    caplog.set_level(logging.WARNING)
    await runtime.start()
    try:
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(
            "routes.routes[0].match.watch: no watch 'acmee' is configured" in line for line in said
        ), said
    finally:
        await runtime.stop()
