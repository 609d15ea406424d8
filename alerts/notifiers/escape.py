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

``defuse`` never relies on regex word boundaries (``\b``): CJK characters are word
characters, so ``看https://evil.example中`` or ``@all群`` would slip past them, yet chat
clients link and ping there. A scheme is defanged wherever it appears, an @-all ping
wherever no ASCII letter, digit or underscore follows it, a domain's dot wherever ASCII
letters (a TLD) follow it and no further ASCII letter does.

Limits are hard: ``plain``/``line``/``slack``/``markdown``/``html`` return at most
``limit`` characters *after* escaping (defanging lengthens text: the input is cut shorter
until the result fits). ``line`` is ``plain`` on one line (whitespace runs, line breaks
included, become one space): for every field a reader takes for a single line (author
names, titles, log lines, summaries).
"""

from __future__ import annotations

import html as _html
import re
import unicodedata
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

ZWSP = "\u200b"

_BIDI = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F))
# No \b anywhere: CJK characters are word characters (\w), so "@all群" or
# "看https://evil.example中" have no word boundary where a chat client still sees one.
_NOT_ASCII_WORD = r"(?![A-Za-z0-9_])"
_PINGS = re.compile(
    rf"@(?=(?:(?:channel|here|everyone|all|group|room){_NOT_ASCII_WORD}|所有人))", re.IGNORECASE
)
# Slack-style <!everyone>, <@U123>, <#C123>; Feishu <at id=all>, <at user_id="all">
_ANGLE = re.compile(rf"<(?=[!@#]|at{_NOT_ASCII_WORD})", re.IGNORECASE)
_SCHEME = re.compile(r"(https?|ftp|mailto):(//)?", re.IGNORECASE)
_WWW = re.compile(r"www\.", re.IGNORECASE)
# a dot between something and a TLD-like run of ASCII letters (or an IDNA "xn--" label)
_DOMAIN = re.compile(r"(?<=[\w-])\.(?=(?:xn--[a-z0-9-]{1,59}|[a-z]{2,24})(?![a-z]))", re.IGNORECASE)


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


# fullmatch, never ^...$: "$" also matches before a final line break. No backslash: a
# browser reads it as "/" in an http(s) URL (WHATWG URL standard) where ``urlsplit`` does
# not, so "https://evil.example\@good.example/" leads to evil.example while ``host``
# would name good.example; in markdown it escapes the ")" that ends a link; JSON doubles it.
_URL = re.compile(r"https?://[^\s<>|\"'`\\]+", re.IGNORECASE)


def one_line(text: str) -> str:
    """Every whitespace run (line breaks, tabs, Unicode line separators) as one space."""
    return " ".join(text.split())


def _fit(escape: Callable[[str], str], text: str, limit: int) -> str:
    """``escape(clean(text))`` cut, before escaping, so that it is at most ``limit``
    characters after escaping (which may lengthen it): limits are hard."""
    raw = limit
    while True:
        out = escape(clean(text, raw))
        if len(out) <= limit:
            return out
        if raw <= 1:
            return ""
        raw = max(raw - max(len(out) - limit, 1), 1)


def _plain(text: str) -> str:
    return defuse(text)


def _line(text: str) -> str:
    return one_line(defuse(text))


def _slack(text: str) -> str:
    return slack_entities(defuse(text).translate(_SLACK_MRKDWN))


def _slack_line(text: str) -> str:
    return _slack(one_line(text))


def _markdown(text: str) -> str:
    return one_line(defuse(text)).translate(_MARKDOWN)


def _html_text(text: str) -> str:
    return _html.escape(defuse(text), quote=True)


def plain(text: str, limit: int = 600) -> str:
    """Safe for consoles, JSON receivers and any chat that renders plain text."""
    return _fit(_plain, text, limit)


def line(text: str, limit: int = 600) -> str:
    """``plain`` on one line: for names, titles, summaries, log lines."""
    return _fit(_line, text, limit)


def slack(text: str, limit: int = 600) -> str:
    """Safe inside a Slack ``mrkdwn`` or ``plain_text`` object."""
    return _fit(_slack, text, limit)


def slack_line(text: str, limit: int = 600) -> str:
    """``slack`` on one line."""
    return _fit(_slack_line, text, limit)


def markdown(text: str, limit: int = 600) -> str:
    """Safe inside DingTalk/WeCom markdown, a Feishu card ``markdown`` and a Teams TextBlock
    (always one line)."""
    return _fit(_markdown, text, limit)


def html(text: str, limit: int = 600) -> str:
    """Safe inside an HTML element's text or a quoted attribute."""
    return _fit(_html_text, text, limit)


def safe_url(url: str | None) -> str | None:
    """``url`` if it is a plain http(s) URL we may link to, else None."""
    if not url or len(url) > 2000:
        return None
    if not _URL.fullmatch(url):
        return None
    return url


_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})  # IDNA label separators


def host(url: str | None, limit: int = 80) -> str | None:
    """The host ``url`` leads to, as a reader should see it (None: none, or not ``safe_url``).

    Lower case, percent-escapes decoded and internationalised names in their ASCII
    (``xn--``) form, as a browser resolves them, so a look-alike (``аcme.example`` with a
    Cyrillic ``а``) shows as what it is; the user-info part (``acme.example@evil.example``)
    is not the host. A host over ``limit`` characters keeps its end (the domain that
    owns it): ``…`` + its last characters. Raw: escape it for the markup it goes into."""
    if safe_url(url) is None or url is None:
        return None
    try:
        name = urlsplit(url).hostname
    except ValueError:
        return None
    if not name:
        return None
    name = unquote(name).translate(_DOTS).strip(".").lower()
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:  # IDNA 2003 refuses it: every non-ASCII label as bare punycode
        name = ".".join(
            label if label.isascii() else "xn--" + label.encode("punycode").decode("ascii")
            for label in name.split(".")
        )
    name = "".join(ch for ch in name if ch.isascii() and ch.isprintable() and not ch.isspace())
    if not name:
        return None
    return name if len(name) <= limit else "…" + name[-(limit - 1) :]


def markdown_url(url: str | None) -> str | None:
    """``safe_url`` with the characters that end a markdown link target percent-encoded."""
    safe = safe_url(url)
    if safe is None:
        return None
    return safe.replace("(", "%28").replace(")", "%29").replace("[", "%5B").replace("]", "%5D")


_ID = re.compile(r"[A-Za-z0-9_.:@+-]{1,128}")
_PHONE = re.compile(r"\+?[0-9][0-9 -]{3,22}[0-9]")


def chat_id(value: str | None) -> str | None:
    """A platform user id we may put inside mention syntax, or None (never ``all``)."""
    if not value or not _ID.fullmatch(value) or value.lower() in ("all", "@all", "everyone"):
        return None
    return value


def phone(value: str | None) -> str | None:
    """A phone number we may mention by (digits, spaces, dashes, a leading +), or None."""
    if not value or not _PHONE.fullmatch(value):
        return None
    return value.replace(" ", "").replace("-", "")
