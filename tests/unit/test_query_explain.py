"""``listener.query.explain``: why a compiled query matches a text, or what stopped it.

It walks the compiled tree read-only: its verdict is always ``CompiledQuery.matches``'s,
and matching after it gives what it gave before.
"""

from __future__ import annotations

import pytest

from listener.query import Subject, compile_any, compile_query
from listener.query.explain import Explainer, Explanation, TextMap, describe, explain

ALIASES = {"acme": ["acme", "acme corp", "艾克米"], "jobs": ["hiring", "job opening*", "招聘"]}
QUERY = (
    '@acme AND (refund* OR "battery fire" OR (battery NEAR/3 (fire OR smoke*)) OR 退款 '
    "OR (质量 NEAR/4 问题)) AND NOT (@jobs OR 小米粥)"
)


def run(
    text: str, query: str = QUERY, lang: str | None = None, source: str | None = None
) -> tuple[Explanation, TextMap]:
    compiled = compile_query(query, ALIASES)
    subject = Subject.of(text, lang, source)
    result = explain(compiled, subject, ALIASES)
    assert result.matched == compile_query(query, ALIASES).matches(Subject.of(text, lang, source))
    return result, TextMap(text, subject)


def shown(result: Explanation, where: TextMap) -> list[tuple[str, str | None, str]]:
    """(literal, alias, the text found) of each hit."""
    return [(h.literal, h.via, where.locate(h.span).text) for h in result.hits]


def test_an_english_match_names_each_part_and_the_text_it_found() -> None:
    result, where = run("Acme refunds take weeks, and my battery caught fire")
    assert result.matched and not result.why_not
    assert shown(result, where) == [
        ("acme", "@acme", "Acme"),
        ("refund*", None, "refunds"),  # the prefix, and the whole word it found
        ("battery NEAR/3 (fire OR smoke*)", None, "battery caught fire"),
    ]
    hit = result.hits[1]
    located = where.locate(hit.span)
    assert (located.start, located.end) == (5, 12)


def test_a_chinese_match_is_located_in_the_traditional_text_as_written() -> None:
    result, where = run("艾克米的質量真的有問題")  # traditional 質, 問題 fold to simplified
    assert result.matched
    assert shown(result, where) == [
        ("艾克米", "@acme", "艾克米"),
        ("质量 NEAR/4 问题", None, "質量真的有問題"),
    ]


def test_a_camel_case_tag_and_full_width_letters_are_located_in_the_original() -> None:
    result, where = run("#AcmeRefund ＡＣＭＥ")
    assert shown(result, where) == [("acme", "@acme", "Acme"), ("refund*", None, "Refund")]
    found = [(h.literal, where.locate(h.span).text) for h in result.found]
    assert found == [("acme", "Acme"), ("refund*", "Refund")]
    phrase, where = run("#AcmeRefund", query='"acme refund"')
    assert shown(phrase, where) == [('"acme refund"', None, "AcmeRefund")]


def test_an_accent_written_as_a_combining_mark_is_located_whole() -> None:
    text = "Cafe\u0301 Nestle\u0301 refund"
    result, where = run(text, query="nestle AND refund")
    located = where.locate(result.hits[0].span)
    assert located.text == "Nestle\u0301"
    assert text[located.start : located.end] == located.text


def test_a_not_part_that_found_something_vetoes_and_names_what_it_found() -> None:
    result, where = run("Acme refund desk: we are hiring")
    assert not result.matched and not result.hits
    [reason] = result.why_not
    assert reason.message == "NOT (@jobs OR 小米粥) vetoed it"
    assert [(h.literal, h.via, where.locate(h.span).text) for h in reason.found] == [
        ("hiring", "@jobs", "hiring")
    ]
    # what the query found outside NOT is still said
    assert [h.literal for h in result.found] == ["acme", "refund*"]


def test_no_required_term_says_which_part_found_nothing() -> None:
    result, _ = run("Acme is great")
    assert [r.message for r in result.why_not] == [
        'none of (refund* OR "battery fire" OR (battery NEAR/3 (fire OR smoke*)) OR 退款 '
        "OR (质量 NEAR/4 问题))"
    ]
    result, _ = run("refund please")
    assert [r.message for r in result.why_not] == ["none of @acme"]


def test_a_near_whose_sides_are_too_far_apart_says_so() -> None:
    result, _ = run("Acme battery: a long long long day, then fire")
    assert not result.matched
    assert result.why_not[1].message == (
        "battery NEAR/3 (fire OR smoke*): battery and (fire OR smoke*) both found, but never "
        "within 3 words of each other"
    )
    alone, _ = run("battery far from fire", query="battery NEAR/1 fire")
    assert [r.message for r in alone.why_not] == [
        "battery NEAR/1 fire: battery and fire both found, but never within 1 word of each other"
    ]
    one_side, _ = run("battery only", query="battery NEAR/1 fire")
    assert [r.message for r in one_side.why_not] == ["battery NEAR/1 fire: no fire"]


def test_filters_say_the_mentions_language_and_source() -> None:
    query = "acme AND (lang:zh OR lang:ja) AND source:weibo"
    result, _ = run("acme", query=query, lang="en-GB", source="reddit")
    assert [r.message for r in result.why_not] == [
        "source:weibo: the source is reddit",
        "no OR branch held: (1) lang:zh: the language is en; (2) lang:ja: the language is en",
    ]
    unknown, _ = run("acme", query="acme lang:zh")
    assert [r.message for r in unknown.why_not] == ["lang:zh: the language is not given"]
    ok, _ = run("acme", query="acme lang:zh", lang="zh-Hant")
    assert ok.matched


def test_a_terms_list_and_an_exclude_list_name_their_entries() -> None:
    terms = compile_any(["acme", "roadrunner 3000", "refund*"])
    subject = Subject.of("my Roadrunner   3000 refunded")
    result = explain(terms, subject)
    assert [h.literal for h in result.hits] == ['"roadrunner 3000"', "refund*"]
    where = TextMap("my Roadrunner   3000 refunded", subject)
    assert where.locate(result.hits[0].span).text == "Roadrunner   3000"
    missing = explain(terms, Subject.of("nothing"))
    assert [r.message for r in missing.why_not] == [
        'none of (acme OR "roadrunner 3000" OR refund*)'
    ]


def test_describe_names_aliases_and_keeps_long_lists_short() -> None:
    compiled = compile_query("@acme OR refund*", ALIASES)
    assert describe(compiled.root, ALIASES) == "(@acme OR refund*)"
    assert describe(compiled.root) == '(acme OR "acme corp" OR 艾克米 OR refund*)'
    many = compile_any([f"term{i}" for i in range(20)])
    assert describe(many.root).endswith("term5 OR … (14 more))")


CASES = [
    ("Acme refund", None, None),
    ("acme corp battery fire", "en", "x"),
    ("艾克米退款", "zh", "weibo"),
    ("艾克米 小米粥 退款", "zh", None),
    ("acme job openings and refunds", None, None),
    ("#AcmeRefund", "und", None),
    ("", None, None),
    ("battery " * 50 + "acme fire", None, None),
]
QUERIES = [
    QUERY,
    "acme AND NOT (refund OR lang:zh)",
    "(acme OR 艾克米) AND (lang:zh OR source:weibo)",
    "(acme NEAR/2 refund*) OR (艾克米 AND NOT 退款)",
    "@acme NEAR/5 (@jobs OR fire)",
]


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize(("text", "lang", "source"), CASES)
def test_its_verdict_is_the_matchers_and_leaves_matching_unchanged(
    query: str, text: str, lang: str | None, source: str | None
) -> None:
    compiled = compile_query(query, ALIASES)
    literals, positive = compiled.literals, compiled.positive
    expected = compiled.matches(Subject.of(text, lang, source))
    subject = Subject.of(text, lang, source)
    result = Explainer(ALIASES).explain(compiled, subject)
    assert result.matched == expected
    assert bool(result.why_not) != expected  # a reason exactly when it does not match
    assert compiled.matches(subject) == expected  # on the subject it walked, too
    assert (compiled.literals, compiled.positive) == (literals, positive)
    assert compiled.terms(subject) == tuple(h.literal.strip('"') for h in result.found)
