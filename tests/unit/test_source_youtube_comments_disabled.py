"""A video whose comments are disabled. Was: an empty answer at every poll (a warning in
the log each time, nothing in ``GET /sources``): the source said "polling", no error,
and the operator could not tell the video was never heard."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from core.metrics import Metrics
from listener.cursors import MemoryCursorStore
from listener.sources.youtube import YouTubeConfig, YouTubeSource
from tests.unit.test_source_live import EndingClock, deliver_all

FIXTURES = Path(__file__).parent.parent / "fixtures" / "sources" / "youtube"


async def test_a_video_with_comments_disabled_is_a_failing_target_in_the_health() -> None:
    requested: list[str | None] = []

    def serve(request: httpx.Request) -> httpx.Response:
        video = request.url.params.get("videoId")
        requested.append(video)
        if video == "closedvideo":
            disabled = json.loads((FIXTURES / "error_comments_disabled.json").read_text())
            return httpx.Response(403, json=disabled)
        page = json.loads((FIXTURES / "comment_threads_page.json").read_text())
        return httpx.Response(200, json={**page, "nextPageToken": None})

    config = YouTubeConfig.model_validate(
        {"api_key": "k", "videos": ["closedvideo", "dQw4w9WgXcQ"], "poll_seconds": 300}
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
        source = YouTubeSource(config, http, EndingClock(polls=3), MemoryCursorStore(), Metrics())
        await source.start()
        got = await deliver_all(source)
    assert len(got) == 2  # the other video's comments
    failing = source.health.failing_targets
    assert list(failing) == ["video:closedvideo"]
    assert "comments are disabled on videoId=closedvideo" in failing["video:closedvideo"]
    # asked again later (comments can be turned back on), its wait doubling
    assert requested == ["closedvideo", "dQw4w9WgXcQ"] * 2 + ["dQw4w9WgXcQ"]
