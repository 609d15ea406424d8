"""One test per recorded payload (tests/fixtures/sources/<source>/): how each event type
maps to a Mention, or that it is skipped."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.events import Mention
from listener.sources.feeds import FeedConfig, map_item, parse_feed
from listener.sources.hackernews import map_hit
from listener.sources.jetstream import map_event
from listener.sources.mastodon import map_status, sse_events
from listener.sources.reddit import map_thing
from listener.sources.telegram import map_post, parse_page
from listener.sources.youtube import map_thread

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"
NOW = datetime(2024, 9, 9, 21, 0, tzinfo=UTC)
POST_URI = "at://did:plc:wa7b35aakoll7hugkrjtf3xf/app.bsky.feed.post/3l3qo2vuowo2b"


def load(path: str) -> Any:
    return json.loads((FIXTURES / path).read_text("utf-8"))


def jetstream(name: str) -> Mention | None:
    return map_event(load(f"jetstream/{name}.json"))


# --- Jetstream -------------------------------------------------------------------------


def test_jetstream_post_create_is_a_mention() -> None:
    m = jetstream("commit_create_post")
    assert m is not None
    assert m.id == f"bluesky:{POST_URI}"
    assert m.source == "bluesky"
    assert m.text.startswith("My Acme X2 caught fire")
    assert m.lang == "en"
    assert m.created_at == datetime(2024, 9, 9, 19, 46, 2, 102000, tzinfo=UTC)
    assert m.url == "https://bsky.app/profile/did:plc:wa7b35aakoll7hugkrjtf3xf/post/3l3qo2vuowo2b"
    assert m.author.id == "did:plc:wa7b35aakoll7hugkrjtf3xf"
    assert m.change == "created"


def test_jetstream_reply_points_at_its_parent() -> None:
    m = jetstream("commit_create_reply")
    assert m is not None and m.reply_to == f"bluesky:{POST_URI}"


def test_jetstream_repost_is_a_repost_of_the_subject() -> None:
    m = jetstream("commit_create_repost")
    assert m is not None
    assert m.repost_of == f"bluesky:{POST_URI}" and m.text == "" and m.url is None


@pytest.mark.parametrize("name", ["commit_create_quote", "commit_create_quote_with_media"])
def test_jetstream_quote_post_is_a_repost_of_the_quoted_post(name: str) -> None:
    m = jetstream(name)
    assert m is not None
    assert m.repost_of == f"bluesky:{POST_URI}"
    assert m.text.startswith(("Same thing", "Mine too")) and m.reply_to is None


def test_jetstream_update_is_an_edit_of_the_same_id() -> None:
    m = jetstream("commit_update_post")
    assert m is not None
    assert (m.id, m.change) == (f"bluesky:{POST_URI}", "edited")
    assert "known issue" in m.text
    assert m.edited_at == datetime.fromtimestamp(1725911190.112201, UTC)


def test_jetstream_delete_is_a_deletion_without_text() -> None:
    m = jetstream("commit_delete_post")
    assert m is not None
    assert (m.id, m.change, m.text) == (f"bluesky:{POST_URI}", "deleted", "")


@pytest.mark.parametrize("name", ["commit_create_like", "identity", "account"])
def test_jetstream_unsupported_events_are_skipped(name: str) -> None:
    assert jetstream(name) is None


def test_jetstream_malformed_commit_raises() -> None:
    event = load("jetstream/commit_create_post.json")
    del event["commit"]["rkey"]
    with pytest.raises(KeyError):
        map_event(event)


# --- Mastodon --------------------------------------------------------------------------


async def sse(name: str) -> list[tuple[str, str]]:
    async def lines() -> Any:
        for line in (FIXTURES / f"mastodon/{name}.sse").read_text("utf-8").split("\n"):
            yield line

    return [event async for event in sse_events(lines())]


async def test_mastodon_update_maps_a_status() -> None:
    [(event, data)] = await sse("update")
    assert event == "update"
    m = map_status(json.loads(data), "mastodon-example.social")
    assert m.id == "mastodon-example.social:113107745413932185"
    assert m.text == "My #Acme X2 caught fire while charging & support won't answer.\n\nNot ok."
    assert m.author.handle == "janedoe@example.social" and m.author.followers == 842
    assert (m.engagement.likes, m.engagement.reposts, m.engagement.replies) == (20, 12, 3)
    assert m.lang == "en" and m.change == "created"


async def test_mastodon_reblog_is_a_repost_without_text() -> None:
    [(_, data)] = await sse("update_reblog")
    m = map_status(json.loads(data), "mastodon-example.social")
    assert m.repost_of == "mastodon-example.social:113107745413932185"
    assert m.text == "" and m.author.handle == "bob"


async def test_mastodon_status_update_is_an_edit() -> None:
    [(event, data)] = await sse("status_update")
    assert event == "status.update"
    m = map_status(json.loads(data), "mastodon-example.social", edited=True)
    assert m.change == "edited"
    assert m.edited_at == datetime(2024, 9, 9, 20, 1, 13, 512000, tzinfo=UTC)
    assert "Update: they replied." in m.text


async def test_mastodon_delete_carries_the_bare_id() -> None:
    assert await sse("delete") == [("delete", "113107745413932185")]


@pytest.mark.parametrize("name", ["notification", "filters_changed"])
async def test_mastodon_unsupported_events_are_parsed_and_named(name: str) -> None:
    [(event, _)] = await sse(name)
    assert event == name  # the source skips events by name


async def test_mastodon_heartbeats_are_not_events() -> None:
    assert await sse("heartbeat") == []


def test_mastodon_timeline_page_maps_each_status() -> None:
    statuses = load("mastodon/timeline_public.json")
    ids = [map_status(s, "m").id for s in statuses]
    assert ids == ["m:113107745413932201", "m:113107745413932190"]


# --- RSS / Atom ------------------------------------------------------------------------


def rss(name: str) -> bytes:
    return (FIXTURES / f"rss/{name}").read_bytes()


def test_rss2_news_items() -> None:
    items = parse_feed(rss("news_rss2.xml"))
    assert [i.key for i in items] == [
        "https://news.example.com/2024/09/09/acme-x2-overheating",
        "news-example-88123",
    ]
    first = map_item(items[0], FeedConfig(url="https://news.example.com/feed.xml"), NOW)
    assert first.source == "news"
    assert first.text == (
        "Acme investigates reports of X2 phones overheating\n"
        "Several owners say their Acme X2 caught fire while charging."
    )
    assert first.author.handle == "Sam Reporter"
    assert first.created_at == datetime(2024, 9, 9, 20, 5, tzinfo=UTC)


def test_google_alerts_atom_unwraps_the_redirect_link() -> None:
    [item] = parse_feed(rss("google_alerts_atom.xml"))
    assert item.link == "https://blog.example.org/acme-x2-battery-fire"
    assert item.title == "Acme X2 battery fire: what owners should do"
    assert item.author is None  # Google Alerts sends an empty <name>
    m = map_item(item, FeedConfig(url="https://g.example/a", platform="google-alerts"), NOW)
    assert m.source == "google-alerts"
    assert m.created_at == datetime(2024, 9, 9, 20, 12, 33, tzinfo=UTC)


def test_rsshub_weibo_keyword_feed() -> None:
    [item] = parse_feed(rss("rsshub_weibo_keyword.xml"))
    m = map_item(
        item, FeedConfig(url="http://localhost:1200/weibo/keyword/Acme", platform="weibo"), NOW
    )
    assert m.source == "weibo"
    assert m.text == "Acme手机充电起火，太危险了，必须召回！"
    assert m.url == "https://weibo.com/1195230310/OuQpB2xYz"
    assert m.author.handle == "数码小王"


def test_an_html_page_is_not_a_feed() -> None:
    with pytest.raises(ValueError, match="not an RSS or Atom feed"):
        parse_feed(rss("not_a_feed.html"))


def test_entity_expansion_is_refused() -> None:
    with pytest.raises(ValueError, match="refused XML"):
        parse_feed(rss("entity_expansion.xml"))


# --- Hacker News -----------------------------------------------------------------------


def test_hn_story_hit() -> None:
    [hit] = load("hackernews/search_by_date_story.json")["hits"]
    m = map_hit(hit)
    assert m.id == "hackernews:41492001"
    assert m.text == "Acme X2 phones catching fire while charging"
    assert m.url == "https://news.example.com/2024/09/09/acme-x2-overheating"
    assert (m.engagement.likes, m.engagement.replies) == (34, 1)
    assert m.reply_to is None
    assert m.created_at == datetime.fromtimestamp(1725913211, UTC)


def test_hn_comment_hit_is_a_reply_with_plain_text() -> None:
    [hit] = load("hackernews/search_by_date_comment.json")["hits"]
    m = map_hit(hit)
    assert m.reply_to == "hackernews:41492001"
    assert m.url == "https://news.ycombinator.com/item?id=41492110"
    assert m.text == (
        "I had the same problem with my Acme X2.\n"
        "The charger got hot & the case melted: https://example.org/pic"
    )


def test_hn_empty_page_has_no_hits() -> None:
    body = load("hackernews/search_by_date_empty.json")
    assert body["hits"] == [] and body["nbPages"] == 0


def test_hn_rate_limit_body_is_not_a_result_page() -> None:
    assert "hits" not in load("hackernews/rate_limited.json")


# --- Reddit ----------------------------------------------------------------------------


def test_reddit_search_listing_posts() -> None:
    newest, older = load("reddit/listing_search_new.json")["data"]["children"]
    m = map_thing(newest["data"])
    assert m.id == "reddit:t3_1fcz1bb" and m.source == "reddit"
    assert m.text == (
        "Acme X2 caught fire on my nightstand\n"
        "Woke up to smoke. Acme support says to mail it back at my cost."
    )
    assert m.url == "https://www.reddit.com/r/gadgets/comments/1fcz1bb/slug/"
    assert (m.engagement.likes, m.engagement.replies) == (57, 14)
    assert m.created_at == datetime.fromtimestamp(1725913311, UTC)
    deleted_author = map_thing(older["data"])
    assert deleted_author.text == "Is the Acme X2 worth it?"
    assert deleted_author.author.handle is None  # each counts as an author of its own


def test_reddit_comment_listing_is_a_reply() -> None:
    [child] = load("reddit/listing_subreddit_comments.json")["data"]["children"]
    m = map_thing(child["data"])
    assert m.id == "reddit:t1_lm7k2x9" and m.reply_to == "reddit:t3_1fcz1bb"
    assert m.text == "Same with mine. The **charger** got hot first."


def test_reddit_token_payloads() -> None:
    assert load("reddit/access_token.json")["token_type"] == "bearer"
    assert "access_token" not in load("reddit/access_token_error.json")
    assert load("reddit/rate_limited.json")["error"] == 429


# --- Telegram --------------------------------------------------------------------------


def telegram(name: str) -> str:
    return (FIXTURES / f"telegram/{name}").read_text("utf-8")


def test_telegram_channel_page_posts_and_service_messages() -> None:
    posts = parse_page(telegram("channel_page.html"))
    assert [(p.number, p.service) for p in posts] == [(1840, False), (1841, True), (1842, False)]
    m = map_post(posts[0], NOW)
    assert m.id == "telegram:acmewatch/1840" and m.url == "https://t.me/acmewatch/1840"
    assert m.text == (
        "Acme X2 caught fire while charging — reports from three cities.\n"
        "Acme has not answered yet."
    )
    assert m.engagement.views == 12_400
    assert m.created_at == datetime(2024, 9, 9, 19, 46, 2, tzinfo=UTC)
    assert map_post(posts[2], NOW).text == "Acme手机充电起火，必须召回！"


def test_telegram_older_page() -> None:
    posts = parse_page(telegram("channel_page_before_1840.html"))
    assert [p.number for p in posts] == [1838, 1839]
    assert posts[0].views == 1_100_000


def test_telegram_channel_without_preview_has_no_posts() -> None:
    assert parse_page(telegram("no_preview.html")) == []


# --- YouTube ---------------------------------------------------------------------------


def test_youtube_comment_threads_page() -> None:
    newest, older = load("youtube/comment_threads_page.json")["items"]
    m = map_thread(newest)
    assert m.id == "youtube:UgzNewest123AaBbCcDd4AaABAg" and m.source == "youtube"
    assert m.text == "Mine caught fire too. Acme, recall the X2!"
    assert m.url == "https://www.youtube.com/watch?v=dQw4w9WgXcQ&lc=UgzNewest123AaBbCcDd4AaABAg"
    assert m.author.handle == "@sparkyreviews" and m.author.id == "UCx1y2z3a4b5c6d7e8f9g0h1"
    assert (m.engagement.likes, m.engagement.replies) == (41, 6)
    assert m.created_at == datetime(2024, 9, 9, 20, 5, 12, tzinfo=UTC)
    assert map_thread(older).created_at < m.created_at


def test_youtube_empty_page() -> None:
    assert load("youtube/comment_threads_empty.json")["items"] == []


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("error_quota_exceeded", "quotaExceeded"),
        ("error_comments_disabled", "commentsDisabled"),
        ("error_key_invalid", "badRequest"),
    ],
)
def test_youtube_error_bodies_name_their_reason(name: str, reason: str) -> None:
    assert load(f"youtube/{name}.json")["error"]["errors"][0]["reason"] == reason
