"""Texts of nothing visible (control and format characters: NUL, the bidi marks LRM / RLM /
ALM, bidi isolates and embeddings, a soft hyphen, tag characters) are empty texts, as a
post of zero-width spaces is: answered ``neutral`` with probability 1 by the classifier,
never sent to the English model as if they were an opinion."""

from __future__ import annotations

import pytest

from sentiment.textnorm import blank

NOTHING = [
    "\x00",
    "\x00\x00 \x00",
    "\u200e\u200f",  # LRM, RLM
    "\u061c",  # Arabic letter mark
    "\u202e\u202c",  # right-to-left override, pop
    "\u2066\u2069",  # left-to-right isolate, pop
    "\u00ad",  # soft hyphen
    "\U000e0001\U000e0020",  # tag characters
    " \u200b\u200f\n\x07",
]


@pytest.mark.parametrize("text", NOTHING)
def test_texts_of_control_and_format_characters_are_blank(text: str) -> None:
    assert blank(text)
    assert not blank(text + "a") and not blank("\u200f好" + text)


def test_a_long_invisible_text_is_blank() -> None:
    assert blank("\u200f\x00" * 20_000)
    assert not blank("\u200f" * 20_000 + "!")
