"""Watch query review, round 4: each test failed before its fix."""

from __future__ import annotations

import pytest

from listener.config import WatchConfig
from listener.query import QueryError, parse
from listener.watches import WatchMatcher
from tests.unit.test_listener_query_parser import show
from tests.unit.test_query_edges import hits


# Turkish dotless ı had no fold: "YOLLARI" folds to "yollari" but "Yolları" kept its ı, so
# a lower-case Turkish query missed the same words in capitals (and the reverse), and an
# ASCII query ("turk hava yollari") missed the Turkish spelling, while ş, ğ, ç, ö, ü and
# the capital İ were already folded.
@pytest.mark.parametrize(
    ("query", "text"),
    [
        ('"turk hava yollari"', "Türk Hava Yolları uçuşumu iptal etti"),
        ('"türk hava yolları"', "TÜRK HAVA YOLLARI rezalet"),
        ('"yapı kredi"', "YAPI KREDİ kartım bloke"),
        ("yapi", "Yapı Kredi"),
        ("ışık", "IŞIK yok"),
        ("YAPI", "yapı"),
        ('"turk hava yollari" AND NOT iptal', "Türk Hava Yolları harika"),
    ],
)
def test_turkish_dotless_i_folds_like_i(query: str, text: str) -> None:
    assert hits(query, text)


def test_dotless_i_in_terms_and_exclusions() -> None:
    watch = WatchConfig(id="w", terms=["Yapi Kredi"], exclude=["kredi karti"])
    matcher = WatchMatcher([watch])
    assert matcher.match("Yapı Kredi şubesi kapalı")
    assert not matcher.match("Yapı Kredi kredi kartı")


# A Chinese or Japanese IME types full-width forms: the lexer read full-width parentheses
# and quotes as syntax, but not ＯＲ, ＡＮＤ, ＮＯＴ, ＮＥＡＲ／３, lang：zh (the IME's colon) or
# refund＊: each was a literal ("or", "lang:zh", "refund*") that almost no post holds, so
# the watch silently matched nothing, or nearly nothing.
@pytest.mark.parametrize(
    ("query", "tree"),
    [
        ("艾克米 ＯＲ 愛克米", "(OR 艾克米 愛克米)"),
        ("艾克米 ＡＮＤ ＮＯＴ 招聘", "(AND 艾克米 (NOT 招聘))"),
        ("艾克米 ＮＥＡＲ／３ 退款", "(NEAR/3 艾克米 退款)"),
        ("艾克米 lang：zh", "(AND 艾克米 lang:zh)"),
        ("艾克米 ｌａｎｇ：ｚｈ", "(AND 艾克米 lang:zh)"),
        ("退款＊ OR refund＊", "(OR 退款* refund*)"),
    ],
)
def test_full_width_operators_filters_and_wildcards_are_syntax(query: str, tree: str) -> None:
    assert show(parse(query)) == tree


@pytest.mark.parametrize(
    ("query", "text"),
    [
        ("艾克米 ＯＲ 愛克米", "愛克米退款太慢"),
        ("艾克米 ＡＮＤ 退款", "艾克米退款太慢"),
        ("艾克米 ＮＥＡＲ／３ 退款", "艾克米的退款呢"),
        ("艾克米 AND lang：zh", "艾克米退款太慢"),
        ("acme AND refund＊", "Acme refunds"),
    ],
)
def test_full_width_syntax_matches(query: str, text: str) -> None:
    assert hits(query, text, lang="zh")


def test_full_width_syntax_errors_like_ascii() -> None:
    with pytest.raises(QueryError, match="operators are written in capitals"):
        parse("艾克米 ｏｒ 愛克米")
    with pytest.raises(QueryError, match="no author: field"):
        parse("ａｕｔｈｏｒ：acme")


def test_full_width_words_are_still_words() -> None:
    """Terms keep their spelling (reported as written); ＠ stays a handle's sign."""
    matcher = WatchMatcher([WatchConfig(id="w", query="ＡＣＭＥ AND ｒｅｆｕｎｄ＊")])
    assert matcher.match("acme refunds")[0].terms == ("ＡＣＭＥ", "ｒｅｆｕｎｄ*")
    assert hits("＠acme", "hi @Acme") and not hits("＠acme", "support@acme.com")
    assert hits("公告：退款", "公告:退款")
