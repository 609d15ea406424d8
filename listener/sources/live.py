"""The common base of the network sources: cursor, reconnects, rate limits, health.

A subclass implements ``stream(cursor)``: connect (or poll) from the saved ``cursor`` and
yield ``(mention, cursor_after_it)`` pairs, or ``(None, cursor)`` when the position moved
past events that are not mentions (a like, an identity event, a post filtered out). It
raises ``RateLimited``/``TransientError``/any error to be reconnected after a wait, or
``SourceFatalError`` when retrying cannot help (credentials refused).

The base turns that into an endless ``mentions()`` stream:

* resume: ``start`` loads the cursor saved by the last run; after a reconnect the stream
  resumes after the last mention it yielded (those in flight are still delivered);
* cursor safety: the cursor saved is the one after the last mention the listener reports
  ``delivered`` (published or dropped), never one that runs ahead of delivery; it is
  written every ``save_every_seconds`` and on ``stop``;
* reconnects with exponential backoff and jitter; ``Retry-After`` waits honoured;
* health (state, last event, lag, errors, reconnects) and the matching metrics;
* ``failing``: the targets (feeds, videos, listings) of a multi-target source skipped
  after errors, kept across reconnects (``listener.sources.targets``);
* event time: a mention dated more than ``MAX_FUTURE`` ahead of the clock is re-dated to
  now (counted: ``crisiswatch_source_future_dated_total``);
* ``window_cut``: a poll or search that a platform's limit kept from part of its window
  (logged, counted, reported by a backfill);
* ``skips``: items that cannot be read, skipped, logged and counted once each
  (``listener.sources.skips``), so that one bad item does not hold up the source;
* a saved cursor that cannot be read (``check_cursor`` raises) is logged as an error,
  counted and ignored: the source starts as on its first run, instead of failing on
  every reconnect.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from core.clock import Clock
from core.events import Mention
from core.metrics import Metrics
from listener.backoff import Backoff, RateLimited
from listener.cursors import CursorStore
from listener.dedup import delivery_key
from listener.health import Coverage, SourceHealth
from listener.sources.base import SourceFatalError
from listener.sources.skips import UNREADABLE, ItemSkips, reason
from listener.sources.targets import TargetBackoff

log = logging.getLogger(__name__)

Step = tuple[Mention | None, str]
MAX_FUTURE = timedelta(seconds=300)
"""How far ahead of the clock a mention may be dated (clock skew), as at the webhook."""
_LOGGED_FUTURE = 10  # then every 1,000th
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
"""A post dated before this is not trusted (a feed generator's or a client's 1970-01-01 or
year 1 for "no date"): the source dates it when it was seen instead. A date this old
would make its story decades old, and its forecast nothing."""


def iso_utc(value: str) -> datetime:
    """An ISO 8601 time, in UTC. One without an offset is read as UTC (as the feeds read
    it), never in the host's time zone: the same post gets the same time on every host."""
    parsed = datetime.fromisoformat(value)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


class LiveSource(ABC):
    kind: ClassVar[str]
    coverage: ClassVar[Coverage]

    def __init__(
        self,
        name: str,
        clock: Clock,
        cursors: CursorStore,
        metrics: Metrics | None = None,
        *,
        backoff: Backoff | None = None,
        save_every_seconds: float = 5.0,
    ) -> None:
        self.name = name
        self.clock = clock
        self.cursors = cursors
        self.backoff = backoff or Backoff(1.0, 120.0)
        self.save_every_seconds = save_every_seconds
        self.health = SourceHealth(name, self.kind, self.coverage, clock, metrics)
        self.failing = TargetBackoff(self.health, clock, first=60.0)
        """The targets (feeds, videos, listings) a multi-target source skips after errors;
        kept across reconnects."""
        self.skips = ItemSkips(self.health)
        """Items that cannot be read, skipped (logged and counted once each)."""
        self._pending: deque[tuple[str, str]] = deque()  # (delivery key, cursor after it)
        self._yielded: str | None = None  # position after the last thing the stream yielded
        self._delivered: str | None = None  # position after the last delivered mention
        self._saved: str | None = None
        self._saved_at: datetime | None = None
        self._stopping = False
        self.started_at = clock.now()

    # --- what a subclass provides -----------------------------------------------------

    @abstractmethod
    def stream(self, cursor: str | None) -> AsyncIterator[Step]:
        """Connect/poll from ``cursor`` (None: start from now) and yield steps."""

    def check_cursor(self, cursor: str) -> None:
        """Raise (``ValueError``, ``TypeError``, ``KeyError``...) when ``cursor``, as
        saved by an earlier run, cannot be read by ``stream``; the base then ignores it.
        A source whose cursor has a shape overrides this; any string will do here."""
        del cursor

    def _not_ahead(self, mention: Mention) -> Mention:
        """``mention`` with a ``created_at`` (``edited_at``) more than ``MAX_FUTURE`` ahead
        of the clock re-dated to now: one post dated in the future (a client-set Bluesky
        ``createdAt``, a feed's wrong time zone) would otherwise drag the detector's event
        time of its watch forward, and the watch's real stories would look old and quiet
        (a tier-3 call was lost that way). Counted and logged; the webhook refuses such
        items instead, its sender can fix them."""
        latest = self.clock.now() + MAX_FUTURE
        if mention.created_at <= latest and (
            mention.edited_at is None or mention.edited_at <= latest
        ):
            return mention
        now = self.clock.now()
        self.health.redated()
        if self.health.future_dated <= _LOGGED_FUTURE or self.health.future_dated % 1000 == 0:
            log.warning(
                "source %s: %s is dated %s, ahead of the clock (%s): re-dated to now (%d so far)",
                self.name,
                mention.id,
                mention.created_at.isoformat(),
                now.isoformat(),
                self.health.future_dated,
            )
        update: dict[str, datetime] = {"created_at": min(mention.created_at, now)}
        if mention.edited_at is not None:
            update["edited_at"] = min(mention.edited_at, now)
        return mention.model_copy(update=update)  # aware UTC datetimes: valid as they are

    # --- the Source interface ---------------------------------------------------------

    async def start(self) -> None:
        self._stopping = False
        self.started_at = self.clock.now()
        saved = await self.cursors.load(self.name)
        if saved:  # an empty cursor is none (every stream reads it so)
            try:
                self.check_cursor(saved)
            except UNREADABLE as exc:
                # reading it again on every reconnect would fail the same way for ever
                message = (
                    f"its saved cursor cannot be read ({reason(exc)}); ignored: starting "
                    "as on a first run"
                )
                log.error("source %s: %s", self.name, message)
                self.health.error(message)
                saved = None
        self._saved = self._yielded = self._delivered = saved
        self._saved_at = self.clock.now()
        self.health.cursor = self._saved
        if self._saved is None:
            log.info("source %s: no saved cursor, starting from now", self.name)
        else:
            log.info("source %s: resuming from its saved cursor", self.name)

    async def stop(self) -> None:
        self._stopping = True
        try:
            await self.save_cursor(force=True)
        finally:
            self.health.set_state("stopped")

    async def mentions(self) -> AsyncIterator[Mention]:
        while not self._stopping:
            try:
                async for mention, cursor in self.stream(self._yielded):
                    self._yielded = cursor
                    if mention is None:
                        self._advance(cursor)
                        continue
                    self.backoff.reset()
                    mention = self._not_ahead(mention)
                    self._pending.append((delivery_key(mention), cursor))
                    self.health.event(mention)
                    yield mention
                delay = self.backoff.next_delay()
                log.info("source %s: stream ended; reconnecting in %.1f s", self.name, delay)
            except RateLimited as exc:
                self.health.error(str(exc), rate_limited=True)
                delay = exc.delay
                log.warning("source %s rate-limited: %s", self.name, exc)
            except SourceFatalError as exc:
                # counted in the metric by the listener service, which ends the source
                self.health.errors += 1
                self.health.last_error = str(exc)
                self.health.set_state("failed")
                raise
            except Exception as exc:
                self.health.error(f"{type(exc).__name__}: {exc}")
                delay = self.backoff.next_delay()
                log.warning(
                    "source %s failed (%s: %s); reconnecting in %.1f s",
                    self.name,
                    type(exc).__name__,
                    exc,
                    delay,
                )
            if self.stopping:
                return
            self.health.set_state("waiting")
            await self.clock.sleep(delay)
            self.health.reconnect()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def delivered(self, mention: Mention) -> None:
        key = delivery_key(mention)
        while self._pending:
            done, cursor = self._pending.popleft()
            if done == key:
                self._delivered = cursor
                return
        log.warning("source %s: delivered a mention it has no position for", self.name)

    async def save_cursor(self, *, force: bool = False) -> None:
        cursor = self._delivered
        if cursor is None or cursor == self._saved:
            return
        now = self.clock.now()
        due = self._saved_at is None or (
            (now - self._saved_at).total_seconds() >= self.save_every_seconds
        )
        if not (force or due):
            return
        await self.cursors.save(self.name, cursor)
        self._saved, self._saved_at = cursor, now
        self.health.cursor = cursor

    def page_cap(self, what: str, pages: int) -> None:
        """A poll of ``what`` stopped at its cap of ``pages`` pages while newer items than
        the cursor were still coming: the older of them are skipped. Logged and counted
        (``crisiswatch_source_page_caps``), so it is never silent."""
        self.health.page_cap()
        log.warning(
            "source %s: %s stopped at its cap of %d pages; the new items older than those "
            "pages are skipped (raise max_pages, or poll more often)",
            self.name,
            what,
            pages,
        )

    def window_cut(self, what: str, message: str) -> None:
        """A poll or search of ``what`` could not fetch part of its window, however many
        pages it read (a platform's own limit): the items there are missed. Logged and
        counted (``crisiswatch_source_window_cuts``, ``window_cuts`` and
        ``last_window_cut`` in ``GET /sources``; a backfill reports it), so that it is
        never silent."""
        self.health.window_cut(f"{what}: {message}")
        log.warning("source %s: %s: %s", self.name, what, message)

    # --- helpers ----------------------------------------------------------------------

    def _advance(self, cursor: str) -> None:
        """The stream moved past non-mentions: the position after them is delivered as
        soon as the mention before them is."""
        if self._pending:
            key, _ = self._pending.pop()
            self._pending.append((key, cursor))
        else:
            self._delivered = cursor
