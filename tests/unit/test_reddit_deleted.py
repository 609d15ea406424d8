"""Reddit things whose author or text is gone: a deleted author is no author handle (each
such mention counts as an author of its own in a story), and the placeholders Reddit puts
in place of a removed or deleted text are no text (a bare mention downstream)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from core.events import Mention
from listener.sources.reddit import _said, map_thing
from sentiment.detector.config import DetectorConfig
from sentiment.detector.heat import StoryHeat
from sentiment.textnorm import shows_nothing

T0 = datetime(2024, 9, 9, 20, 0, tzinfo=UTC)

PLACEHOLDERS = [
    "[removed]",
    "[deleted]",
    "[Removed]",
    " [removed] \n",
    "[ Removed by Reddit ]",
    "[Removed by Reddit]",
    "[ Removed by Reddit on account of violating the [content policy](/help/contentpolicy). ]",
    "[ Removed by Reddit on account of violating the content policy. ]",
    "[ Removed by reddit in response to a copyright notice. ]",
    "[removed by moderator]",
    "[ Removed by moderator ]",
    "[deleted by user]",
]


def comment(body: str, author: str = "[deleted]", **extra: Any) -> dict[str, Any]:
    return {
        "name": "t1_lm7k2x9",
        "parent_id": "t3_1fcz1bb",
        "created_utc": T0.timestamp(),
        "permalink": "/r/gadgets/comments/1fcz1bb/slug/lm7k2x9/",
        "author": author,
        "body": body,
        **extra,
    }


def post(title: str, selftext: str, author: str = "[deleted]", **extra: Any) -> dict[str, Any]:
    return {
        "name": "t3_1fcz0aa",
        "created_utc": T0.timestamp(),
        "permalink": "/r/gadgets/comments/1fcz0aa/slug/",
        "author": author,
        "title": title,
        "selftext": selftext,
        **extra,
    }


def test_a_deleted_author_is_no_handle() -> None:
    m = map_thing(comment("The charger melted.", author="[deleted]"))
    assert (m.author.id, m.author.handle) == (None, None)
    assert m.text == "The charger melted."


def test_a_live_author_keeps_handle_and_id() -> None:
    m = map_thing(comment("The charger melted.", author="acme_fan", author_fullname="t2_9x8y7z"))
    assert (m.author.id, m.author.handle) == ("t2_9x8y7z", "acme_fan")


def test_deleted_authors_of_a_story_count_one_each() -> None:
    """Before: every deleted author was "reddit/@[deleted]", one author for the story."""
    heat = StoryHeat(DetectorConfig(), T0)
    for n in range(3):
        thing = comment(f"Mine too ({n}).", name=f"t1_c{n}")
        heat.add(map_thing(thing), "negative", is_root=n == 0, now=T0)
    assert heat.authors == 3


@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
def test_a_removed_comment_has_no_text(placeholder: str) -> None:
    m = map_thing(comment(placeholder))
    assert m.text == ""
    assert shows_nothing(m.text)  # downstream: a bare mention (no text of its own)
    assert m.reply_to == "reddit:t3_1fcz1bb"  # still continues its post's story


@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
def test_a_removed_post_keeps_its_title(placeholder: str) -> None:
    m = map_thing(post("Acme X2 caught fire", placeholder))
    assert m.text == "Acme X2 caught fire"


def test_a_post_removed_by_reddit_whole_has_no_text() -> None:
    m = map_thing(
        post(
            "[ Removed by Reddit ]",
            "[ Removed by Reddit on account of violating the [content policy]"
            "(/help/contentpolicy). ]",
        )
    )
    assert m.text == ""


@pytest.mark.parametrize(
    "text",
    [
        "[removed] the battery and it still smokes",
        "Acme [deleted] my support ticket",
        "[removed by mods, lol]",
        "[Removed] [Removed]",
    ],
)
def test_a_text_that_only_mentions_removal_is_kept(text: str) -> None:
    assert map_thing(comment(text)).text == text


def test_a_mention_without_author_is_valid() -> None:
    m = map_thing(comment("Same here.", author="[deleted]"))
    assert Mention.model_validate_json(m.model_dump_json()).author.handle is None


@pytest.mark.parametrize(
    "text",
    [
        "[deleted by user] lol they really said that, see [this]",
        "[removed by moderator] but the mods [sic] were right",
        "[ Removed by Reddit ] and then [deleted]",
    ],
)
def test_a_comment_that_only_starts_with_a_placeholder_is_kept(text: str) -> None:
    """The placeholder is the whole value or nothing: a comment quoting one and going on
    (with brackets of its own) is somebody's words."""
    assert _said(text) == text
