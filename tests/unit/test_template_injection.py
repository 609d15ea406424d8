"""Goal: hostile data cannot escape the template sandbox or the escaping.

Incident data (titles, explanations, variables pasted from posts) carries template syntax,
HTML and chat markup; template bodies try to reach Python internals. Neither may work.
"""

from __future__ import annotations

import re

import pytest

from alerts.templates.render import (
    MAX_LOOP_STEPS,
    MAX_OUTPUT,
    RenderError,
    TemplateProblem,
    check,
    render,
)

BODY = "{{ brand }} about {{ product }}: {{ incident.title }}"
FORMATS = ("text", "markdown", "html")


def values(hostile: str) -> dict[str, object]:
    return {
        "brand": "Acme",
        "product": hostile,
        "incident": {"title": hostile, "tier": 2, "explanation": hostile},
    }


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "hostile",
    [
        "{{ 7*7 }}",
        "{% for x in incident %}{{ x }}{% endfor %}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{# comment #}{%raw%}{{x}}{%endraw%}",
    ],
)
def test_template_syntax_in_data_stays_literal(fmt: str, hostile: str) -> None:
    out = render(BODY, fmt, values(hostile))
    assert "49" not in out
    assert "subclasses" in out or "{{" in out or "{%" in out  # printed, not evaluated
    assert "class 'object'" not in out


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "ping",
    ["@all", "@channel", "@here", "@everyone", "<!channel>", "<!here>", "<@U123>", "@所有人"],
)
def test_chat_pings_are_broken(fmt: str, ping: str) -> None:
    out = render(BODY, fmt, values(f"hi {ping} now"))
    bare = {"@all", "@channel", "@here", "@everyone", "<!channel>", "<!here>", "<@U123>", "@所有人"}
    assert not any(p in out for p in bare), out


@pytest.mark.parametrize("fmt", FORMATS)
def test_links_are_defanged(fmt: str) -> None:
    out = render(BODY, fmt, values("[refund here](https://evil.example/x) or www.evil.com"))
    assert "https://" not in out and "www.evil.com" not in out and "evil.example" not in out
    if fmt == "markdown":
        assert "](" not in out and "[refund" not in out


def test_html_is_inert_in_every_format() -> None:
    hostile = '<script>alert(1)</script><img src=x onerror="x">'
    html = render(BODY, "html", values(hostile))
    assert "<script>" not in html and "<img" not in html and "&lt;script&gt;" in html
    assert '"x"' not in html
    md = render(BODY, "markdown", values(hostile))
    assert "<" not in md and "<script>" not in md
    text = render(BODY, "text", values(hostile))
    assert "<" not in text and ">" not in text and "＜script＞" in text


def test_markdown_formatting_and_block_syntax_are_inert() -> None:
    out = render(
        "Re: {{ product }}", "markdown", values("**bold** _it_ `code`\n# Heading\n> quote")
    )
    assert re.search(r"[*_`#>]", out) is None, out
    assert "\n" not in out


def test_control_and_bidi_characters_are_dropped() -> None:
    out = render(BODY, "text", values("ok\x1b[31mred\u202eevil\u200b@all"))
    assert "\x1b" not in out and "\u202e" not in out
    assert "@all" not in out


def test_the_templates_own_markup_is_kept() -> None:
    out = render("<p><b>{{ brand }}</b>: {{ product }}</p>", "html", values("<b>x</b>"))
    assert out == "<p><b>Acme</b>: &lt;b&gt;x&lt;/b&gt;</p>"


@pytest.mark.parametrize(
    "body",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ incident.__class__.__init__.__globals__ }}",
        "{{ product.__len__() }}",
        "{{ self.__init__.__globals__ }}",
        "{{ product.center(100000000) }}",
        "{{ '{0.__class__}'.format(product) }}",
        "{{ product.format_map(incident) }}",
        "{{ 'x' * 100000000 }}",
        "{{ [1] * 100000000 }}",
        "{{ 9 ** 99999999 }}",
        "{{ '%s%s' % (1, 2) }}",
        "{{ range(10) }}",
        "{{ lipsum() }}",
        "{{ namespace() }}",
        "{{ cycler(1) }}",
        "{{ undefined_thing }}",
        "{{ incident.nope }}",
        "{{ 1 / 0 }}",
    ],
)
def test_sandbox_escapes_fail_cleanly(body: str) -> None:
    with pytest.raises(RenderError) as caught:
        render(body, "text", values("x"))
    assert "Traceback" not in str(caught.value)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("{% macro f() %}x{% endmacro %}", "macro"),
        ("{% include 'other' %}", "include"),
        ("{% extends 'base' %}", "extends"),
        ("{% import 'm' as m %}", "import"),
        ("{{ x|attr('__class__') }}", "attr"),
        ("{{ x|safe }}", "safe"),
        ("{{ x|format(1) }}", "format"),
        ("{{ x|center(99999999) }}", "center"),
        ("{% for a in x %}{% for b in x %}{% for c in x %}{% endfor %}{% endfor %}{% endfor %}",
         "nested"),
        ("{{ x ", "syntax"),
    ],
)  # fmt: skip
def test_forbidden_constructs_are_refused_when_saved(body: str, says: str) -> None:
    with pytest.raises(TemplateProblem) as caught:
        check(body, "text")
    assert says in str(caught.value)


def test_output_is_capped() -> None:
    body = (
        "{% for a in incident.title %}{% for b in incident.title %}" + "x" * 40
        + "{% endfor %}{% endfor %}"
    )  # fmt: skip
    with pytest.raises(RenderError, match="longer than"):
        render(body, "text", values("y" * 40))  # 40 * 40 * 40 > MAX_OUTPUT
    assert MAX_OUTPUT < 40 * 40 * 40 and MAX_LOOP_STEPS >= 40 * 40


def test_check_lists_the_variables_to_supply() -> None:
    assert check("{{ brand }} {{ product }} {{ incident.title }} {{ contact|upper }}", "text") == [
        "brand",
        "contact",
        "incident",
        "product",
    ]


@pytest.mark.parametrize(
    "body",
    [
        "{{ " + "(" * 300 + "1" + ")" * 300 + " }}",
        "{{ " + "[" * 150 + "]" * 150 + " }}",
        "{{ x" + "|upper" * 400 + " }}",
        "{{ " + "-" * 3000 + "1 }}",
        "{% if a %}" * 120 + "x" + "{% endif %}" * 120,
    ],
)
def test_too_deeply_nested_bodies_are_refused_not_crashing(body: str) -> None:
    # the parser and Python's compiler recurse: a RecursionError or "too many levels of
    # indentation" must be a TemplateProblem (422), not a 500
    with pytest.raises(TemplateProblem, match="nested too deeply"):
        check(body, "text")
