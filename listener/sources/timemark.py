"""A "since" cursor for APIs that filter by a creation time in whole seconds.

Asking for items at or after second ``t`` (never strictly after: two items can share a
second, and the second one may not be indexed yet when the first is read) returns again
the items of second ``t`` that were delivered; ``ids`` remembers those, so each item is
taken once.

Items also appear *behind* the mark: a search index that lags (Algolia, Reddit search), a
comment held for review and approved later, all carry their creation time. So each poll
asks from the mark minus a safety window (``late_window_seconds``) and ``earlier``
remembers the ids delivered inside that window (saved in the cursor, so a restart does not
repeat them either): an item that turns up late, but within the window, is delivered once;
one later than that is missed.

One item that cannot be read (no time, no id, a value of the wrong type, a time after
the year 9999) is skipped, logged and counted (``listener.sources.skips``); the rest of
its page is delivered and the mark moves on as it would without it (the item's id is
remembered in ``earlier``, so it is not read again).

An item dated more than ``MAX_FUTURE`` ahead of the clock (a platform's bad time) does not
move the mark either: it would move it past every real item for good, and those would
never be asked for again. It is delivered (re-dated to now by ``LiveSource``) and its id
remembered in ``earlier`` at its second, so that later polls, which read it again, do not
deliver it again. A saved mark found ahead of the clock (left by an earlier version) is
brought back to the first-run start, logged and counted.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from pydantic import Field

from core.events import Mention
from listener.backoff import RateLimited
from listener.sources.base import SourceFatalError
from listener.sources.live import MAX_FUTURE, LiveSource, Step
from listener.sources.skips import UNREADABLE, digest, reason

log = logging.getLogger(__name__)

Item = TypeVar("Item")

LAST_SECOND = 253_402_300_799
"""9999-12-31T23:59:59Z: an item dated after it cannot be placed (no datetime holds it)."""
DEFAULT_LATE_WINDOW_SECONDS = 300.0
LateWindowSeconds = Annotated[
    float,
    Field(
        ge=0,
        le=3600,
        description="each poll asks again from this long before the newest item delivered "
        "(the ids delivered in that window are kept in the cursor), so items that appear "
        "late (search index lag, comments approved later) are not skipped",
    ),
]
"""The ``late_window_seconds`` setting of every source polled with ``poll_since``."""


@dataclass
class TimeMark:
    t: int
    ids: list[str] = field(default_factory=list)
    earlier: dict[str, int] = field(default_factory=dict)
    """Ids taken at a second other than ``t`` (id → that second): delivered before ``t``
    but within the window, dated ahead of the clock (they do not move ``t``), or skipped
    (unreadable). None of them is admitted again; each is dropped once the window has
    passed its second."""
    floor: int = 0
    """Nothing before this second is asked for (a new mark's start: the lookback)."""

    def since(self, window: int) -> int:
        """The second to ask from: the mark minus the window, not below the floor."""
        return max(self.t - window, self.floor)

    def admits(self, t: int, item_id: str, window: int = 0) -> bool:
        """Whether the item at second ``t`` is new (not taken yet, not behind the window)."""
        if item_id in self.earlier:
            return False
        if t > self.t:
            return True
        if t == self.t:
            return item_id not in self.ids
        return t >= self.since(window)

    def advance(self, t: int, item_id: str, window: int = 0, *, latest: int | None = None) -> None:
        """Take the item at second ``t``: the mark moves to ``t`` when it is later. A ``t``
        after ``latest`` (the clock plus ``MAX_FUTURE``) does not move the mark: the item
        is remembered in ``earlier`` only."""
        if latest is not None and t > latest:
            self.passed(t, item_id)
        elif t > self.t:
            for old in self.ids:
                self.earlier[old] = self.t
            self.t, self.ids = t, [item_id]
            cut = self.t - window
            self.earlier = {i: s for i, s in self.earlier.items() if s >= cut}
        elif t == self.t:
            self.ids = [*self.ids, item_id]
        else:
            self.earlier[item_id] = t

    def passed(self, t: int, item_id: str) -> None:
        """Remember the item at second ``t`` as taken without moving the mark (one
        skipped, or dated ahead of the clock)."""
        self.earlier[item_id] = t

    def rewound(self, start: int) -> TimeMark:
        """This mark brought back to ``start`` (a first run's), its items remembered."""
        earlier = {**self.earlier, **dict.fromkeys(self.ids, self.t)}
        return TimeMark(start, [], earlier, floor=start)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"t": self.t, "ids": self.ids}
        if self.earlier:
            out["earlier"] = self.earlier
        if self.floor:
            out["floor"] = self.floor  # a restart asks no further back than the first run
        return out

    @classmethod
    def from_json(cls, raw: object) -> TimeMark:
        """Raises ``ValueError`` (``TypeError``, ``KeyError``) for what is not a mark."""
        if not isinstance(raw, dict):
            raise TypeError(f"a time mark is an object, not {type(raw).__name__}")
        earlier_raw = raw.get("earlier") or {}
        ids_raw = raw.get("ids", [])
        if not isinstance(earlier_raw, dict) or not isinstance(ids_raw, list):
            raise TypeError("a time mark's earlier is an object and its ids a list")
        earlier = {str(i): whole_seconds(s) for i, s in earlier_raw.items()}
        ids = [str(i) for i in ids_raw]
        return cls(whole_seconds(raw["t"]), ids, earlier, whole_seconds(raw.get("floor") or 0))


def whole_seconds(value: object) -> int:
    """A time in seconds as the APIs send it (an int, or a float: Reddit's
    ``created_utc``), as an int. Raises ``TypeError``/``ValueError`` for anything else
    (a string, a bool, null, NaN): an item with such a time cannot be placed."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"a time in seconds is a number, not {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"a time in seconds is finite, not {value}")
    return int(value)


def load_marks(cursor: str | None) -> dict[str, TimeMark]:
    """The marks of a cursor ``dump_marks`` wrote. Raises ``ValueError`` (``TypeError``,
    ``KeyError``) for one that cannot be read."""
    if not cursor:
        return {}
    raw = json.loads(cursor)
    if not isinstance(raw, dict):
        raise TypeError(f"a cursor of time marks is an object, not {type(raw).__name__}")
    return {str(key): TimeMark.from_json(value) for key, value in raw.items()}


def dump_marks(marks: dict[str, TimeMark]) -> str:
    return json.dumps({key: mark.as_json() for key, mark in marks.items()})


async def poll_since(
    source: LiveSource,
    cursor: str | None,
    targets: Sequence[tuple[str, Callable[[int], Awaitable[list[Item]]]]],
    stamp: Callable[[Item], tuple[int, str]],
    to_mention: Callable[[Item], Mention],
    *,
    interval: Callable[[], float],
    lookback_minutes: float,
    late_window_seconds: float = DEFAULT_LATE_WINDOW_SECONDS,
    ident: Callable[[Item], object] | None = None,
    label: Callable[[str], str] = str,
) -> AsyncIterator[Step]:
    """The polling loop of the "since" APIs: for each target (a query, a listing), fetch
    the items at or after its mark minus ``late_window_seconds``, and yield the new ones,
    oldest first, with the cursor after each; then sleep ``interval()``. ``stamp(item)``
    is (created second, id).

    An item that ``stamp`` or ``to_mention`` cannot read (no time or id, a value of the
    wrong type: they raise) is skipped, logged and counted once (``source.skips``, keyed
    by ``ident(item)`` when that is a readable id, else a digest of the item); the rest
    of the page is delivered. ``fetch`` returns such items as they came (in any order):
    a fetch that fails on one would fail the whole target on every poll until the item
    left the window. Neither such an item nor one dated more than ``MAX_FUTURE`` ahead of
    the clock moves the mark (see the module doc).

    A target whose fetch fails is skipped with a backoff of its own while the others go
    on (a deleted video, a private subreddit); ``RateLimited`` and ``SourceFatalError``
    concern the whole source and end the stream (the base waits or stops). The source's
    state is ``waiting`` while every target fails. ``label(key)``: how logs and health
    name a target (its key, by default)."""
    marks = load_marks(cursor)
    window = int(late_window_seconds)
    # not before 1970: a lookback of .inf (or 1e300) is "everything", not an OverflowError
    # at every reconnect (or a 300-digit second in the query)
    start = int(max(source.started_at.timestamp() - lookback_minutes * 60, 0))
    _bring_back(source, marks, start)
    failing = source.failing
    failing.first = interval()
    distinct = len({key for key, _ in targets})  # as ``failing`` counts them: by key
    source.health.set_state("polling")
    while True:
        for key, fetch in targets:
            if not failing.due(key):
                continue
            mark = marks.setdefault(key, TimeMark(start, floor=start))
            try:
                items = await fetch(mark.since(window))
            except (RateLimited, SourceFatalError):
                raise
            except Exception as exc:
                failing.failed(key, label(key), exc, targets=distinct)
                continue
            failing.succeeded(key)
            latest = _latest(source)
            for t, item_id, item in _placed(source, key, items, stamp, ident):
                if not mark.admits(t, item_id, window):
                    continue
                try:
                    mention: Mention | None = to_mention(item)
                except UNREADABLE as exc:
                    source.skips.skip(
                        f"item {item_id} of {key} skipped: cannot be read ({reason(exc)})",
                        key=item_id,
                    )
                    mark.passed(t, item_id)  # never read again; the mark stays
                    mention = None
                else:
                    mark.advance(t, item_id, window, latest=latest)
                yield mention, dump_marks(marks)
        source.health.set_state("waiting" if failing.count == len(targets) else "polling")
        await source.clock.sleep(interval())


def searched(
    source: LiveSource,
    items: Sequence[Item],
    stamp: Callable[[Item], tuple[int, str]],
    to_mention: Callable[[Item], Mention],
    what: str,
) -> list[Mention]:
    """A backfill search's items as mentions, oldest first (the APIs answer newest first);
    an item that cannot be read is skipped, logged and counted as a ``what``."""

    def read(item: Item) -> Mention:
        stamp(item)
        return to_mention(item)

    found = source.skips.read_all(items, read, what)
    return sorted(found, key=lambda m: (m.created_at, m.id))


def _latest(source: LiveSource) -> int:
    """The latest second a mark may move to: the clock plus ``MAX_FUTURE``."""
    return int((source.clock.now() + MAX_FUTURE).timestamp())


def _bring_back(source: LiveSource, marks: dict[str, TimeMark], start: int) -> None:
    """Marks of a saved cursor ahead of the clock (one far-future item moved them there,
    before ``latest`` held them back), brought back to ``start``: the items after such
    a mark would never be asked for. Logged and counted."""
    latest = _latest(source)
    for key, mark in marks.items():
        if mark.t > latest:
            marks[key] = mark.rewound(start)
            when = f"second {mark.t}" if mark.t <= LAST_SECOND else "after the year 9999"
            message = (
                f"the time mark of {key} was ahead of the clock ({when}); brought back to "
                "the first-run start"
            )
            log.warning("source %s: %s", source.name, message)
            source.health.error(message)


def _placed(
    source: LiveSource,
    target: str,
    items: Sequence[Item],
    stamp: Callable[[Item], tuple[int, str]],
    ident: Callable[[Item], object] | None,
) -> list[tuple[int, str, Item]]:
    """``(second, id, item)`` of the items that can be placed, oldest first; the others
    (``stamp`` raises) are skipped, logged and counted once each."""
    placed: list[tuple[int, str, Item]] = []
    for item in items:
        try:
            t, item_id = stamp(item)
            if t > LAST_SECOND:
                raise ValueError("a time after the year 9999")
        except UNREADABLE as exc:
            name = _ident(item, ident)
            what = f"item {name}" if name else "an item (no readable id)"
            source.skips.skip(
                f"{what} of {target} skipped: cannot be read ({reason(exc)})",
                key=name or digest(item),
            )
            continue
        placed.append((t, item_id, item))
    placed.sort(key=lambda p: (p[0], p[1]))
    return placed


def _ident(item: object, ident: Callable[[Any], object] | None) -> str | None:
    """The item's id when ``ident`` reads one (a non-empty string or an int), else None."""
    if ident is None:
        return None
    try:
        value = ident(item)
    except UNREADABLE:
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or (isinstance(value, str) and value and len(value) <= 200):
        return str(value)
    return None
