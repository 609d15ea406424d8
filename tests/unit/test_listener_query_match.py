"""The watch query language matching texts, in English and Chinese, through WatchMatcher."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from api.cli import main
from core.events import WatchMatch
from listener.config import WatchConfig
from listener.query import Prefold, Subject, compile_query, fold
from listener.query.fold import char_class
from listener.watches import WatchMatcher

ALIASES = {
    "acme": ["acme", "acmee", "acme corp", "roadrunner 3000", "艾克米", "アクメ"],
    "jobs": ["hiring", "job opening*", "招聘", "诚聘"],
}


def hits(query: str, text: str, lang: str | None = None, source: str | None = None) -> bool:
    watch = WatchConfig(id="w", query=query, aliases=ALIASES)
    return bool(WatchMatcher([watch]).match(text, lang, source=source))


# (query, text, expected) — English
ENGLISH = [
    # words: case-insensitive, whole words for Latin script
    ("acme", "I love ACME", True),
    ("acme", "#acme rocks, @acme_support help", True),
    ("acme", "acmeville is nice", False),
    ("acme", "xacme", False),
    # phrases: in order, any whitespace between
    ('"battery fire"', "a Battery \n fire again", True),
    ('"battery fire"', "fire in the battery", False),
    ('"battery fire"', "battery fireworks", False),
    # prefix wildcards
    ("refund*", "Refunds please", True),
    ("refund*", "still not REFUNDED", True),
    ("refund*", "refund", True),
    ("refund*", "prerefund", False),
    # AND / OR / NOT / implicit AND / precedence
    ("acme AND refund*", "acme refunded me", True),
    ("acme AND refund*", "acme is great", False),
    ("acme refund*", "refund from acme", True),
    ("acme OR globex", "globex again", True),
    ("acme AND NOT globex", "acme vs globex", False),
    ("acme OR globex AND refund", "acme only", True),  # AND binds tighter
    ("(acme OR globex) AND refund", "acme only", False),
    # NEAR/n: at most n words between, either order, words not characters
    ("battery NEAR/2 fire", "battery caught on fire", True),
    ("battery NEAR/2 fire", "battery caught on big fire", False),
    ("battery NEAR/2 fire", "fire near the battery", True),
    ("battery NEAR/0 fire", "battery, fire!", True),
    ("battery NEAR/3 (fire OR explod*)", "the battery just exploded", True),
    ('"customer service" NEAR/3 (rude OR useless)', "customer service was so rude", True),
    (
        '"customer service" NEAR/3 (rude OR useless)',
        "rude driver, much later I called customer service",
        False,
    ),
    ("(a1 NEAR/1 b1) NEAR/1 c1", "a1 b1 x c1", True),
    ("(a1 NEAR/1 b1) NEAR/1 c1", "a1 b1 x y c1", False),
    # aliases: brand names, misspellings, product names
    ("@acme AND refund*", "acmee refund when", True),
    ("@acme AND refund*", "my roadrunner   3000 needs a refund", True),
    ("@acme NEAR/2 broke", "Acme Corp broke it", True),
    # per-watch exclusions: job ads and homonyms
    ("@acme AND NOT @jobs", "Acme is hiring engineers", False),
    ("@acme AND NOT @jobs", "Acme job openings in Ohio", False),
    ("@acme AND NOT @jobs", "Acme broke my heart", True),
    ("apple AND NOT (pie OR orchard* OR cider)", "apple pie recipe", False),
    ("apple AND NOT (pie OR orchard* OR cider)", "apple watch battery", True),
    # Unicode folding
    ("acme", "ＡＣＭＥ手机", True),  # full-width Latin
    ("acme", "𝐀𝐜𝐦𝐞 support is down", True),  # styled letters
    ("アクメ", "ｱｸﾒの返金", True),  # half-width katakana
    ("strasse", "Große Straße", True),  # case folding ß → ss
    ("café", "cafe\u0301 closed", True),  # combining accent composed
    ('"c++"', "I write C++ daily", True),
    ('"a.b"', "axb", False),
]

# (query, text, expected) — Chinese
CHINESE = [
    # no word boundaries: CJK terms are substrings
    ("退款", "我要退款！", True),
    ("艾克米", "艾克米手机充电起火了", True),
    ("艾克米手机", "艾克米电脑", False),
    # a Latin term beside CJK characters is on a boundary
    ("nimbus", "退款！Nimbus手机充电起火太危险了", True),
    ("nimbus", "宁博nimbuses", False),
    # traditional ↔ simplified, either side
    ("投诉", "我要投訴艾克米", True),
    ("發票", "发票开错了", True),
    ("头发", "頭髮掉光了", True),
    # full-width Latin inside Chinese text
    ("acme AND 退款", "ＡＣＭＥ的退款呢", True),
    # phrases: a space between CJK characters is optional
    ('"退款 难"', "退款难，客服不理", True),
    # NEAR counts each CJK character as one word
    ("退款 NEAR/1 客服", "退款找客服", True),
    ("退款 NEAR/3 客服", "退款的事情我问了好多次客服", False),
    ("退款 NEAR/10 客服", "退款的事情我问了好多次客服", True),
    ("acme NEAR/2 爆炸", "acme手机爆炸", True),
    # exclusions: homonyms and job ads
    ("小米 AND NOT (小米粥 OR 小米椒)", "小米手机发热严重", True),
    ("小米 AND NOT (小米粥 OR 小米椒)", "早上喝小米粥", False),
    ("@acme AND NOT @jobs", "艾克米诚聘销售", False),
    ("@acme AND NOT @jobs", "艾克米太坑了", True),
    ("(退款 OR 投诉) AND @acme", "艾克米 投诉无门", True),
    ("“退款难” AND 艾克米", "艾克米退款难", True),
]


@pytest.mark.parametrize(("query", "text", "expected"), ENGLISH + CHINESE)
def test_match(query: str, text: str, expected: bool) -> None:
    assert hits(query, text) is expected


@pytest.mark.parametrize(("query", "text", "expected"), ENGLISH + CHINESE)
def test_prefilter_never_drops_a_match(query: str, text: str, expected: bool) -> None:
    """The fast path (prefold + one regex) keeps every text the full evaluation matches."""
    compiled = compile_query(query, ALIASES)
    prefold = Prefold({c for lit in compiled.literals for c in lit})
    if compiled.matches(Subject(fold(text), None, None)):
        assert compiled.candidate(prefold(text))


def test_prefilter_rejects_texts_without_any_literal() -> None:
    compiled = compile_query("acme AND (refund* OR fire) AND NOT jobs")
    assert compiled.literals == ("acme",)
    assert not compiled.candidate("nothing to see here")


@pytest.mark.parametrize(
    ("query", "lang", "expected"),
    [
        ("acme AND lang:en", "en-US", True),
        ("acme AND lang:en", "zh", False),
        ("acme AND lang:en", None, False),  # a filter in the query needs the language
        ("acme AND (lang:en OR lang:und)", None, True),  # lang:und: no language given
        ("acme AND NOT lang:zh", "zh-Hant", False),
        ("acme AND lang:zh", "zh-Hant", True),  # primary subtag
    ],
)
def test_language_filter_in_the_query(query: str, lang: str | None, expected: bool) -> None:
    assert hits(query, "acme", lang) is expected


@pytest.mark.parametrize(
    ("query", "source", "expected"),
    [
        ("acme AND source:weibo", "weibo", True),
        ("acme AND source:weibo", "Weibo", True),
        ("acme AND source:weibo", "bluesky", False),
        ("acme AND source:weibo", None, False),
        ("acme AND NOT source:reddit", "bluesky", True),
    ],
)
def test_source_filter_in_the_query(query: str, source: str | None, expected: bool) -> None:
    assert hits(query, "acme", source=source) is expected


def test_sources_and_langs_fields_filter_query_watches() -> None:
    w = WatchConfig(id="w", query="acme", sources=["weibo", "RSS"], langs=["zh"])
    m = WatchMatcher([w])
    assert m.match("acme", "zh", source="rss")
    assert not m.match("acme", "zh", source="bluesky")
    assert not m.match("acme", "en", source="weibo")
    assert m.match("acme", None, source=None)  # unknown language and source pass, as before


def test_matched_terms_are_the_positive_literals_found_in_query_order() -> None:
    w = WatchConfig(
        id="acme",
        brand="Acme",
        query='@acme AND (refund* OR "battery fire") AND NOT hiring',
        aliases={"acme": ["Acme", "艾克米"]},
    )
    (match,) = WatchMatcher([w]).match("ACME: battery fire, refunds now, 艾克米")
    assert match == WatchMatch(
        id="acme", brand="Acme", terms=("Acme", "艾克米", "refund*", "battery fire")
    )


def test_exclude_field_applies_to_query_watches() -> None:
    w = WatchConfig(id="w", query="acme OR globex", exclude=["job ad", "招聘"])
    m = WatchMatcher([w])
    assert m.match("globex rocks")
    assert not m.match("globex job ad")
    assert not m.match("acme招聘")


def test_inherited_query_watch_is_vetoed_by_its_top_level_not() -> None:
    w = WatchConfig(id="w", query="acme AND NOT (hiring OR 招聘)")
    parent = WatchMatch(id="w", terms=("acme",))
    m = WatchMatcher([w])
    assert m.match("so true", inherited={"w": parent}) == [parent]
    assert m.match("", inherited={"w": parent}) == [parent]
    assert m.match("we are hiring", inherited={"w": parent}) == []
    assert m.match("转发：招聘", inherited={"w": parent}) == []


def test_match_all_with_exclusions() -> None:
    m = WatchMatcher([WatchConfig(id="all", match_all=True, exclude=["spam"])])
    assert m.match("anything") == [WatchMatch(id="all")]
    assert m.match("SPAM!") == []


def test_terms_and_the_equivalent_query_agree() -> None:
    terms = WatchConfig(id="w", terms=["acme", "acme phone", "艾克米"], exclude=["acme clouds"])
    query = WatchConfig(id="w", query='(acme OR "acme phone" OR 艾克米) AND NOT "acme clouds"')
    texts = ["my acme phone", "acme clouds", "艾克米手机", "acmeville", "ACME", "nothing"]
    a, b = WatchMatcher([terms]), WatchMatcher([query])
    assert [bool(a.match(t)) for t in texts] == [bool(b.match(t)) for t in texts]
    assert [bool(a.match(t)) for t in texts] == [True, False, True, False, True, False]


def test_watch_validation_of_queries() -> None:
    with pytest.raises(ValidationError, match=r"either terms .* or query, not both"):
        WatchConfig(id="x", terms=["a"], query="b")
    with pytest.raises(ValidationError, match="match_all takes every mention"):
        WatchConfig(id="x", query="a", match_all=True)
    with pytest.raises(ValidationError, match=r"watch 'x': query error at column 4: empty phrase"):
        WatchConfig(id="x", query='ab ""')
    with pytest.raises(ValidationError, match="unknown alias @acme"):
        WatchConfig(id="x", query="@acme")
    with pytest.raises(ValidationError, match="aliases"):
        WatchConfig(id="x", query="@a b", aliases={"a b": ["x"]})
    with pytest.raises(ValidationError):
        WatchConfig(id="x", query="@a", aliases={"a": [""]})
    with pytest.raises(ValidationError, match=r"aliases are referred to from a query"):
        WatchConfig(id="x", terms=["a"], aliases={"a": ["x"]})
    assert WatchConfig(id="x", query="@acme", aliases={"acme": ["acme"]}).query == "@acme"


def test_char_class_keeps_every_member_and_merges_only_astral_gaps() -> None:
    members = [ord("a"), ord("c"), 0x4E00, 0x1D41A, 0x1D44E, 0x1F130]
    pattern = re.compile(char_class(members))
    assert all(pattern.fullmatch(chr(cp)) for cp in members)
    assert not pattern.fullmatch("b")  # BMP: exact
    assert pattern.fullmatch(chr(0x1D41B))  # astral: a superset within a small gap
    assert not pattern.fullmatch("😀")  # but not far away (emoji stay on the fast path)


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("ＡＣＭＥ", "acme"),
        ("發票 頭髮", "发票 头发"),
        ("Straße", "strasse"),
        ("ｱｸﾒ", "アクメ"),
        ("plain ascii", "plain ascii"),
    ],
)
def test_fold(text: str, folded: str) -> None:
    assert fold(text) == folded


def test_check_config_reports_query_errors_with_watch_position_and_caret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "listener:\n  watches:\n"
        "    - id: acme\n"
        "      query: 'acme AND (refund* OR fire'\n"
        "    - id: cn\n"
        "      query: 艾克米 AND (退款 OR)\n",
        encoding="utf-8",
    )
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "watch 'acme': query error at column 10: unclosed '('" in err
    assert "      acme AND (refund* OR fire\n               ^" in err
    assert "watch 'cn': query error at column 13: OR needs a term after it, found ')'" in err
    assert "      艾克米 AND (退款 OR)\n" + " " * (6 + 17) + "^" in err
