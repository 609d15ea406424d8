"""X/Twitter's no-language codes (``qht``: hashtags only, ``qme``: media only, ...) name
no language: a watch's language filter lets such a post through like one coded ``und``
(its script or text decides), as the sentiment routing does (``core.events.language_of``)."""

from __future__ import annotations

import pytest

from core.events import NO_LANGUAGE, language_of
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
    [(None, ""), ("", ""), ("  ", ""), ("EN_us", "en"), ("zh-Hant-TW", "zh"), ("qht", "")],
)
def test_listener_and_scorer_read_a_language_the_same_way(lang: str | None, code: str) -> None:
    assert language_of(lang) == code == language_code(lang)
