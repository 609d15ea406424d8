"""A Mastodon status whose author hides their follower count: Mastodon answers
``followers_count: -1`` for such an account seen from another instance (and counts that
went below zero are known: mastodon/mastodon#17440). Was: a negative count is no valid
Mention, so the status was skipped as unreadable and counted as an error: every post of
such an author on the timeline was lost. Now the unknown count is no count."""

from __future__ import annotations

from typing import Any

import httpx

from core.metrics import Metrics
from listener.cursors import MemoryCursorStore
from listener.sources.mastodon import MastodonConfig, MastodonSource, map_status
from tests.unit.test_source_live import EndingClock, deliver_all

PREFIX = "mastodon-m.example"


def status(status_id: str, followers: int, replies: int = 2) -> dict[str, Any]:
    return {
        "id": status_id,
        "created_at": "2024-09-09T20:29:02.000Z",
        "content": f"<p>acme x2 caught fire {status_id}</p>",
        "replies_count": replies,
        "reblogs_count": 1,
        "favourites_count": 4,
        "account": {
            "id": "7",
            "acct": "hidden@other.example",
            "url": "https://other.example/@hidden",
            "followers_count": followers,
        },
    }


def test_a_hidden_follower_count_is_no_count() -> None:
    mention = map_status(status("101", followers=-1, replies=-2), PREFIX)
    assert mention.author.followers is None
    assert mention.engagement.replies == 0
    assert mention.engagement.likes == 4


async def test_the_posts_of_an_author_hiding_their_followers_are_delivered() -> None:
    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("min_id") == "100":
            return httpx.Response(200, json=[status("102", -1), status("101", 842)])
        return httpx.Response(200, json=[])

    config = MastodonConfig(instance="https://m.example", access_token="tok", mode="poll")
    store = MemoryCursorStore()
    store.cursors["mastodon"] = "100"
    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
        source = MastodonSource(config, http, EndingClock(polls=2), store, Metrics())
        await source.start()
        got = await deliver_all(source)
    assert [m.id for m in got] == [f"{PREFIX}:101", f"{PREFIX}:102"]
    assert source.health.errors == 0
