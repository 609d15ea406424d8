"""What a user writes to name a source's targets, read or refused in words.

A user copies a video's address where its id is wanted, an ``@handle`` for a channel id,
``r/gadgets`` for a subreddit, ``https://t.me/acme`` for a channel username, ``#acme`` for
a hashtag, ``https://mastodon.social/`` with its slash. Before, most of these passed the
config and failed at run time as a target that "is not found" (a wrong id looks like a
deleted video), or were refused with a regular expression. Each function returns the
value to use or raises ``ValueError`` with a message that says what to write instead
(``check-config`` shows it under the setting's path). Only what cannot be right is
refused: every id made of the characters a platform uses passes.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

_ID = re.compile(r"^[A-Za-z0-9_-]+$")
"""The characters of YouTube's video and channel ids (base64url)."""
_SUBREDDIT = re.compile(r"^[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)*$")
"""A subreddit's name, or several joined by ``+`` (Reddit reads them as one listing)."""
_TELEGRAM = re.compile(r"^[A-Za-z][A-Za-z0-9_]{3,31}$")
_HASHTAG = re.compile(r"^[\w·\u200c]+$")
"""A Mastodon hashtag: letters, digits, ``_``, ``·`` and ZWNJ (Mastodon's own rule)."""
_INSTANCE = re.compile(r"^https?://[^/\s?#]+$")


def _url_parts(value: str) -> tuple[str, str, dict[str, list[str]]] | None:
    """(host, path, query) of ``value`` when it is a web address (with or without its
    scheme), else None."""
    text = value if "://" in value else f"https://{value}"
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    if not parts.hostname or "." not in parts.hostname:
        return None
    return parts.hostname.lower(), parts.path, parse_qs(parts.query)


def youtube_video(value: str) -> str:
    """A video id (``dQw4w9WgXcQ``); an address of the video is refused naming its id."""
    value = value.strip()
    if _ID.match(value):
        return value
    found: str | None = None
    parts = _url_parts(value)
    if parts is not None:
        host, path, query = parts
        if host.endswith("youtu.be"):
            found = path.strip("/").split("/")[0]
        elif "v" in query:
            found = query["v"][0]
        elif path.startswith(("/shorts/", "/live/", "/embed/")):
            found = path.split("/")[2]
    hint = f" (write {found})" if found and _ID.match(found) else ""
    raise ValueError(
        f"{value!r} is not a video id: give the id alone, the part after watch?v= in the "
        f"video's address{hint}"
    )


def youtube_channel(value: str) -> str:
    """A channel id (``UC`` and 22 more characters); a handle or an address is refused."""
    value = value.strip()
    if _ID.match(value):
        return value
    found: str | None = None
    parts = _url_parts(value)
    if parts is not None and parts[1].startswith("/channel/"):
        found = parts[1].split("/")[2]
    if found and _ID.match(found):
        raise ValueError(f"{value!r} is not a channel id: write {found}")
    raise ValueError(
        f"{value!r} is not a channel id: give the channel's id (UC followed by 22 "
        "characters: on the channel's page, About, Share channel, Copy channel ID), "
        "not its @handle or its address"
    )


def subreddit(value: str) -> str:
    """A subreddit's name (``gadgets``); ``r/gadgets`` or its address is refused naming
    the name."""
    value = value.strip()
    if _SUBREDDIT.match(value):
        return value
    match = re.search(r"(?:^|/)r/([A-Za-z0-9_]+)", value)
    hint = f" (write {match.group(1)})" if match else ""
    raise ValueError(
        f"{value!r} is not a subreddit name: give the name alone, one per entry, as in "
        f"[gadgets, android]{hint}"
    )


def telegram_channel(value: str) -> str:
    """A public channel's username (``acmewatch``); ``@acmewatch`` or its t.me address is
    refused naming the username."""
    value = value.strip()
    if _TELEGRAM.match(value):
        return value
    candidate = value.removeprefix("@")
    parts = _url_parts(value)
    if parts is not None and parts[0] in ("t.me", "telegram.me"):
        segments = [s for s in parts[1].split("/") if s]
        if segments and segments[0] == "s":
            segments = segments[1:]
        candidate = segments[0] if segments else ""
    hint = f" (write {candidate})" if _TELEGRAM.match(candidate) and candidate != value else ""
    raise ValueError(
        f"{value!r} is not a public channel username: give the username alone (5 to 32 "
        f"letters, digits or _, starting with a letter){hint}"
    )


def hashtag(value: str) -> str:
    """A Mastodon hashtag, without its ``#`` (one leading ``#`` is dropped)."""
    tag = value.strip().removeprefix("#")
    if _HASHTAG.match(tag):
        return tag
    raise ValueError(
        f"{value!r} is not one hashtag: letters, digits and _ only, without spaces (e.g. acme)"
    )


def instance(value: str) -> str:
    """A Mastodon instance's address, ``https://host`` (a final ``/`` is dropped)."""
    address = value.strip().rstrip("/")
    if _INSTANCE.match(address):
        return address
    hint = ""
    if "://" not in address and _INSTANCE.match(f"https://{address}"):
        hint = f" (write https://{address})"
    elif _INSTANCE.match(address.split("/@")[0].rstrip("/")):
        hint = f" (write {address.split('/@')[0].rstrip('/')})"
    raise ValueError(
        f"{value!r} is not an instance address: give https:// and the instance's host, "
        f"nothing after it{hint}"
    )


def lower_name(value: str, what: str, example: str, longest: int = 40) -> str:
    """A name of lower-case letters, digits, ``.``, ``_`` and ``-``, at most ``longest``:
    ``what`` it names, ``example`` one that is right."""
    if re.match(rf"^[a-z0-9_.-]{{1,{longest}}}$", value):
        return value
    suggestion = re.sub(r"[^a-z0-9_.-]+", "-", value.strip().lower()).strip("-")[:longest]
    hint = suggestion if suggestion and suggestion != value else example
    raise ValueError(
        f"{value!r} is not a name for {what}: lower-case letters, digits, '.', '_' and "
        f"'-' only, at most {longest} (e.g. {hint})"
    )


def address(value: str, what: str, schemes: tuple[str, ...] = ("https", "http")) -> str:
    """A whole address of one of ``schemes`` (the first is the one suggested): ``what``
    it is the address of."""
    value = value.strip()
    scheme, found, rest = value.partition("://")
    if found and scheme.lower() in schemes and rest and not any(c.isspace() for c in rest):
        return value
    hint = ""
    if not found and value and not any(c.isspace() for c in value):
        hint = f" (write {schemes[0]}://{value})"
    elif found and rest and scheme.lower() in ("http", "https", "ws", "wss"):
        hint = f" (write {schemes[0]}://{rest})"
    wanted = " or ".join(f"{s}://" for s in schemes)
    raise ValueError(f"{value!r} is not {what}: give it whole, starting with {wanted}{hint}")
