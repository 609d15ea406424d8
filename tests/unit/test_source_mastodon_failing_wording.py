"""Mastodon's failing-target log line says, like the other sources', what goes on
meanwhile: a Mastodon source reads one timeline, so nothing is read while it fails."""

from __future__ import annotations

import logging

import httpx
import pytest

from core.metrics import Metrics
from listener.cursors import MemoryCursorStore
from listener.sources.mastodon import MastodonConfig, MastodonSource
from tests.unit.test_source_live import RecordingClock, take
from tests.unit.test_source_target_errors import CURSOR, INSTANCE, PAGE


async def test_mastodon_failing_timeline_says_nothing_is_read_meanwhile(
    caplog: pytest.LogCaptureFixture,
) -> None:
    requests = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal requests
        requests += 1
        if requests == 1:
            return httpx.Response(404, json={"error": "Record not found"})
        if request.url.params["min_id"] == CURSOR:
            return httpx.Response(200, json=PAGE)
        return httpx.Response(200, json=[])

    store = MemoryCursorStore()
    store.cursors["acme-tag"] = CURSOR
    config = MastodonConfig.model_validate(
        {**INSTANCE, "timeline": "hashtag", "hashtag": "acme", "mode": "poll"}
    )
    caplog.set_level(logging.WARNING, logger="listener.sources.targets")
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        source = MastodonSource(config, http, RecordingClock(), store, Metrics())
        await source.start()
        await take(source.mentions(), 1)
    lines = [r.getMessage() for r in caplog.records if "failed (" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].endswith(
        "skipped for 30 s (the source's only target: nothing is read meanwhile)"
    ), lines[0]
