"""End to end, against a local HTTP server: the first read of a feed or a Telegram channel
publishes only what is newer than the source's ``initial_lookback_minutes``. Before, it
published everything the feed or page listed, items months or years old among them (in
a ``crisiswatch run`` they opened tier-1 incidents for 2024 posts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from core.clock import SystemClock
from listener.cursors import MemoryCursorStore
from listener.sources.feeds import FeedsConfig, FeedsSource
from listener.sources.telegram import TelegramConfig, TelegramSource
from tests.source_servers import (
    Downstream,
    rss_feed,
    run_listener,
    serve_http,
    static_app,
    telegram_preview,
)

OLD = datetime(2024, 3, 1, 8, tzinfo=UTC)


async def test_a_first_read_publishes_only_what_is_newer_than_the_lookback() -> None:
    now = datetime.now(UTC)
    pages: dict[str, tuple[bytes | str, str]] = {
        "/feed.xml": (
            # newest first, as feeds list them; one item without a date
            rss_feed(
                [
                    ("new", now - timedelta(minutes=5)),
                    ("undated", None),
                    ("old-2", OLD + timedelta(days=30)),
                    ("old-1", OLD),
                ]
            ),
            "application/rss+xml",
        ),
        "/s/acmewatch": (
            telegram_preview("acmewatch", [(7, OLD), (8, OLD + timedelta(days=1)), (9, now)]),
            "text/html",
        ),
    }
    bus = Downstream()
    async with serve_http(static_app(pages)) as port, httpx.AsyncClient() as http:
        base = f"http://127.0.0.1:{port}"
        rss = FeedsSource(
            FeedsConfig(feeds=[{"url": f"{base}/feed.xml"}]),
            http,
            SystemClock(),
            MemoryCursorStore(),
        )
        telegram = TelegramSource(
            TelegramConfig(channels=["acmewatch"], base_url=base),
            http,
            SystemClock(),
            MemoryCursorStore(),
        )
        services = [await run_listener(bus, rss), await run_listener(bus, telegram)]
        try:
            # each source delivers oldest first: once the newest item is through, every
            # older one that was going to be published has been
            await bus.until(
                lambda: {"acme new", "acme 9"} <= {m.text.split("\n")[0] for m in bus.sent}
            )
        finally:
            for service in services:
                await service.stop()
    assert sorted(m.text for m in bus.sent) == ["acme 9", "acme new"]
    assert rss.skips.backlog == 3 and telegram.skips.backlog == 2
