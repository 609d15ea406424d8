"""Items a source cannot read, skipped so that one of them does not hold up the others.

An API item without its time or id, a value of the wrong type, a Bluesky frame that is
not JSON, a Mastodon status without a numeric id: before, one such item failed its whole
page (or connection) on every poll until it left the window, and the target delivered
nothing meanwhile. Now the item is skipped and the rest goes on; the cursor moves past it
only as it moves past the items around it.

Never a silent drop: every skipped item is counted once, as an error of the source
(``crisiswatch_source_errors_total``, ``errors`` and ``last_error`` in ``GET /sources``),
and logged (a warning for the first ``LOGGED_SKIPS`` of a source, then every
``LOG_EVERY``-th, with the total; the others at debug level, so that a platform that
breaks every item does not flood the log). An item met again (the next poll reads the
late window again, a reconnect rewinds) is known by its key (its id, else a digest of
it) and neither counted nor logged again.

The backlog is another kind of skip, and no error: the first read of a target that lists
what it holds rather than what is new since a time (a feed, a Telegram channel's page)
finds items months or years old. Those older than the source's
``initial_lookback_minutes``, and those without a date (their age is unknown: on a first
read they are the backlog as much as anything), are marked seen and never published;
``backlogged`` counts them (``ItemSkips.backlog``) and logs one line per target, at info
level.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from listener.health import SourceHealth

log = logging.getLogger(__name__)

T = TypeVar("T")

UNREADABLE: tuple[type[Exception], ...] = (
    KeyError,
    IndexError,
    TypeError,
    ValueError,  # pydantic's ValidationError and json's JSONDecodeError are ValueErrors
    AttributeError,
    OverflowError,
    OSError,  # datetime.fromtimestamp of a time beyond the platform's range (Errno 75)
    RecursionError,  # JSON nested deeper than the decoder goes
)
"""What reading one item that is not of the expected shape raises. Only pure reading
(parsing, mapping, converting) is wrapped in it, never I/O: ``OSError`` is here for the
time conversions, a dropped connection must still end the stream."""

LOGGED_SKIPS = 10
LOG_EVERY = 100
REMEMBERED = 4096
"""Skipped items remembered (their keys), so that one met again is not counted again."""
_MAX_REASON = 200


def digest(item: object) -> str:
    """A key for an item without a readable id: a digest of its content."""
    if isinstance(item, bytes):
        raw = item
    else:
        try:
            raw = json.dumps(item, sort_keys=True, default=repr).encode("utf-8", "replace")
        except (TypeError, ValueError):  # keys of mixed types, circular: unlikely from JSON
            raw = repr(item).encode("utf-8", "replace")
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:32]


def reason(error: BaseException) -> str:
    """``error`` in a few words for a log line (an item's content can be long)."""
    text = " ".join(f"{type(error).__name__}: {error}".split())  # one line
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


class ItemSkips:
    """The items one source skipped (see the module doc)."""

    def __init__(self, health: SourceHealth) -> None:
        self.health = health
        self.count = 0
        """Skipped items counted (each once)."""
        self.backlog = 0
        """Items older than the lookback (or undated) met on first reads, not published."""
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._backlogged: set[str] = set()  # targets whose first read was logged

    def skip(self, message: str, *, key: str | None) -> bool:
        """Count and log one skipped item, ``message`` saying which and why (never a
        secret). ``key``: the item's identity (its id, or ``digest(item)``); an item whose
        key was seen already is not counted again. ``None``: always counted. Returns
        whether it was counted."""
        if key is not None:
            if key in self._seen:
                self._seen.move_to_end(key)
                log.debug("source %s: %s (skipped before)", self.health.name, message)
                return False
            self._seen[key] = None
            if len(self._seen) > REMEMBERED:
                self._seen.popitem(last=False)
        self.count += 1
        self.health.error(message)
        if self.count <= LOGGED_SKIPS or self.count % LOG_EVERY == 0:
            more = "" if self.count < LOGGED_SKIPS else f"; only every {LOG_EVERY}th is logged"
            log.warning(
                "source %s: %s (%d skipped so far%s)", self.health.name, message, self.count, more
            )
        else:
            log.debug("source %s: %s (%d skipped so far)", self.health.name, message, self.count)
        return True

    def read_all(self, items: Iterable[Any], read: Callable[[Any], T], what: str) -> list[T]:
        """``read`` of each item, in order; an item it cannot read is skipped (counted once
        by its digest, logged as an unreadable ``what``)."""
        out: list[T] = []
        for item in items:
            try:
                out.append(read(item))
            except UNREADABLE as exc:
                self.skip(f"unreadable {what} skipped ({reason(exc)})", key=digest(item))
        return out

    def backlogged(self, target: str, *, old: int, undated: int, new: int, since: datetime) -> None:
        """The first read of ``target`` (how logs name it) marked ``old`` items dated before
        ``since`` and ``undated`` ones seen without publishing them, and found ``new`` to
        publish. Counted in ``backlog``; logged once per target (a first read met again
        after a reconnect is logged at debug level)."""
        skipped = old + undated
        self.backlog += skipped
        if not skipped:
            return
        start = f"{since.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        message = (
            f"first read of {target}: {skipped} item(s) marked seen, not published ({old} "
            f"dated before {start}, the start of initial_lookback_minutes; {undated} without "
            f"a date); {new} newer published"
        )
        if target in self._backlogged:
            log.debug("source %s: %s (again)", self.health.name, message)
            return
        self._backlogged.add(target)
        log.info("source %s: %s", self.health.name, message)


def lookback_start(started_at: datetime, minutes: float) -> datetime:
    """Where a first read starts: ``minutes`` (a source's ``initial_lookback_minutes``)
    before the source started, as ``poll_since`` starts a new time mark (a lookback
    reaching before the year 1 starts there: everything is newer)."""
    try:
        return started_at - timedelta(minutes=minutes)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)
