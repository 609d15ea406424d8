"""Backfill: recent history for a new watch, from the sources that can search.

A source that can search implements ``Searchable.search(query, since)``: Hacker News
(Algolia) and Reddit (site-wide search) do. The others stream from now (Jetstream,
Mastodon), list only what is configured (RSS, Telegram, YouTube) or have no search API.
``backfill`` runs each of the watch's terms through each searchable source, keeps what the
watch matches, drops repeats, and returns the mentions oldest first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from core.events import Mention
from listener.config import WatchConfig
from listener.query import compile_query
from listener.watches import WatchMatcher


@runtime_checkable
class Searchable(Protocol):
    name: str

    async def search(self, query: str, since: datetime) -> list[Mention]:
        """Mentions matching ``query`` created at or after ``since``, oldest first."""
        ...


def watch_queries(watch: WatchConfig) -> list[str]:
    """What to ask the search APIs for (the full watch is applied to what comes back).

    ``terms`` watches: the terms. Query watches: the brand and its alias lists (brand
    names, misspellings, products) when there are any, else the literals one of which
    every matching text contains (the query's prefilter).
    """
    if watch.query:
        names = [watch.brand] if watch.brand else []
        names += [name.rstrip("*") for entries in watch.aliases.values() for name in entries]
        names = [n for n in names if n.strip()]
        return list(dict.fromkeys(names)) or list(
            compile_query(watch.query, watch.aliases).literals
        )
    return list(dict.fromkeys(watch.terms)) or ([watch.brand] if watch.brand else [])


async def backfill(
    sources: Sequence[Searchable],
    watch: WatchConfig,
    since: datetime,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[Mention]:
    """``progress(done, total, what)`` after each (source, query) step."""
    matcher = WatchMatcher([watch])
    queries = watch_queries(watch)
    steps = [(source, query) for source in sources for query in queries]
    found: dict[str, Mention] = {}
    for done, (source, query) in enumerate(steps, start=1):
        for mention in await source.search(query, since):
            if mention.id not in found and matcher.match(
                mention.text, mention.lang, None, source=mention.source
            ):
                found[mention.id] = mention
        if progress is not None:
            progress(done, len(steps), f"{source.name} {query!r}: {len(found)} so far")
    return sorted(found.values(), key=lambda m: (m.created_at, m.id))
