"""X/Twitter marks a post whose text is no language (media, hashtags, mentions or
cashtags only: ``qme``, ``qht``, ``qam``, ``qct``; ``zxx``: no linguistic content;
``art``) with a code of its own: the classifier routes such a post by its script, as
one without a code (``und``), instead of abstaining on it as on a language it cannot
read."""

from __future__ import annotations

import pytest

from sentiment.transformer import language_code, route, routing_language

NO_LANGUAGE = ["qme", "qht", "qam", "qct", "zxx", "art", "QME", "qht-x", "und"]


@pytest.mark.parametrize("lang", NO_LANGUAGE)
def test_a_no_language_code_is_no_language_given(lang: str) -> None:
    assert language_code(lang) == language_code(None) == ""
    assert routing_language(lang) == routing_language(None) == ""


@pytest.mark.parametrize("lang", NO_LANGUAGE)
@pytest.mark.parametrize(
    ("text", "model"),
    [("#fail #worstairline @acme", "en"), ("#差评 太垃圾了", "zh"), ("https://x.com/i/1", "en")],
)
def test_a_no_language_post_is_routed_by_its_script(lang: str, text: str, model: str) -> None:
    assert route(text, lang) == route(text, None) == model


def test_a_language_neither_model_reads_is_still_abstained_on() -> None:
    assert route("#fail", "de") is None and routing_language("ja") == "other"
