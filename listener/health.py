"""What each source needs and covers (stated, not discovered), and how it is doing.

``Coverage`` is the honest part: what a user must provide (nothing, a free token, a paid
plan, or scraping that carries legal risk) and what the source does and does not hear.
``SourceHealth`` is the live part: connection state, last event, lag, errors, the targets
(feeds, videos, listings) skipped after errors, polls cut at their page cap; it feeds
``GET /sources`` and the ``crisiswatch_source_*`` metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from core.clock import Clock
from core.events import Mention
from core.metrics import Metrics

Needs = Literal["nothing", "free token", "paid plan", "scraping (legal risk)", "push"]
State = Literal["starting", "connected", "polling", "waiting", "failed", "stopped"]


@dataclass(frozen=True)
class Coverage:
    needs: Needs
    covers: str
    misses: str = ""
    edits: bool = False
    deletes: bool = False
    resumes: str = ""


@dataclass
class SourceHealth:
    name: str
    kind: str
    coverage: Coverage
    clock: Clock
    metrics: Metrics | None = None
    state: State = "starting"
    events: int = 0
    errors: int = 0
    reconnects: int = 0
    rate_limited: int = 0
    last_event_at: datetime | None = None
    lag_seconds: float | None = None
    last_error: str | None = None
    cursor: str | None = field(default=None, repr=False)
    failing_targets: dict[str, str] = field(default_factory=dict)
    """Targets (a feed, a video, a listing) skipped after an error: target → last error."""
    page_caps: int = 0
    window_cuts: int = 0
    """Polls or searches that could not fetch part of their window however many pages
    they read (a platform's own limit, such as Algolia's 1,000 hits per query)."""
    last_window_cut: str | None = None
    future_dated: int = 0
    """Mentions dated ahead of the clock (beyond the allowed skew), re-dated to now."""

    def set_state(self, state: State) -> None:
        self.state = state
        if self.metrics is not None:
            self.metrics.source_up.labels(self.name).set(
                1 if state in ("connected", "polling") else 0
            )

    def event(self, mention: Mention) -> None:
        now = self.clock.now()
        self.events += 1
        self.last_event_at = now
        self.lag_seconds = max(0.0, (now - mention.created_at).total_seconds())
        if self.metrics is not None:
            self.metrics.source_last_event.labels(self.name).set(now.timestamp())
            self.metrics.source_lag.labels(self.name).set(self.lag_seconds)

    def error(self, message: str, *, rate_limited: bool = False) -> None:
        self.errors += 1
        self.last_error = message
        if rate_limited:
            self.rate_limited += 1
        if self.metrics is not None:
            self.metrics.source_errors.labels(self.name).inc()
            if rate_limited:
                self.metrics.source_rate_limited.labels(self.name).inc()

    def target_failed(self, target: str, message: str, *, rate_limited: bool = False) -> None:
        """One target of the source failed (counted as an error, and as a rate limit when
        it was one); the others go on."""
        self.error(f"{target}: {message}", rate_limited=rate_limited)
        self.failing_targets[target] = message
        self._targets_gauge()

    def target_recovered(self, target: str) -> None:
        if self.failing_targets.pop(target, None) is not None:
            self._targets_gauge()

    def redated(self) -> None:
        """A mention dated in the future was re-dated to now."""
        self.future_dated += 1
        if self.metrics is not None:
            self.metrics.source_future_dated.labels(self.name).inc()

    def page_cap(self) -> None:
        """A poll stopped at its page cap: older new items may have been skipped."""
        self.page_caps += 1
        if self.metrics is not None:
            self.metrics.source_page_caps.labels(self.name).inc()

    def window_cut(self, message: str) -> None:
        """A poll or search could not fetch part of its window: items in it are missed."""
        self.window_cuts += 1
        self.last_window_cut = message
        if self.metrics is not None:
            self.metrics.source_window_cuts.labels(self.name).inc()

    def _targets_gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.source_targets_failing.labels(self.name).set(len(self.failing_targets))

    def reconnect(self) -> None:
        self.reconnects += 1
        if self.metrics is not None:
            self.metrics.source_reconnects.labels(self.name).inc()

    def as_dict(self) -> dict[str, object]:
        c = self.coverage
        return {
            "name": self.name,
            "kind": self.kind,
            "needs": c.needs,
            "covers": c.covers,
            "misses": c.misses,
            "edits": c.edits,
            "deletes": c.deletes,
            "resumes": c.resumes,
            "state": self.state,
            "events": self.events,
            "errors": self.errors,
            "reconnects": self.reconnects,
            "rate_limited": self.rate_limited,
            "last_event_at": self.last_event_at.isoformat() if self.last_event_at else None,
            "lag_seconds": self.lag_seconds,
            "last_error": self.last_error,
            "failing_targets": dict(self.failing_targets),
            "page_caps": self.page_caps,
            "window_cuts": self.window_cuts,
            "last_window_cut": self.last_window_cut,
            "future_dated": self.future_dated,
        }
