"""Plain text out of the HTML that platforms send (Mastodon statuses, HN comments, feeds).

Stdlib ``html.parser``: tags are dropped (their text kept), entities decoded, block
elements and ``<br>`` become line breaks, ``<script>``/``<style>`` contents dropped.
The result is plain text for matching and scoring, never rendered as HTML.

The stdlib parser gives up on some markup with an ``AssertionError`` (a marked section,
``<![ if mso]>`` in mail-like HTML, on CPython 3.11): such a text is read by a plain
tag-stripping fallback instead, so one odd post never stalls the source that carries it.
"""

from __future__ import annotations

import html
import logging
import re
from html.parser import HTMLParser

from core.events import MAX_TEXT_CHARS

log = logging.getLogger(__name__)

_BREAKS = {"br", "p", "div", "li", "blockquote", "h1", "h2", "h3", "h4", "tr"}
_SKIP = {"script", "style"}
_SPACES = re.compile(r"[ \t\r\f\v]+")
_LINES = re.compile(r"\n\s*\n+")
_SKIPPED_BLOCKS = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_BREAK_TAGS = re.compile(r"</?(?:" + "|".join(sorted(_BREAKS)) + r")\b[^>]*>", re.IGNORECASE)
_TAGS = re.compile(r"<[^<>]*>")


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip += 1
        elif tag in _BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP and self._skip:
            self._skip -= 1
        elif tag in _BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(markup: str | None) -> str:
    if not markup:
        return ""
    parser = _Text()
    try:
        parser.feed(markup)
        parser.close()
        raw = "".join(parser.parts)
    except AssertionError:  # the stdlib parser's "unexpected call to parse_marked_section"
        log.debug("HTML the parser cannot read; tags stripped instead: %.80r", markup)
        raw = _strip_tags(markup)
    text = _SPACES.sub(" ", raw)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _LINES.sub("\n\n", text).strip()


def _strip_tags(markup: str) -> str:
    """The fallback: script/style blocks dropped, block tags as line breaks, every other
    tag dropped (an unclosed ``<`` stays as text), entities decoded."""
    markup = _SKIPPED_BLOCKS.sub("", markup)
    markup = _BREAK_TAGS.sub("\n", markup)
    return html.unescape(_TAGS.sub("", markup))


def fit_text(text: str) -> str:
    """``text`` cut to the ``MAX_TEXT_CHARS`` a Mention holds: a long post (a Reddit
    selftext, a long Mastodon status) is kept, not refused whole."""
    return text[:MAX_TEXT_CHARS]
