"""Neutralise hostile text (mention text, author names) before it reaches a chat message.

Mention text is written by strangers. It must not ping everybody (``@channel``,
``<!everyone>``), inject markup or links, or smuggle terminal/bidi control characters.

* ``clean``: drops control characters (except newline and tab) and bidi overrides, and
  truncates.
* ``defuse``: breaks @-all pings with a zero-width space and defangs links
  (``https://evil.com`` -> ``hxxps://evil[.]com``, ``evil.com`` -> ``evil[.]com``), so no
  chat client turns them into something clickable.
* ``slack``: ``clean`` + ``defuse`` + Slack's three reserved characters (& < >) as
  entities, which also kills ``<!channel>``, ``<@U123>`` and ``<http://x|label>``.
"""

from __future__ import annotations

import re
import unicodedata

ZWSP = "\u200b"

_BIDI = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F))
_PINGS = re.compile(r"@(?=(?:(?:channel|here|everyone|all|group|room)\b|所有人))", re.IGNORECASE)
_ANGLE = re.compile(r"<(?=[!@#])")  # Slack-style <!everyone>, <@U123>, <#C123>
_SCHEME = re.compile(r"\b(https?|ftp|mailto):(//)?", re.IGNORECASE)
_WWW = re.compile(r"\bwww\.", re.IGNORECASE)
_DOMAIN = re.compile(r"(?<=[\w-])\.(?=[a-z]{2,24}\b)", re.IGNORECASE)


def clean(text: str, limit: int = 600) -> str:
    out = "".join(
        ch for ch in text if ch in "\n\t" or (ch not in _BIDI and unicodedata.category(ch) != "Cc")
    )
    if len(out) > limit:
        out = out[: max(limit - 1, 0)].rstrip() + "…"
    return out


def _defang_scheme(match: re.Match[str]) -> str:
    scheme = match.group(1)
    if scheme.lower().startswith("http"):
        scheme = "hxxp" + scheme[4:]
    return f"{scheme}[:]{match.group(2) or ''}"


def defuse(text: str) -> str:
    text = _PINGS.sub("@" + ZWSP, text)
    text = _ANGLE.sub("<" + ZWSP, text)
    text = _SCHEME.sub(_defang_scheme, text)
    text = _WWW.sub("www[.]", text)
    return _DOMAIN.sub("[.]", text)


def slack_entities(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plain(text: str, limit: int = 600) -> str:
    """Safe for consoles, JSON receivers and any chat that renders plain text."""
    return defuse(clean(text, limit))


def slack(text: str, limit: int = 600) -> str:
    """Safe inside a Slack ``mrkdwn`` or ``plain_text`` object."""
    return slack_entities(defuse(clean(text, limit)))


def safe_url(url: str | None) -> str | None:
    """``url`` if it is a plain http(s) URL we may link to, else None."""
    if not url or len(url) > 2000:
        return None
    if not re.match(r"^https?://[^\s<>|\"'`]+$", url, re.IGNORECASE):
        return None
    return url
