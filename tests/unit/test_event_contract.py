"""The Mention contract at the boundary: ids are database keys, text may hold anything but NUL."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.events import Mention

BASE = '{"id": %s, "source": "x", "created_at": "2026-01-01T00:00:00Z"%s}'


def parse(mention_id: str, extra: str = "") -> Mention:
    return Mention.model_validate_json(BASE % (mention_id, extra))


@pytest.mark.parametrize(
    "bad", [r'"x:1\u0000"', r'"x:\u00011"', r'"x:1\u001f"', '"x:1 2"', '"xyz1"']
)
def test_ids_with_control_characters_or_spaces_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="should match pattern"):
        parse(bad)


def test_nul_in_text_names_links_and_parent_ids_is_replaced_not_stored() -> None:
    m = parse(
        '"weibo:1"',
        r', "text": "a\u0000b", "url": "https://x/\u0000", "reply_to": "weibo:\u00002",'
        r' "author": {"id": "\u0000", "handle": "n\u0000"}',
    )
    assert m.text == "a\ufffdb" and m.url == "https://x/\ufffd"
    assert m.reply_to == "weibo:\ufffd2" and m.author.handle == "n\ufffd"
    assert m.author.id == "\ufffd"
    assert "\x00" not in m.model_dump_json()


def test_ordinary_ids_and_text_are_unchanged() -> None:
    m = parse('"bluesky:at://did:plc:abc/app.bsky.feed.post/3k"', ', "text": "好 \\n ok"')
    assert m.id == "bluesky:at://did:plc:abc/app.bsky.feed.post/3k" and m.text == "好 \n ok"
