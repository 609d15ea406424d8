"""What a user writes in the sources' config from the README, read or refused in words.
Was: a video's address for its id, an @handle for a channel id, ``r/gadgets`` or
"gadgets, tech" for subreddits passed check-config and failed at run time as targets "not
found" (like a deleted video); ``https://mastodon.social/`` (with its slash) and
``hashtag: "#acme"`` were refused with a regular expression, as were a feed address
without its scheme, a capitalised name and Jetstream's address given as https://."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from listener.config import ListenerConfig
from listener.sources.feeds import FeedConfig
from listener.sources.jetstream import JetstreamConfig
from listener.sources.mastodon import MastodonConfig
from listener.sources.reddit import RedditConfig
from listener.sources.telegram import TelegramConfig
from listener.sources.youtube import YouTubeConfig

REDDIT = {"client_id": "id", "client_secret": "s", "user_agent": "ua"}


def refused(model: type, data: dict[str, object]) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    [error] = caught.value.errors()
    message = str(error["msg"])
    assert "should match pattern" not in message
    return message


@pytest.mark.parametrize(
    ("given", "hint"),
    [
        ("https://www.youtube.com/watch?v=dQw4w9WgXcQ", "write dQw4w9WgXcQ"),
        ("https://youtu.be/dQw4w9WgXcQ?si=abc", "write dQw4w9WgXcQ"),
        ("www.youtube.com/shorts/dQw4w9WgXcQ", "write dQw4w9WgXcQ"),
        ("dQw4w9WgXcQ, abcdefghijk", "give the id alone"),
    ],
)
def test_a_video_address_is_refused_naming_its_id(given: str, hint: str) -> None:
    message = refused(YouTubeConfig, {"api_key": "k", "videos": [given]})
    assert "is not a video id" in message and hint in message


@pytest.mark.parametrize(
    ("given", "hint"),
    [
        ("@acme", "not its @handle"),
        ("https://www.youtube.com/@acme", "not its @handle"),
        (
            "https://www.youtube.com/channel/UCx1y2z3a4b5c6d7e8f9g0h1",
            "write UCx1y2z3a4b5c6d7e8f9g0h1",
        ),
    ],
)
def test_a_channel_handle_or_address_is_refused_saying_what_an_id_is(given: str, hint: str) -> None:
    message = refused(YouTubeConfig, {"api_key": "k", "channels": [given]})
    assert "is not a channel id" in message and hint in message


def test_ids_as_the_platforms_make_them_pass() -> None:
    config = YouTubeConfig.model_validate(
        {
            "api_key": "k",
            "videos": ["dQw4w9WgXcQ", "a-b_c"],
            "channels": ["UCx1y2z3a4b5c6d7e8f9g0h1"],
        }
    )
    assert config.videos == ["dQw4w9WgXcQ", "a-b_c"]
    reddit = RedditConfig.model_validate({**REDDIT, "subreddits": ["gadgets", "android+apple"]})
    assert reddit.subreddits == ["gadgets", "android+apple"]
    assert TelegramConfig(channels=["acmewatch"]).channels == ["acmewatch"]


@pytest.mark.parametrize(
    ("given", "hint"),
    [
        ("r/gadgets", "(write gadgets)"),
        ("https://www.reddit.com/r/gadgets/", "(write gadgets)"),
        ("gadgets, android", "one per entry"),
    ],
)
def test_a_subreddit_written_otherwise_than_its_name_is_refused(given: str, hint: str) -> None:
    for key in ("subreddits", "subreddit_comments"):
        message = refused(RedditConfig, {**REDDIT, key: [given]})
        assert "is not a subreddit name" in message and hint in message


@pytest.mark.parametrize("given", ["@acmewatch", "https://t.me/acmewatch", "t.me/s/acmewatch"])
def test_a_telegram_channel_written_as_a_handle_or_address_is_refused_naming_it(
    given: str,
) -> None:
    message = refused(TelegramConfig, {"channels": [given]})
    assert "(write acmewatch)" in message


def test_a_mastodon_instance_with_its_slash_and_a_hashtag_with_its_hash_are_read() -> None:
    config = MastodonConfig.model_validate(
        {
            "instance": "https://mastodon.social/",
            "access_token": "t",
            "timeline": "hashtag",
            "hashtag": "#acme",
        }
    )
    assert (config.instance, config.hashtag) == ("https://mastodon.social", "acme")


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"instance": "mastodon.social"}, "(write https://mastodon.social)"),
        ({"instance": "https://mastodon.social/@acme"}, "(write https://mastodon.social)"),
        ({"instance": "https://m.example", "name": "Mastodon Social"}, "e.g. mastodon-social"),
        (
            {"instance": "https://m.example", "timeline": "hashtag", "hashtag": "acme phone"},
            "is not one hashtag",
        ),
        (
            {"instance": "https://m.example", "timeline": "hashtag", "hashtag": "acme/x"},
            "is not one hashtag",
        ),
    ],
)
def test_mastodon_settings_written_wrong_are_refused_in_words(
    data: dict[str, object], words: str
) -> None:
    assert words in refused(MastodonConfig, {"access_token": "t", **data})


def test_a_feed_address_without_its_scheme_and_a_platform_in_capitals_are_refused_in_words() -> (
    None
):
    message = refused(FeedConfig, {"url": "news.example.com/feed.xml"})
    assert "(write https://news.example.com/feed.xml)" in message
    message = refused(FeedConfig, {"url": "https://g.example/f", "platform": "Google Alerts"})
    assert "e.g. google-alerts" in message


def test_jetstream_given_as_https_is_refused_naming_its_wss_address() -> None:
    message = refused(
        JetstreamConfig, {"endpoint": "https://jetstream2.us-east.bsky.network/subscribe"}
    )
    assert "(write wss://jetstream2.us-east.bsky.network/subscribe)" in message


def test_check_config_names_the_setting() -> None:
    with pytest.raises(ValidationError) as caught:
        ListenerConfig.model_validate(
            {"sources": {"youtube": {"api_key": "k", "videos": ["https://youtu.be/dQw4w9WgXcQ"]}}}
        )
    [error] = caught.value.errors()
    assert error["loc"] == ("sources", "youtube", "videos")
