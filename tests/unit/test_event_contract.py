"""The event contracts at the boundary: ids are database keys, text may hold anything but
NUL, scores are finite."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.events import MAX_COUNT, HeatFeatures, Mention, Sentiment

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


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_scores_are_refused_where_the_event_is_built(bad: float) -> None:
    """JSON cannot carry them: Kafka's consumers would dead-letter such an event while the
    memory bus handed the instance over. Refused at construction, both buses agree."""
    with pytest.raises(ValidationError, match="finite number"):
        Sentiment(label="neutral", probs={"neutral": bad}, model="m", version="1")
    with pytest.raises(ValidationError, match="finite number"):
        HeatFeatures(
            mentions=1, mentions_window=1, window_minutes=5, unique_authors=1, reach=0,
            negative_share=0.0, predicted_size=bad,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value"),
    [("created_at", "0001-01-01T00:00:00+01:00"), ("edited_at", "9999-12-31T23:30:00-01:00")],
)
def test_a_time_out_of_range_in_utc_is_a_validation_error_not_a_crash(
    field: str, value: str
) -> None:
    """An OverflowError escaped pydantic: a 500 at the webhook, a stalled replay."""
    raw = {"id": "x:1", "source": "x", "created_at": "2026-01-01T00:00:00Z", field: value}
    with pytest.raises(ValidationError, match="out of range"):
        Mention.model_validate(raw)


def test_lone_surrogates_are_replaced_in_text_and_refused_in_ids() -> None:
    """json.loads accepts "\\ud800" (half an emoji); no JSON encoder writes it back out,
    so the event could not be published. Text keeps what it can; ids stay exact."""
    m = Mention.model_validate(
        {
            "id": "x:1",
            "source": "x",
            "text": "acme \ud800 ok \U0001f600",
            "author": {"handle": "a\udc00"},
            "created_at": "2026-01-01T00:00:00Z",
        }
    )
    assert m.text == "acme \ufffd ok \U0001f600" and m.author.handle == "a\ufffd"
    assert Mention.model_validate_json(m.model_dump_json()) == m
    for field in ("id", "source", "lang"):
        raw = {"id": "x:1", "source": "x", "created_at": "2026-01-01T00:00:00Z"}
        raw[field] = raw.get(field, "en") + "\ud800"
        with pytest.raises(ValidationError, match="lone surrogate"):
            Mention.model_validate(raw)


def test_counts_beyond_any_platform_are_capped_so_sums_stay_storable() -> None:
    """2**64 followers (a broken or hostile sender) made a story's reach too large for a
    64-bit column: the alerter could not store the Signal and retried it for ever."""
    mention = Mention.model_validate(
        {
            "id": "webhook:1",
            "source": "webhook",
            "created_at": "2026-01-05T08:59:00Z",
            "author": {"id": "u", "followers": 2**64},
            "engagement": {"likes": 10**30, "views": 2**63, "reposts": 7},
        }
    )
    assert mention.author is not None and mention.author.followers == MAX_COUNT
    assert (mention.engagement.likes, mention.engagement.views) == (MAX_COUNT, MAX_COUNT)
    assert mention.engagement.reposts == 7
    heat = HeatFeatures(
        mentions=1,
        mentions_window=1,
        window_minutes=10,
        unique_authors=1,
        reach=2**70,
        negative_share=0.0,
    )
    assert heat.reach == 2**63 - 1
    with pytest.raises(ValidationError):  # negative stays refused
        Mention.model_validate(
            {
                "id": "w:2",
                "source": "w",
                "created_at": "2026-01-05T08:59:00Z",
                "author": {"followers": -1},
            }
        )
