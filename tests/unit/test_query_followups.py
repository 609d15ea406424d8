"""Follow-ups of the third query review: each test failed before its fix."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from core.bus.memory import MemoryBus
from core.clock import ManualClock
from core.events import Mention
from core.metrics import Metrics
from listener.backfill import watch_queries
from listener.config import ListenerConfig, WatchConfig
from listener.dedup import Deduplicator, delivery_key
from listener.query import QueryError, Subject, compile_query
from listener.service import ListenerService
from listener.watches import WatchMatcher

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def matched(config: WatchConfig, text: str) -> tuple[str, ...] | None:
    """The watch's matched terms for ``text`` (None: no match)."""
    found = WatchMatcher([config]).match(text)
    return found[0].terms if found else None


# 1. A trailing "*" in a terms/exclude entry was the literal "*": refund* matched nothing.


def test_a_trailing_star_in_terms_is_a_prefix_as_in_aliases() -> None:
    watch = WatchConfig(id="w", terms=["refund*", "job opening*"])
    assert matched(watch, "They REFUNDED me at last") == ("refund*",)
    assert matched(watch, "refunds please") == ("refund*",)
    assert matched(watch, "two job openings at Acme") == ("job opening*",)
    assert matched(watch, "prefund") is None  # still a word start


def test_a_trailing_star_in_exclude_is_a_prefix() -> None:
    watch = WatchConfig(id="w", terms=["acme"], exclude=["giveaway*", "job opening*"])
    assert matched(watch, "acme giveaways today") is None
    assert matched(watch, "acme has job openings") is None
    assert matched(watch, "acme refund") == ("acme",)


@pytest.mark.parametrize("entry", ["x*", "*", "acme *"])
@pytest.mark.parametrize("field", ["terms", "exclude"])
def test_a_star_with_too_little_before_it_in_an_entry_is_refused(field: str, entry: str) -> None:
    fields: dict[str, object] = {"terms": ["acme"], field: [entry]}
    with pytest.raises(ValidationError, match="at least 2 characters before '\\*'") as info:
        WatchConfig.model_validate({"id": "w", **fields})
    assert f"{field}: entry {entry!r}" in str(info.value)


def test_an_alias_star_after_a_space_is_refused_as_in_a_query() -> None:
    """``acme *`` was the prefix ``acme*`` (in a query, a lone ``*`` is an error)."""
    with pytest.raises(QueryError, match="at least 2 characters before"):
        compile_query("@a", {"a": ["acme *"]})


def test_backfill_searches_a_terms_prefix_without_its_star() -> None:
    watch = WatchConfig(id="w", terms=["refund*", "refund", "acme"])
    assert watch_queries(watch) == ["refund", "acme"]


# 2. "acme?" (another tool's wildcard) was silently the literal "acme?".


@pytest.mark.parametrize(
    ("query", "column"),
    [("acme?", 5), ("acme AND wom?n", 13), ("(acme OR ?cme)", 10), ("acme refund?*", 12)],
)
def test_a_question_mark_in_an_unquoted_word_is_a_query_error(query: str, column: int) -> None:
    with pytest.raises(QueryError) as info:
        compile_query(query)
    assert "'?' is not a wildcard" in info.value.problem
    assert "quote" in info.value.problem
    assert info.value.line_column() == (1, column)


def test_a_question_mark_in_a_quoted_phrase_still_matches_literally() -> None:
    query = compile_query('"acme?" OR "is acme down?"')
    assert query.matches(Subject.of("Wait, Acme? Really"))
    assert query.matches(Subject.of("Is ACME down? again"))
    assert not query.matches(Subject.of("acme is fine"))


@pytest.mark.parametrize("entry", ["acme?", "colo?r", "wom?n"])
def test_a_wildcard_question_mark_in_an_entry_is_refused(entry: str) -> None:
    with pytest.raises(ValidationError, match="'\\?' is not a wildcard"):
        WatchConfig(id="w", terms=[entry])
    with pytest.raises(ValidationError, match="'\\?' is not a wildcard"):
        WatchConfig(id="w", terms=["acme"], exclude=[entry])
    with pytest.raises(ValidationError, match="'\\?' is not a wildcard"):
        WatchConfig(id="w", query="@a", aliases={"a": [entry]})


def test_a_phrase_entry_ending_with_a_question_mark_is_kept_literally() -> None:
    watch = WatchConfig(id="w", terms=["is acme down?", "acme ?"])
    assert matched(watch, "is Acme down? again") == ("is acme down?",)
    assert matched(watch, "is acme down") is None


# 3. An edit without edited_at had the dedup key "id#edited": the sender's next edit was a
# "duplicate" and dropped.


def edit(text: str, **extra: object) -> Mention:
    return Mention(id="hook:1", source="hook", text=text, created_at=T0, change="edited", **extra)


def test_edits_without_a_timestamp_are_told_apart_by_their_text() -> None:
    first, second = edit("acme refund, edited"), edit("acme refund, edited again")
    assert delivery_key(first) != delivery_key(second)
    assert delivery_key(first) == delivery_key(edit("acme refund, edited"))
    stamped = edit("x", edited_at=T0)
    assert delivery_key(stamped) == f"hook:1#edited{T0.isoformat()}"  # unchanged


async def test_a_second_edit_without_a_timestamp_is_published_and_a_redelivery_is_not() -> None:
    config = ListenerConfig(watches=[WatchConfig(id="acme", terms=["acme"])])
    bus = MemoryBus(capacity=100)
    received: list[Mention] = []

    async def handler(events: list[Mention]) -> None:
        received.extend(events)

    bus.subscribe("mentions", "test", handler, max_batch=50)
    service = ListenerService(bus, config, ManualClock(T0), Metrics(), Deduplicator(100))
    await bus.start()
    created = Mention(id="hook:1", source="hook", text="acme broke", created_at=T0)
    outcomes = []
    for mention in [
        created,
        edit("acme broke, v2"),
        edit("acme broke, v3"),
        edit("acme broke, v3"),
    ]:
        report = await service.ingest([mention])
        outcomes.append(report.items[0].outcome)
    await bus.join()
    await bus.stop()
    assert outcomes == ["published", "published", "published", "duplicate"]
    assert [m.text for m in received] == ["acme broke", "acme broke, v2", "acme broke, v3"]


# 4. "@acme" matched support@acme.com: an e-mail address is not a mention of the handle.


@pytest.mark.parametrize(
    ("query", "text", "hit"),
    [
        ('"@acme"', "mail support@acme.com for a refund", False),
        ('"@acme"', "bob@Acme.com", False),
        ('"@acme"', "thanks @acme for nothing", True),
        ('"@acme"', "@Acme_Support help", True),
        ('"@acme"', "(cc:@acme)", True),
        ('"@acme"', "联系@acme客服", True),
        ('"#acme"', "see page.html#acme", False),
        ('"#acme"', "#AcmeFail again", True),
        ('"@acme" OR "#acme"', "x@acme y#acme", False),
    ],
)
def test_a_handle_or_tag_phrase_needs_no_letter_or_digit_before_its_sign(
    query: str, text: str, hit: bool
) -> None:
    assert compile_query(query).matches(Subject.of(text)) is hit


def test_a_handle_term_does_not_match_an_email_address() -> None:
    watch = WatchConfig(id="w", terms=["@acme"])
    assert matched(watch, "write to help@acme.com") is None
    assert matched(watch, "hey @acme, my refund?") == ("@acme",)
