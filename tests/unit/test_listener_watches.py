"""Watch matching: word boundaries, phrases, exclusions, CJK, languages, inheritance."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.events import WatchMatch
from listener.config import ListenerConfig, WatchConfig, demo_watch
from listener.watches import WatchMatcher


def matcher(*watches: WatchConfig) -> WatchMatcher:
    return WatchMatcher(watches)


def ids(matches: list[WatchMatch]) -> list[str]:
    return [m.id for m in matches]


ACME = WatchConfig(id="acme", brand="Acme", terms=["acme", "acme phone"])


@pytest.mark.parametrize(
    "text",
    [
        "I love Acme",
        "ACME!!",
        "acme's support",
        "#acme rocks",
        "@Acme help",
        "(acme)",
        "acme.",
        "@acme_support",  # _ separates words in handles and hashtags
    ],
)
def test_latin_term_matches_whole_words_case_insensitively(text: str) -> None:
    assert ids(matcher(ACME).match(text)) == ["acme"]


@pytest.mark.parametrize("text", ["acmeville is nice", "the acmes", "xacme", "acme2", "acmeño"])
def test_latin_term_does_not_match_inside_a_word(text: str) -> None:
    assert matcher(ACME).match(text) == []


def test_matched_terms_are_reported_in_config_order() -> None:
    (match,) = matcher(ACME).match("My Acme   Phone broke")
    assert match == WatchMatch(id="acme", brand="Acme", terms=("acme", "acme phone"))


def test_phrase_needs_all_its_words_in_order() -> None:
    w = WatchConfig(id="fire", terms=["battery fire"])
    m = matcher(w)
    assert ids(m.match("a Battery\n fire again")) == ["fire"]
    assert m.match("fire in the battery") == []
    assert m.match("battery fireworks") == []


def test_exclusion_vetoes_the_watch() -> None:
    w = WatchConfig(id="nimbus", terms=["nimbus"], exclude=["nimbus clouds", "harry potter"])
    m = matcher(w)
    assert ids(m.match("my Nimbus phone")) == ["nimbus"]
    assert m.match("dark Nimbus clouds tonight") == []
    assert m.match("a nimbus 2000 like Harry Potter's") == []


def test_cjk_terms_match_as_substrings() -> None:
    w = WatchConfig(id="brand", terms=["宁博手机", "nimbus"])
    m = matcher(w)
    assert m.match("我的宁博手机充电起火了")[0].terms == ("宁博手机",)
    # a Latin term next to CJK characters is on a boundary
    assert m.match("退款！Nimbus手机充电起火太危险了")[0].terms == ("nimbus",)
    assert m.match("宁博电脑") == []


def test_full_width_latin_is_normalised() -> None:
    assert ids(matcher(ACME).match("ＡＣＭＥ手机")) == ["acme"]


def test_language_filter_uses_the_primary_subtag_and_lets_unknown_pass() -> None:
    w = WatchConfig(id="zh", terms=["nimbus"], langs=["zh"])
    m = matcher(w)
    assert ids(m.match("Nimbus 太好了", "zh-Hans")) == ["zh"]
    assert m.match("Nimbus is great", "en") == []
    assert ids(m.match("Nimbus", None)) == ["zh"]


def test_match_all_matches_everything_with_no_terms() -> None:
    m = matcher(WatchConfig(id="all", match_all=True), ACME)
    assert m.match("") == [WatchMatch(id="all")]
    assert ids(m.match("acme")) == ["all", "acme"]


def test_several_watches_can_match_one_text() -> None:
    other = WatchConfig(id="globex", brand="Globex", terms=["globex"])
    assert ids(matcher(ACME, other).match("acme vs globex")) == ["acme", "globex"]


def test_inherited_watch_matches_an_empty_repost_with_the_parents_terms() -> None:
    parent = WatchMatch(id="acme", brand="Acme", terms=("acme",))
    m = matcher(ACME, WatchConfig(id="globex", terms=["globex"], exclude=["spam"]))
    assert m.match("", inherited={"acme": parent}) == [parent]
    assert m.match("nope", inherited={}) == []
    # the repost's own exclusions still veto an inherited watch
    spam = WatchMatch(id="globex", terms=("globex",))
    assert m.match("spam spam", inherited={"globex": spam}) == []


def test_regex_metacharacters_in_terms_are_literal() -> None:
    m = matcher(WatchConfig(id="cpp", terms=["c++", "a.b"]))
    assert ids(m.match("I write C++ daily")) == ["cpp"]
    assert m.match("axb") == []


def test_watch_validation() -> None:
    with pytest.raises(ValidationError, match="needs at least one term"):
        WatchConfig(id="x")
    with pytest.raises(ValidationError, match="match_all takes every mention"):
        WatchConfig(id="x", terms=["a"], match_all=True)
    with pytest.raises(ValidationError):
        WatchConfig(id="  ", terms=["a"])
    with pytest.raises(ValidationError, match="duplicate watch id 'a'"):
        ListenerConfig(watches=[WatchConfig(id="a", terms=["x"]), WatchConfig(id="a", terms=["y"])])
    with pytest.raises(ValidationError):
        WatchConfig.model_validate({"id": "a", "terms": ["x"], "typo": 1})


def test_demo_watch_matches_brand_posts_but_not_cloud_chatter() -> None:
    m = matcher(demo_watch("Nimbus"))
    assert ids(m.match("My Nimbus X2 caught fire")) == ["nimbus"]
    assert m.match("Dark Nimbus clouds rolling over the bay") == []
    assert m.match("Watching cumulonimbus towers build") == []


def test_watch_langs_and_sources_are_normalised_once_at_validation() -> None:
    w = WatchConfig(id="w", terms=["acme"], langs=[" EN ", "zh-Hant"], sources=[" Weibo ", "RSS"])
    assert w.langs == ["en", "zh-hant"]
    assert w.sources == ["weibo", "rss"]


@pytest.mark.parametrize("field", ["langs", "sources"])
@pytest.mark.parametrize("blank", ["", "   "])
def test_an_empty_langs_or_sources_entry_is_refused_plainly(field: str, blank: str) -> None:
    first = "en" if field == "langs" else "reddit"
    with pytest.raises(ValidationError, match=rf"watch 'w': {field}: entry 2 is empty"):
        WatchConfig.model_validate({"id": "w", "terms": ["acme"], field: [first, blank]})


@pytest.mark.parametrize("source", ["weibo", "Weibo", " WEIBO ", "reddit", None])
def test_sources_field_and_source_query_agree(source: str | None) -> None:
    """``sources: [" Weibo "]`` keeps exactly what ``source:weibo`` matches (an unknown
    source passes the field but never matches the operator)."""
    field = WatchMatcher([WatchConfig(id="f", terms=["acme"], sources=[" Weibo "])])
    query = WatchMatcher([WatchConfig(id="q", query="acme AND source:weibo")])
    by_field = bool(field.match("acme", source=source))
    by_query = bool(query.match("acme", source=source))
    assert by_field is (by_query or source is None)
