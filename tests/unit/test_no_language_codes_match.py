"""X/Twitter's no-language codes (``qht``: hashtags only, ``qme``: media only, ...) name
no language: a watch's language filter lets such a post through like one coded ``und``
(its script or text decides), as the sentiment routing does (``core.events.language_of``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from core.events import NO_LANGUAGE, Mention, WatchMatch, language_of
from listener.config import WatchConfig
from listener.watches import CompiledWatch
from sentiment.transformer import language_code


@pytest.mark.parametrize("code", sorted(NO_LANGUAGE))
def test_a_post_coded_with_no_language_passes_a_watchs_language_filter(code: str) -> None:
    watch = CompiledWatch.compile(
        WatchConfig(id="acme", brand="Acme", terms=["acme"], langs=["en"])
    )
    assert watch.admits(code, "x")
    assert watch.admits(code.upper(), "x")
    assert not watch.admits("de", "x")  # a language that is not the watch's still fails


@pytest.mark.parametrize(
    ("lang", "code"),
    [
        (None, ""), ("", ""), ("  ", ""), ("EN_us", "en"), ("zh-Hant-TW", "zh"), ("qht", ""),
        ("eng", "en"), ("ZHO-Hant", "zh"), ("cmn", "zh"), ("fre", "fr"), ("jpn", "ja"),
        ("yue", "yue"), ("tlh", "tlh"),
    ],
)  # fmt: skip
def test_listener_and_scorer_read_a_language_the_same_way(lang: str | None, code: str) -> None:
    assert language_of(lang) == code == language_code(lang)


def test_a_watch_id_longer_than_the_config_allows_is_refused_where_it_is_decoded() -> None:
    """A mention from another producer whose watch id would not fit the detector's and the
    alerter's columns (255) fails its decoding (a dead letter), not a database write that
    the bus would retry for ever."""
    line = Mention(
        id="x:1", source="x", created_at=datetime(2026, 1, 1, tzinfo=UTC),
        watch=WatchMatch(id="acme"),
    ).model_dump(mode="json")  # fmt: skip
    line["watch"]["id"] = "w" * 300
    with pytest.raises(ValidationError):
        Mention.model_validate(line)
    assert Mention.model_validate({**line, "watch": {"id": "w" * 100}}).watch is not None


def test_a_three_letter_code_passes_the_watch_of_its_two_letter_code() -> None:
    """A source or webhook sender tagging posts as language detectors do (``eng``, ``cmn``,
    ``jpn``): a watch of ``langs: [en]`` dropped every ``eng`` post, silently."""
    watch = CompiledWatch.compile(
        WatchConfig(id="acme", brand="Acme", terms=["acme"], langs=["en", "zh"])
    )
    for code in ("eng", "ENG", "zho", "chi", "cmn", "cmn-Hans"):
        assert watch.admits(code, "x"), code
    assert not watch.admits("jpn", "x") and not watch.admits("deu", "x")
    by_three = CompiledWatch.compile(WatchConfig(id="b", brand="B", terms=["b"], langs=["eng"]))
    assert by_three.admits("en-GB", "x") and not by_three.admits("de", "x")
