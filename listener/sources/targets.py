"""Per-target failures of a source that reads several targets (feeds, videos, listings,
channels) or one target that can be gone for a while (a Mastodon timeline or hashtag).

One broken target (a feed that moved, an RSSHub route that is blocked, a captcha page in
place of a feed, a deleted video, a private subreddit, a Telegram channel without a public
preview, a hashtag an instance does not know) must not stop the source nor starve its
other targets. ``TargetBackoff`` records a target's failure (logged, counted in the
source's errors, listed in its health's ``failing_targets`` and in the
``crisiswatch_source_targets_failing`` gauge), skips the target until its retry time
(``first`` seconds, doubling up to ``maximum`` for the target's own errors: gone, blocked,
not a feed; up to a poll interval or two minutes for errors that are likely the
platform's or the network's: a dropped connection, a timeout, a 5xx; or the wait a rate
limit asked for; an API's answer that is not JSON counts as the platform's), and clears
it after a success. The warning logged names the target and, when the source says how
many it reads, what goes on meanwhile: the other targets, or nothing (the only target,
or every other one failing too). Errors that concern the whole source
(credentials refused, the API's rate limit or quota) are not target errors: callers let
them through.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.clock import Clock
from listener.backoff import RateLimited, TargetUnavailable
from listener.health import SourceHealth

log = logging.getLogger(__name__)

TARGET_RETRY_MAX_SECONDS = 3600.0
OUTAGE_RETRY_MAX_SECONDS = 120.0
"""The longest wait after an error that is not the target's own (a dropped connection, a
timeout, a 5xx: usually the whole platform or the network, as the base reconnect
treats it), or one poll interval if that is longer: a source is back within about two
minutes of an outage, not an hour."""


@dataclass
class _Failing:
    label: str
    failures: int
    retry_at: datetime


class TargetBackoff:
    def __init__(
        self,
        health: SourceHealth,
        clock: Clock,
        *,
        first: float,
        maximum: float = TARGET_RETRY_MAX_SECONDS,
    ) -> None:
        self.health = health
        self.clock = clock
        self.first = first
        self.maximum = max(first, maximum)
        self._failing: dict[str, _Failing] = {}

    def due(self, key: str) -> bool:
        """Whether ``key`` may be read now (not failing, or its retry time has come)."""
        failing = self._failing.get(key)
        return failing is None or self.clock.now() >= failing.retry_at

    def wait(self, key: str) -> float:
        """Seconds until ``key`` may be read again (0 when it may be read now)."""
        failing = self._failing.get(key)
        if failing is None:
            return 0.0
        return max(0.0, (failing.retry_at - self.clock.now()).total_seconds())

    @property
    def count(self) -> int:
        """How many targets are failing now."""
        return len(self._failing)

    def failed(
        self,
        key: str,
        label: str,
        error: Exception,
        *,
        wait: float | None = None,
        targets: int | None = None,
    ) -> float:
        """Record a failure of target ``key`` (``label``: how logs and health name it, never
        a secret); returns the seconds until it is tried again. ``targets``: how many the
        source reads (each once), for the log line to say what goes on meanwhile."""
        previous = self._failing.get(key)
        failures = previous.failures + 1 if previous else 1
        if wait is None:
            # gone, blocked, not a feed; a JSON API answering something else (an HTML page
            # with 200) is the platform's or a proxy's trouble: every target sees it
            own = isinstance(error, TargetUnavailable | ValueError) and not isinstance(
                error, json.JSONDecodeError
            )
            cap = self.maximum if own else max(self.first, OUTAGE_RETRY_MAX_SECONDS)
            wait = min(self.first * 2.0 ** min(failures - 1, 30), cap)
        message = f"{type(error).__name__}: {error}"
        self._failing[key] = _Failing(label, failures, self.clock.now() + timedelta(seconds=wait))
        self.health.target_failed(label, message, rate_limited=isinstance(error, RateLimited))
        log.warning(
            "source %s: %s failed (%s, %d in a row); skipped for %.0f s%s",
            self.health.name,
            label,
            message,
            failures,
            wait,
            self._meanwhile(targets),
        )
        return wait

    def _meanwhile(self, targets: int | None) -> str:
        """What the source reads while a target that just failed is skipped, for its log
        line: nothing when it is the only target or every other one fails too."""
        if targets is None:
            return ""
        others = targets - 1
        if others <= 0:
            return " (the source's only target: nothing is read meanwhile)"
        failing = min(others, self.count - 1)  # the others among the failing targets
        going = others - failing
        if not going:
            return f" (the {_targets(others)} fail too: nothing is read meanwhile)"
        also = f" ({failing} more failing)" if failing else ""
        return f"; the {_targets(going)} {'goes' if going == 1 else 'go'} on{also}"

    def succeeded(self, key: str) -> None:
        failing = self._failing.pop(key, None)
        if failing is not None:
            self.health.target_recovered(failing.label)
            log.info("source %s: %s is readable again", self.health.name, failing.label)


def _targets(count: int) -> str:
    """``count`` other targets, in words: "other target", "2 other targets"."""
    return "other target" if count == 1 else f"{count} other targets"
