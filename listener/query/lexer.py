"""Splits a query into tokens, each with its offset in the query (for error messages)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from listener.query.errors import QueryError

MAX_NEAR = 1000
_QUOTES = '"＂“”'  # ASCII, full-width and curly quotes all open and close a phrase
_OPEN = "(（"
_CLOSE = ")）"
_STOP = set(_QUOTES + _OPEN + _CLOSE)
_NEAR = re.compile(r"NEAR(?:/(.*))?", re.IGNORECASE | re.DOTALL)
_ALIAS = re.compile(r"[^\W][\w.-]*")
_FILTERS = ("lang", "source")
LANG = re.compile(r"[a-z]{2,3}(?:[-_][a-z0-9]{1,8})*")  # en, zh-Hant, und (lower case)
# Fields other listening and search tools have: written here they were one literal
# ("author:acme", never in a text) and the watch silently never matched. The value is
# ours that means it, if any.
_OTHER_FIELDS = {
    "language": "lang",
    "lan": "lang",
    "lng": "lang",
    "platform": "source",
    "src": "source",
    "site": "",
    "domain": "",
    "url": "",
    "author": "",
    "from": "",
    "to": "",
    "user": "",
    "title": "",
    "country": "",
    "location": "",
}
# The full-width forms an IME types of the ASCII characters that make a word syntax (an
# operator, NEAR/n, a field's colon, a trailing wildcard), read as those: ＯＲ, ＮＥＡＲ／３,
# lang：zh, refund＊ were literals ("or", "lang:zh", "refund*") that almost no post holds,
# and the watch silently matched nothing (full-width parentheses and quotes were syntax).
_FULL_WIDTH_RANGES = (
    ("０", "９"),
    ("Ａ", "Ｚ"),
    ("ａ", "ｚ"),
    ("＊", "＊"),
    ("／", "／"),
    ("：", "："),
)
_FULL_WIDTH = {
    cp: cp - 0xFEE0 for lo, hi in _FULL_WIDTH_RANGES for cp in range(ord(lo), ord(hi) + 1)
}
_SINGLE_OPEN = "'‘"  # a word starting with one of these and a later one ending with
_SINGLE_CLOSE = "'’"  # one of these: a phrase in single quotes (which is not a phrase)


class Kind(Enum):
    LPAREN = "'('"
    RPAREN = "')'"
    AND = "AND"
    OR = "OR"
    NOT = "NOT"
    NEAR = "NEAR"
    WORD = "a word"
    PHRASE = "a phrase"
    ALIAS = "an alias"
    FILTER = "a filter"
    END = "the end of the query"


@dataclass(frozen=True)
class Token:
    kind: Kind
    text: str  # the value: word/phrase text, alias name, filter value, operator as written
    position: int
    distance: int = 0  # NEAR/n
    field: str = ""  # lang/source for filters

    @property
    def label(self) -> str:
        if self.kind in (Kind.AND, Kind.OR, Kind.NOT, Kind.NEAR):
            return self.text
        return str(self.kind.value)


def tokenize(query: str) -> list[Token]:
    """The tokens of ``query``, ending with an END token."""
    tokens: list[Token] = []
    i, n = 0, len(query)
    while i < n:
        char = query[i]
        if char.isspace():
            i += 1
        elif char in _OPEN:
            tokens.append(Token(Kind.LPAREN, char, i))
            i += 1
        elif char in _CLOSE:
            tokens.append(Token(Kind.RPAREN, char, i))
            i += 1
        elif char in _QUOTES:
            end = _find_quote(query, i + 1)
            if end < 0:
                raise QueryError(query, i, 'unclosed quote: a phrase needs a closing "')
            text = query[i + 1 : end]
            if not text.strip():
                raise QueryError(query, i, "empty phrase")
            tokens.append(Token(Kind.PHRASE, text.strip(), i))
            i = end + 1
        else:
            start = i
            while i < n and not query[i].isspace() and query[i] not in _STOP:
                i += 1
            tokens.append(_word(query, query[start:i], start))
    tokens.append(Token(Kind.END, "", n))
    return tokens


def _find_quote(query: str, start: int) -> int:
    for i in range(start, len(query)):
        if query[i] in _QUOTES:
            return i
    return -1


def _word(query: str, word: str, pos: int) -> Token:
    written = word
    word = word.translate(_FULL_WIDTH)  # as many characters: positions hold
    upper = word.upper()
    if upper in ("AND", "OR", "NOT"):
        if word != upper:
            raise QueryError(
                query,
                pos,
                f"operators are written in capitals: {upper} "
                f'(or quote "{word}" to search for the word)',
            )
        return Token(Kind[upper], word, pos)
    near = _NEAR.fullmatch(word)
    if near and (word == "NEAR" or "/" in word):  # a lone lower-case "near" is a word
        return _near(query, word, pos, near.group(1))
    if word.startswith("@"):
        name = word[1:]
        if not _ALIAS.fullmatch(name):
            raise QueryError(query, pos, f"bad alias name {word!r}: write @name")
        return Token(Kind.ALIAS, name, pos)
    if len(word) > 1 and word[0] in "-－" and word[1].isalpha():
        raise QueryError(
            query, pos, f'a leading "-" is not NOT here: write NOT {word[1:]} (or quote "{word}")'
        )
    field, colon, value = word.partition(":")
    if colon and field.lower() in _FILTERS:
        if not value:
            example = "zh" if field.lower() == "lang" else "reddit"
            raise QueryError(query, pos, f"{field}: needs a value, e.g. {field.lower()}:{example}")
        if field.lower() == "lang" and not LANG.fullmatch(value.lower()):
            raise QueryError(
                query,
                pos + len(field) + 1,
                f"lang: takes one language code, e.g. lang:en or lang:zh-Hant (got {value!r}; "
                "for several: (lang:en OR lang:zh))",
            )
        if field.lower() == "source" and "," in value:
            raise QueryError(
                query,
                pos + len(field) + 1,
                f"source: takes one source, e.g. source:reddit (got {value!r}; "
                "for several: (source:reddit OR source:bluesky))",
            )
        return Token(Kind.FILTER, value.lower(), pos, field=field.lower())
    if colon and value and field.lower() in _OTHER_FIELDS:
        ours = _OTHER_FIELDS[field.lower()]
        hint = (
            f"did you mean {ours}:{value}?"
            if ours
            else "a query tests a mention's text, lang: and source: only"
        )
        raise QueryError(
            query, pos, f'there is no {field}: field: {hint} (or quote "{word}" to search for it)'
        )
    phrase = _single_quoted(query, pos, word) if word[0] in _SINGLE_OPEN else None
    if phrase:
        raise QueryError(
            query,
            pos,
            "single quotes do not make a phrase (they would be searched for as apostrophes): "
            f'write "{phrase}"',
        )
    mark = word.find("?")
    if mark >= 0:  # another tool's one-character wildcard: here it was a literal "?"
        raise QueryError(
            query,
            pos + mark,
            "'?' is not a wildcard: there is no one-character wildcard (write the spellings: "
            f'(colour OR color); a prefix: refund*); quote "{word}" to search for the text',
        )
    star = word.find("*")
    if star >= 0:
        if star != len(word) - 1:
            raise QueryError(
                query, pos + star, "'*' is only allowed at the end of a word (refund*)"
            )
        if len(word) < 3:
            raise QueryError(query, pos, "a wildcard needs at least 2 characters before '*'")
    # a term keeps its spelling (reported as written), but for the wildcard's star
    return Token(Kind.WORD, written[:-1] + "*" if star >= 0 else written, pos)


def _single_quoted(query: str, pos: int, word: str) -> str | None:
    """The words of a phrase written in single quotes that ``word`` (at ``pos``) opens:
    up to the first word ending with a single quote before the next parenthesis or double
    quote (None: there is none, as for ``'90s`` alone)."""
    end = len(query)
    for i in range(pos + len(word), len(query)):
        if query[i] in _STOP:
            end = i
            break
    words = query[pos:end].split()
    for k, w in enumerate(words):
        if w[-1] in _SINGLE_CLOSE and (k > 0 or len(w) > 1):
            return " ".join(words[: k + 1])[1:-1]
    return None


def _near(query: str, word: str, pos: int, distance: str | None) -> Token:
    if not word.startswith("NEAR"):
        raise QueryError(query, pos, f"operators are written in capitals: NEAR (not {word!r})")
    if distance is None or not distance.isascii() or not distance.isdigit():
        raise QueryError(query, pos, f"NEAR needs a distance in words, e.g. NEAR/5 (got {word!r})")
    n = int(distance)
    if n > MAX_NEAR:
        raise QueryError(query, pos, f"NEAR/{n} is too far: at most NEAR/{MAX_NEAR}")
    return Token(Kind.NEAR, word, pos, distance=n)
