"""The shape every source has: a name, symmetric start/stop, and a stream of Mentions.

A source maps one platform's posts to ``core.events.Mention`` and nothing else: no watch
matching, no dedup, no publishing (the listener service does those). Each source has its
own pydantic config model (a ``core.settings.Section``) and takes its dependencies
(clock, an ``httpx.AsyncClient`` for the network ones, metrics) in its constructor.

Errors: an exception from ``mentions()`` is treated as transient: the service logs and
counts it, backs off, and calls ``mentions()`` again, which must resume where the source
was (a cursor, a since-id), not start over. ``SourceFatalError`` means the source cannot go
on (a file that is missing or corrupt, credentials refused): the service stops running it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from core.events import Mention


class SourceFatalError(Exception):
    """The source cannot go on; retrying will not help."""


@runtime_checkable
class Source(Protocol):
    name: str
    """Stable, short: the label of the source's metrics and log lines (``replay``, ``demo``)."""

    async def start(self) -> None:
        """Acquire resources and check that the source can run (fail loudly if not)."""
        ...

    async def stop(self) -> None:
        """Release resources; the stream ends. Safe to call twice or without start."""
        ...

    def mentions(self) -> AsyncIterator[Mention]:
        """The stream: endless for live sources, finite for a replay."""
        ...


@runtime_checkable
class CheckpointedSource(Source, Protocol):
    """A source that keeps a cursor: the service tells it which mentions are through
    (published, or dropped as duplicate/unmatched) so that the cursor it saves never runs
    ahead of what was delivered downstream."""

    def delivered(self, mention: Mention) -> None:
        """``mention`` (the object the stream yielded) has been handled downstream."""
        ...

    async def save_cursor(self, *, force: bool = False) -> None:
        """Persist the position after the last delivered mention (when due, or now)."""
        ...
