"""The fields of the mentions sources make, as a user reads them in an alert or a story."""

from __future__ import annotations

import json
from pathlib import Path

from listener.sources.reddit import map_thing

FIXTURES = Path(__file__).parent.parent / "fixtures" / "sources"


def test_a_reddit_comment_does_not_take_its_posts_comment_count_as_its_replies() -> None:
    """A comment of a ``/r/<sub>/comments`` listing carries the ``num_comments`` of the
    post it is under (14 here). Was: every comment under a busy post was given that many
    replies, as if each one drew the whole thread."""
    listing = json.loads((FIXTURES / "reddit/listing_subreddit_comments.json").read_text())
    [child] = listing["data"]["children"]
    comment = map_thing(child["data"])
    assert child["data"]["num_comments"] == 14
    assert comment.engagement.replies == 0
    assert comment.engagement.likes == 21
    post = json.loads((FIXTURES / "reddit/listing_search_new.json").read_text())
    assert map_thing(post["data"]["children"][0]["data"]).engagement.replies == 14
