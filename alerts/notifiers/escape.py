"""Neutralise hostile text (mention text, author names) before it reaches a chat message.

Mention text is written by strangers. It must not ping everybody (``@channel``,
``<!everyone>``), inject markup or links, or smuggle terminal/bidi control characters.

* ``clean``: drops control characters (except newline and tab) and bidi overrides, and
  truncates.
* ``defuse``: breaks @-all pings and mention tags (``<!channel>``, ``<@U1>``, Feishu's
  ``<at id=all>``) with a zero-width space and defangs links
  (``https://evil.com`` -> ``hxxps://evil[.]com``, ``evil.com`` -> ``evil[.]com``), so no
  chat client turns them into something clickable.
* ``slack``: ``clean`` + ``defuse`` + Slack's three reserved characters (& < >) as
  entities, which also kills ``<!channel>``, ``<@U123>`` and ``<http://x|label>``; the
  ``mrkdwn`` formatting characters (``* _ ~ ` [ ]``) become look-alikes, so no bold, code
  or markdown-style link is produced.
* ``markdown``: for the markdown dialects of DingTalk, WeCom, Feishu cards and Teams
  Adaptive Cards. None of them documents an escape character that works everywhere, so
  every character with a meaning in any of them (``\\ * _ ~ ` [ ] < > # | & @``) becomes
  its full-width look-alike (``*`` -> ``＊``, ``@`` -> ``＠``): no link, no formatting, no
  ``<at id=all>``, no ``<@userid>``, no HTML entity, no mention survives. Whitespace runs
  collapse to one space, so no block syntax (headings, lists, quotes) can start a line.
* ``html``: ``clean`` + ``defuse`` + HTML escaping (email bodies).

``clean`` also drops invisible format characters (zero-width spaces and joiners, bidi
marks, soft hyphens: Unicode category Cf), so ``@\u200ball`` or ``ht\u200btps://`` in the
input cannot slip past ``defuse``; the zero-width spaces ``defuse`` inserts come after.
"""

from __future__ import annotations

import html as _html
import re
import unicodedata

ZWSP = "\u200b"

_BIDI = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F))
_PINGS = re.compile(r"@(?=(?:(?:channel|here|everyone|all|group|room)\b|所有人))", re.IGNORECASE)
# Slack-style <!everyone>, <@U123>, <#C123>; Feishu <at id=all>, <at user_id="all">
_ANGLE = re.compile(r"<(?=[!@#]|at\b)", re.IGNORECASE)
_SCHEME = re.compile(r"\b(https?|ftp|mailto):(//)?", re.IGNORECASE)
_WWW = re.compile(r"\bwww\.", re.IGNORECASE)
_DOMAIN = re.compile(r"(?<=[\w-])\.(?=[a-z]{2,24}\b)", re.IGNORECASE)


def clean(text: str, limit: int = 600) -> str:
    out = "".join(
        ch
        for ch in text
        if ch in "\n\t" or (ch not in _BIDI and unicodedata.category(ch) not in ("Cc", "Cf"))
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


# Every character with a meaning in DingTalk/WeCom/Feishu/Teams markdown -> full-width twin.
_MARKDOWN = str.maketrans({c: chr(ord(c) + 0xFEE0) for c in "\\*_~`[]<>#|&@"})
# Slack mrkdwn: & < > are entities (see slack_entities); these format text.
_SLACK_MRKDWN = str.maketrans({c: chr(ord(c) + 0xFEE0) for c in "*_~`[]"})


def plain(text: str, limit: int = 600) -> str:
    """Safe for consoles, JSON receivers and any chat that renders plain text."""
    return defuse(clean(text, limit))


def slack(text: str, limit: int = 600) -> str:
    """Safe inside a Slack ``mrkdwn`` or ``plain_text`` object."""
    return slack_entities(defuse(clean(text, limit)).translate(_SLACK_MRKDWN))


def markdown(text: str, limit: int = 600) -> str:
    """Safe inside DingTalk/WeCom markdown, a Feishu card ``markdown`` and a Teams TextBlock."""
    return " ".join(defuse(clean(text, limit)).split()).translate(_MARKDOWN)


def html(text: str, limit: int = 600) -> str:
    """Safe inside an HTML element's text or a quoted attribute."""
    return _html.escape(defuse(clean(text, limit)), quote=True)


def safe_url(url: str | None) -> str | None:
    """``url`` if it is a plain http(s) URL we may link to, else None."""
    if not url or len(url) > 2000:
        return None
    if not re.match(r"^https?://[^\s<>|\"'`]+$", url, re.IGNORECASE):
        return None
    return url


def markdown_url(url: str | None) -> str | None:
    """``safe_url`` with the characters that end a markdown link target percent-encoded."""
    safe = safe_url(url)
    if safe is None:
        return None
    return safe.replace("(", "%28").replace(")", "%29").replace("[", "%5B").replace("]", "%5D")


_ID = re.compile(r"^[A-Za-z0-9_.:@+-]{1,128}$")
_PHONE = re.compile(r"^\+?[0-9][0-9 -]{3,22}[0-9]$")


def chat_id(value: str | None) -> str | None:
    """A platform user id we may put inside mention syntax, or None (never ``all``)."""
    if not value or not _ID.match(value) or value.lower() in ("all", "@all", "everyone"):
        return None
    return value


def phone(value: str | None) -> str | None:
    """A phone number we may mention by (digits, spaces, dashes, a leading +), or None."""
    if not value or not _PHONE.match(value):
        return None
    return value.replace(" ", "").replace("-", "")
