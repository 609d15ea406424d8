"""The watch query parser: precedence, grouping, phrases, wildcards, NEAR, and errors that
name the position and the problem."""

from __future__ import annotations

import pytest

from listener.query import QueryError, compile_query, parse
from listener.query.ast import Alias, And, Filter, Near, Node, Not, Or, Term


def show(node: Node) -> str:
    """A compact s-expression of the tree (positions left out)."""
    if isinstance(node, Term):
        text = f'"{node.text}"' if node.phrase else node.text
        return text + ("*" if node.prefix else "")
    if isinstance(node, Alias):
        return f"@{node.name}"
    if isinstance(node, Filter):
        return f"{node.field}:{node.value}"
    if isinstance(node, Not):
        return f"(NOT {show(node.operand)})"
    if isinstance(node, Near):
        return f"(NEAR/{node.distance} {show(node.left)} {show(node.right)})"
    assert isinstance(node, And | Or)
    op = "AND" if isinstance(node, And) else "OR"
    return f"({op} " + " ".join(show(o) for o in node.operands) + ")"


@pytest.mark.parametrize(
    ("query", "tree"),
    [
        ("acme", "acme"),
        # precedence: NEAR > NOT > AND > OR
        ("a OR b AND c", "(OR a (AND b c))"),
        ("a AND b OR c", "(OR (AND a b) c)"),
        ("NOT a AND b", "(AND (NOT a) b)"),
        ("a AND NOT b OR c", "(OR (AND a (NOT b)) c)"),
        ("NOT a NEAR/2 b", "(NOT (NEAR/2 a b))"),
        ("a NEAR/2 b OR c", "(OR (NEAR/2 a b) c)"),
        ("NOT NOT a", "(NOT (NOT a))"),
        # implicit AND between adjacent operands, same level as AND
        ("acme refund", "(AND acme refund)"),
        ("a b OR c", "(OR (AND a b) c)"),
        ("a NOT b", "(AND a (NOT b))"),
        # parentheses
        ("(a OR b) AND c", "(AND (OR a b) c)"),
        ("a AND (b OR (c AND d))", "(AND a (OR b (AND c d)))"),
        ("（退款 OR 投诉） 艾克米", "(AND (OR 退款 投诉) 艾克米)"),  # full-width parentheses
        # phrases, wildcards, aliases, filters
        ('"battery fire" OR refund*', '(OR "battery fire" refund*)'),
        ("“退款难” 艾克米", '(AND "退款难" 艾克米)'),  # curly quotes
        ('"c++" AND "a*"', '(AND "c++" "a*")'),  # no wildcard inside quotes
        ("@acme lang:zh source:Weibo", "(AND @acme lang:zh source:weibo)"),
        ("LANG:EN re:invent", "(AND lang:en re:invent)"),  # only known fields are filters
        ("store near me", "(AND store near me)"),  # a lower-case near is a word
        # NEAR
        ("battery NEAR/3 fire", "(NEAR/3 battery fire)"),
        (
            "(battery OR charger) NEAR/0 (fire OR smoke)",
            "(NEAR/0 (OR battery charger) (OR fire smoke))",
        ),
        ("a NEAR/1 b NEAR/2 c", "(NEAR/2 (NEAR/1 a b) c)"),
        ("退款 NEAR/5 @acme", "(NEAR/5 退款 @acme)"),
    ],
)
def test_parse(query: str, tree: str) -> None:
    assert show(parse(query)) == tree


def test_nodes_carry_their_offsets() -> None:
    node = parse('acme AND "battery fire"')
    assert isinstance(node, And)
    assert [o.position for o in node.operands] == [0, 9]


def error(query: str) -> QueryError:
    with pytest.raises(QueryError) as info:
        parse(query)
    return info.value


@pytest.mark.parametrize(
    ("query", "column", "problem"),
    [
        ("", 1, "empty query"),
        ("   ", 1, "empty query"),
        ("(acme OR globex", 1, "unclosed '('"),
        ("acme AND (refund", 10, "unclosed '('"),
        ("acme (", 6, "unclosed '('"),
        ("acme)", 5, "unmatched ')'"),
        (") acme", 1, "unmatched ')'"),
        ("(a OR b))", 9, "unmatched ')'"),
        ("()", 1, "empty parentheses"),
        ("acme AND", 6, "AND needs a term after it, found the end of the query"),
        ("acme OR", 6, "OR needs a term after it"),
        ("a AND OR b", 3, "AND needs a term after it, found OR"),
        ("(a OR ) b", 4, "OR needs a term after it, found ')'"),
        ("NOT", 1, "NOT needs a term after it"),
        ("OR acme", 1, "OR needs a term before it"),
        ("(AND a)", 2, "AND needs a term before it"),
        ('acme ""', 6, "empty phrase"),
        ('acme "  "', 6, "empty phrase"),
        ('acme "battery fire', 6, "unclosed quote"),
        ("a NEAR b", 3, "NEAR needs a distance in words, e.g. NEAR/5"),
        ("a NEAR/x b", 3, "NEAR needs a distance"),
        ("a NEAR/-1 b", 3, "NEAR needs a distance"),
        ("a NEAR/5000 b", 3, "at most NEAR/1000"),
        ("a near/3 b", 3, "operators are written in capitals: NEAR"),
        ("a NEAR/3", 3, "NEAR/3 needs a term after it"),
        ("NEAR/3 a", 1, "NEAR/3 needs a term before it"),
        ("a NEAR/3 NOT b", 10, "a NOT cannot be NEAR"),
        ("(a AND b) NEAR/3 c", 11, "an AND group cannot be NEAR"),
        ("lang:zh NEAR/3 c", 9, "a filter cannot be NEAR"),
        ("(a OR NOT b) NEAR/3 c", 14, "a NOT cannot be NEAR"),
        ("acme and refund", 6, "operators are written in capitals: AND"),
        ("acme Or refund", 6, "capitals: OR"),
        ("ref*und", 4, "'*' is only allowed at the end of a word"),
        ("*acme", 1, "'*' is only allowed at the end"),
        ("a*", 1, "at least 2 characters before '*'"),
        ("@ OR acme", 1, "bad alias name"),
        ("lang: acme", 1, "lang: needs a value"),
        ("acme -jobs", 6, 'a leading "-" is not NOT here: write NOT jobs'),
        ("艾克米 AND (退款 OR)", 13, "OR needs a term after it"),  # columns count characters
    ],
)
def test_errors_name_the_column_and_the_problem(query: str, column: int, problem: str) -> None:
    err = error(query)
    assert err.line_column() == (1, column)
    assert problem in err.problem
    assert str(err).startswith(f"column {column}: ")


def test_error_caret_points_at_the_position() -> None:
    err = error("acme AND (refund OR fire")
    assert err.explain(indent="> ") == (
        "query error at column 10: unclosed '(': no ')' after it\n"
        "> acme AND (refund OR fire\n"
        ">          ^"
    )


def test_caret_counts_cjk_characters_as_two_columns() -> None:
    err = error("艾克米 AND (退款 OR)")
    line, caret = err.caret(indent="").split("\n")
    assert line == "艾克米 AND (退款 OR)"
    # 艾克米 (6) + " AND (" (6) + 退款 (4) + " " (1) = 17 columns before the O of OR
    assert caret == " " * 17 + "^"


def test_multi_line_queries_name_line_and_column() -> None:
    err = error("acme\nAND (refund\nOR fire")
    assert err.line_column() == (2, 5)
    assert str(err).startswith("line 2, column 5: unclosed '('")
    assert err.caret(indent="").split("\n") == ["AND (refund", "    ^"]


@pytest.mark.parametrize(
    ("query", "column", "problem"),
    [
        ("@acme OR x", 1, "unknown alias @acme (aliases: none defined)"),
        ("NOT spam", 1, "can match a text without any of the query's terms"),
        ("lang:zh", 1, "without any of the query's terms"),
        ("acme OR NOT jobs", 9, "every OR branch needs a term"),
        ("acme OR (lang:zh AND NOT jobs)", 10, "every OR branch needs a term"),
    ],
)
def test_compile_errors_name_the_part(query: str, column: int, problem: str) -> None:
    with pytest.raises(QueryError) as info:
        compile_query(query)
    assert info.value.line_column() == (1, column)
    assert problem in info.value.problem


def test_unknown_alias_lists_the_defined_ones() -> None:
    with pytest.raises(QueryError, match=r"unknown alias @acem \(aliases: @acme, @jobs\)"):
        compile_query("@acem", {"acme": ["acme"], "jobs": ["hiring"]})


def test_and_with_one_positive_operand_is_enough() -> None:
    q = compile_query("lang:zh AND NOT jobs AND (acme OR 艾克米)")
    assert q.literals == ("acme", "艾克米")
