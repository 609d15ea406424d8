"""A Telegram channel whose t.me/s page comes back 200 but is no channel preview (t.me's
page for a name without a preview, served when the redirect was followed by a proxy; a
consent or captcha page; a layout t.me changed). Was: read as a channel without posts,
so the source said "polling", no error, and the channel was silently never heard."""

from __future__ import annotations

from pathlib import Path

import httpx

from core.metrics import Metrics
from listener.cursors import MemoryCursorStore
from listener.sources.telegram import TelegramConfig, TelegramSource
from tests.unit.test_source_live import EndingClock, deliver_all

FIXTURES = Path(__file__).parent.parent / "fixtures" / "sources" / "telegram"
EMPTY_CHANNEL = (
    '<html><body><section class="tgme_channel_history js-message_history"></section></body></html>'
)


async def run(pages: dict[str, str]) -> TelegramSource:
    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=pages[request.url.path.rsplit("/", 1)[1]])

    config = TelegramConfig(channels=list(pages))
    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
        source = TelegramSource(config, http, EndingClock(polls=2), MemoryCursorStore(), Metrics())
        await source.start()
        await deliver_all(source)
    return source


async def test_a_page_that_is_no_channel_preview_is_that_channels_error() -> None:
    source = await run(
        {
            "acmewatch": (FIXTURES / "no_preview.html").read_text("utf-8"),
            "acmenews": (FIXTURES / "channel_page.html").read_text("utf-8"),
        }
    )
    assert list(source.health.failing_targets) == ["acmewatch"]
    assert "not a channel preview" in source.health.failing_targets["acmewatch"]
    assert source.health.events == 2  # the other channel is read


async def test_a_channel_without_posts_yet_is_quiet_not_failing() -> None:
    source = await run({"acmewatch": EMPTY_CHANNEL})
    assert source.health.failing_targets == {}
    assert source.health.errors == 0
