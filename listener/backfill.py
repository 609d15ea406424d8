"""Backfill: recent history for a new watch, from the sources that can search.

A source that can search implements ``Searchable.search(query, since)``: Hacker News
(Algolia) and Reddit (site-wide search) do. The others stream from now (Jetstream,
Mastodon), list only what is configured (RSS, Telegram, YouTube) or have no search API.
``backfill`` runs each of the watch's terms through each searchable source, keeps what the
watch matches, drops repeats, and returns the mentions oldest first.

A backfill keeps no cursor and touches none (the live sources' cursors are theirs): it is
run again from the start, and what two runs both find is dropped by dedup downstream.

What an upstream does wrong is absorbed, counted (``BackfillReport``) and never silent:

* a search that fails (a 429 or a 503 with ``Retry-After``: that wait; a 5xx, a dropped
  connection, an answer that cannot be read: a backoff) is tried up to ``TRIES`` times;
  one that still fails is reported (``failed``) and the other searches go on. A refused
  credential is not retried: the source's other searches are reported as not asked;
* an item dated before the window (a search that ignores its filter) is dropped, one dated
  more than ``MAX_FUTURE`` ahead of the clock is re-dated to now (as the live sources do);
* the same post from another search or page is kept once;
* a search cut at the source's page cap or, where the source cannot page back past it,
  at ``SEARCH_LIMIT`` items (older items not fetched) is reported with how far back it
  reached; so is one that a platform's limit kept from part of its window (the source's
  ``health.window_cuts``: Hacker News when Algolia ignores the ``created_at_i<=`` bound,
  or when more than 1,000 hits share one second), with what the source said was missed;
  items the source could not read (skipped and logged by the source) are counted.
  A cut is not a failure: running the search again would miss the same items, so it does
  not make the report incomplete (and the exit status stays 0).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from core.clock import Clock, SystemClock
from core.events import Mention
from listener.backoff import Backoff, RateLimited, TransientError
from listener.config import WatchConfig
from listener.query import compile_query
from listener.sources.base import SourceFatalError
from listener.sources.live import MAX_FUTURE
from listener.sources.skips import reason
from listener.watches import WatchMatcher

log = logging.getLogger(__name__)

TRIES = 5
"""Tries of one (source, query) search before it is reported as failed."""
SEARCH_LIMIT = 1000
"""The most items one search gives where the source cannot page back past it (a Reddit
listing stops at 1,000, saying nothing of what it leaves out): a search that returns as
many was cut. A source that pages back in time (Hacker News past Algolia's 1,000 hits per
query) says so with ``search_limit = None``; its cuts are its page caps."""
RETRY_FIRST_S = 2.0
RETRY_MAX_S = 60.0


@runtime_checkable
class Searchable(Protocol):
    name: str

    async def search(self, query: str, since: datetime) -> list[Mention]:
        """Mentions matching ``query`` created at or after ``since``, oldest first."""
        ...


@dataclass
class BackfillReport:
    """What a backfill fetched and what became of it: ``fetched`` is ``kept`` +
    ``repeats`` + ``unmatched`` + ``outside``."""

    searches: int = 0
    fetched: int = 0
    kept: int = 0
    repeats: int = 0
    """The same post again (another query of the watch, another source page)."""
    unmatched: int = 0
    """Found by a search but not matched by the watch (its exclusions, its query)."""
    outside: int = 0
    """Dated before the window asked for (dropped)."""
    redated: int = 0
    """Kept, but dated ahead of the clock: re-dated to now."""
    unreadable: int = 0
    """Items a source could not read (skipped and logged by the source)."""
    capped: list[str] = field(default_factory=list)
    """Searches cut at the source's page cap or at what one search gives (their older
    items were not fetched: each says how far back it reached), or by a platform's limit
    that the source could not page past (each says what was missed)."""
    failed: list[str] = field(default_factory=list)
    """Searches that failed (or were not asked after a refused credential), with why."""

    @property
    def complete(self) -> bool:
        return not self.failed

    def lines(self) -> list[str]:
        """The report for an operator, one line per fact."""
        counts = [
            f"{self.kept} kept",
            f"{self.repeats} repeats (another query or page)",
            f"{self.unmatched} not matched by the watch",
        ]
        if self.outside:
            counts.append(f"{self.outside} dated before the window (dropped)")
        out = [f"{self.fetched} fetched by {self.searches} searches: " + ", ".join(counts)]
        if self.redated:
            out.append(f"{self.redated} kept dated ahead of the clock: re-dated to now")
        if self.unreadable:
            out.append(f"{self.unreadable} items the sources could not read: skipped (logged)")
        out += self.capped
        out += [f"FAILED {what}" for what in self.failed]
        return out


def watch_queries(watch: WatchConfig) -> list[str]:
    """What to ask the search APIs for (the full watch is applied to what comes back).

    ``terms`` watches: the terms. Query watches: the brand and its alias lists (brand
    names, misspellings, products) when there are any, else the literals one of which
    every matching text contains (the query's prefilter). A prefix entry (``refund*``,
    in terms as in aliases) is asked for as its word (``refund``).
    """
    if watch.query:
        names = [watch.brand] if watch.brand else []
        names += [name.rstrip("*") for entries in watch.aliases.values() for name in entries]
        names = [n for n in names if n.strip()]
        return list(dict.fromkeys(names)) or list(
            compile_query(watch.query, watch.aliases).literals
        )
    terms = [term.rstrip("*") for term in watch.terms]
    return list(dict.fromkeys(terms)) or ([watch.brand] if watch.brand else [])


async def backfill(
    sources: Sequence[Searchable],
    watch: WatchConfig,
    since: datetime,
    progress: Callable[[int, int, str], None] | None = None,
    *,
    report: BackfillReport | None = None,
    clock: Clock | None = None,
) -> list[Mention]:
    """``progress(done, total, what)`` before and after each (source, query) step and
    before each wait to try one again; ``report`` (when given) is filled in (see the module doc)."""
    clock = clock or SystemClock()
    report = report if report is not None else BackfillReport()
    matcher = WatchMatcher([watch])
    queries = watch_queries(watch)
    steps = [(source, query) for source in sources for query in queries]
    report.searches = len(steps)
    start = since.replace(microsecond=0)  # the sources ask from the whole second
    found: dict[str, Mention] = {}
    seen: set[str] = set()
    refused: dict[str, str] = {}
    for done, (source, query) in enumerate(steps, start=1):
        what = f"{source.name} {query!r}"
        if source.name in refused:
            report.failed.append(f"{what}: not asked ({refused[source.name]})")
        else:
            caps, cuts, skips = (
                _counter(source, "health", "page_caps"),
                _counter(source, "health", "window_cuts"),
                _counter(source, "skips", "count"),
            )

            def waiting(text: str, done: int = done) -> None:
                if progress is not None:
                    progress(done - 1, len(steps), text)

            waiting(f"{what}: searching ({len(found)} so far)")
            try:
                mentions = await _search(source, query, since, clock, what, waiting)
            except SourceFatalError as exc:
                refused[source.name] = str(exc)
                report.failed.append(f"{what}: {exc}")
                mentions = []
            except _Failed as exc:
                report.failed.append(f"{what}: {exc}")
                mentions = []
            unreadable = _counter(source, "skips", "count") - skips
            report.unreadable += unreadable
            if _counter(source, "health", "page_caps") > caps:
                cut = "stopped at the source's page cap (max_pages)"
            elif (limit := getattr(source, "search_limit", SEARCH_LIMIT)) is not None and (
                len(mentions) + unreadable >= limit
            ):
                cut = f"{len(mentions) + unreadable} items, as many as one search gives"
            else:
                cut = ""
            if cut:
                reached = min((m.created_at for m in mentions), default=None)
                back = f" (it reached back to {reached:%Y-%m-%d %H:%M} UTC)" if reached else ""
                report.capped.append(f"{what}: {cut}: older items not fetched{back}")
            if (more := _counter(source, "health", "window_cuts") - cuts) > 0:
                report.capped.append(f"{what}: {_window_cut(source, more)}")
            latest = clock.now() + MAX_FUTURE
            for mention in mentions:
                report.fetched += 1
                if mention.created_at < start:
                    report.outside += 1
                elif mention.id in seen:
                    report.repeats += 1
                elif not matcher.match(mention.text, mention.lang, None, source=mention.source):
                    seen.add(mention.id)
                    report.unmatched += 1
                else:
                    seen.add(mention.id)
                    found[mention.id] = _not_ahead(mention, latest, clock, report)
        if progress is not None:
            progress(done, len(steps), f"{what}: {len(found)} so far")
    report.kept = len(found)
    return sorted(found.values(), key=lambda m: (m.created_at, m.id))


class _Failed(Exception):
    """A search that failed every try (the message says the last error)."""


async def _search(
    source: Searchable,
    query: str,
    since: datetime,
    clock: Clock,
    what: str,
    waiting: Callable[[str], None],
) -> list[Mention]:
    """``source.search`` tried up to ``TRIES`` times. ``SourceFatalError`` is raised as
    it is; after the last try, ``_Failed``."""
    backoff = Backoff(RETRY_FIRST_S, RETRY_MAX_S)
    for attempt in range(1, TRIES + 1):
        try:
            return await source.search(query, since)
        except SourceFatalError:
            raise
        except RateLimited as exc:
            error, delay = str(exc), exc.delay
        except Exception as exc:  # a 5xx, a dropped connection, an answer not understood
            error = str(exc) if isinstance(exc, TransientError) and str(exc) else reason(exc)
            delay = backoff.next_delay()
            log.debug("backfill %s: try %d failed", what, attempt, exc_info=True)
        if attempt == TRIES:
            raise _Failed(f"{error} ({TRIES} tries)")
        log.warning("backfill %s: %s; trying again in %.0f s", what, error, delay)
        waiting(f"{what}: {error}; try {attempt + 1} of {TRIES} in {delay:.0f} s")
        await clock.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _not_ahead(mention: Mention, latest: datetime, clock: Clock, report: BackfillReport) -> Mention:
    """``mention`` re-dated to now when it is dated after ``latest`` (counted, logged)."""
    if mention.created_at <= latest and (mention.edited_at is None or mention.edited_at <= latest):
        return mention
    now = clock.now()
    report.redated += 1
    log.warning(
        "backfill: %s is dated %s, ahead of the clock: re-dated to now",
        mention.id,
        mention.created_at.isoformat(),
    )
    update = {"created_at": min(mention.created_at, now)}
    if mention.edited_at is not None:
        update["edited_at"] = min(mention.edited_at, now)
    return mention.model_copy(update=update)


def _window_cut(source: object, count: int) -> str:
    """What the source said of the last of ``count`` cuts of its window (a search that a
    platform's limit kept from part of its window)."""
    last = getattr(getattr(source, "health", None), "last_window_cut", None)
    said = f": {last}" if isinstance(last, str) and last else ""
    also = f" (and {count - 1} more such cuts, logged)" if count > 1 else ""
    return f"window cut by the platform's limits, items in it not fetched{said}{also}"


def _counter(source: object, part: str, name: str) -> int:
    """A counter a live source keeps (``health.page_caps``, ``skips.count``); 0 when the
    source has none."""
    value = getattr(getattr(source, part, None), name, 0)
    return value if isinstance(value, int) else 0
