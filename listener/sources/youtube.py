"""YouTube comments through the Data API v3 (``commentThreads.list``), quota-aware.

Needs a free API key (Google Cloud console → YouTube Data API v3 → Credentials); the
default quota is 10,000 units a day and every ``commentThreads.list`` page costs 1 unit.
Covers the top-level comments of the listed videos, or of every video of the listed
channels (``allThreadsRelatedToChannelId``); not replies, not YouTube-wide search.

``GET https://www.googleapis.com/youtube/v3/commentThreads?part=snippet&order=time
&maxResults=100&textFormat=plainText&videoId=<id>`` (or ``allThreadsRelatedToChannelId``),
paged with ``pageToken``; newest first. The key travels in the ``X-Goog-Api-Key`` header
(never in a URL that could be logged).

Quota: the source spends at most ``daily_quota_units`` a day (the API's day starts at
midnight Pacific time): when the budget is spent it waits for the next API day; it also
stretches ``poll_seconds`` so that a full day of polling fits the budget. A 403
``quotaExceeded`` (or ``dailyLimitExceeded``) waits for the next API day too; a 403
``rateLimitExceeded`` or ``userRateLimitExceeded`` (too many requests in a short span)
waits its ``Retry-After`` or a minute, as a 429 does. A 403 ``forbidden`` is ambiguous: the
API answers it for a video the key may not read (private, members only) and for a key
barred from the API. It is read as the target's while another target is readable (that
target is skipped for a while), and as the key's (fatal) when it names a key or project
problem (an ``ErrorInfo`` detail such as ``API_KEY_SERVICE_BLOCKED``) or when every
target answers it. Any other 403 (``accessNotConfigured``, ``ipRefererBlocked`` ...) is
fatal: the key is refused. A 403 ``commentsDisabled``, a 404 (``videoNotFound``,
``channelNotFound``: a deleted video, a wrong channel id) and other errors of one target
skip that target for a while
(``listener.sources.targets``); the other targets go on. A poll stopped by
``max_pages`` is logged and counted. A thread that cannot be read (no ``id`` or
``publishedAt``, a value of the wrong type) is skipped, logged and counted; the rest of
the page goes on.
Cursor: per target, the newest ``publishedAt`` delivered and the ids of that second, and
the ids delivered in the late window before it (``listener.sources.timemark``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Self
from zoneinfo import ZoneInfo

import httpx
from pydantic import Field, field_validator, model_validator

from core.clock import Clock
from core.events import Author, Engagement, Mention
from core.metrics import Metrics
from core.settings import Secret, Section
from listener.backoff import (
    RateLimited,
    TargetUnavailable,
    TransientError,
    check_response,
    get_at_most,
    json_body,
    retry_after,
)
from listener.cursors import CursorStore
from listener.health import Coverage
from listener.sources import names
from listener.sources.base import SourceFatalError
from listener.sources.live import LiveSource, Step, iso_utc
from listener.sources.skips import UNREADABLE
from listener.sources.text import fit_text
from listener.sources.timemark import (
    DEFAULT_LATE_WINDOW_SECONDS,
    LateWindowSeconds,
    load_marks,
    poll_since,
)

log = logging.getLogger(__name__)

PACIFIC = ZoneInfo("America/Los_Angeles")


class YouTubeConfig(Section):
    """Comment threads of videos and channels, polled within a daily quota."""

    api_key: Secret | None = None
    videos: list[str] = Field(default_factory=list)
    channels: list[str] = Field(default_factory=list, description="channel ids (UC...)")
    poll_seconds: float = Field(300.0, ge=30)
    daily_quota_units: int = Field(8000, ge=10, description="spend at most this many units a day")
    max_pages: int = Field(3, ge=1, le=20)
    late_window_seconds: LateWindowSeconds = DEFAULT_LATE_WINDOW_SECONDS
    initial_lookback_minutes: float = Field(60.0, ge=0)
    endpoint: str = Field(
        "https://www.googleapis.com/youtube/v3/commentThreads", pattern=r"^https?://\S+$"
    )

    @field_validator("videos")
    @classmethod
    def _videos(cls, values: list[str]) -> list[str]:
        return [names.youtube_video(v) for v in values]

    @field_validator("channels")
    @classmethod
    def _channels(cls, values: list[str]) -> list[str]:
        return [names.youtube_channel(c) for c in values]

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.api_key is None:
            raise ValueError(
                "youtube source needs api_key: create one in the Google Cloud console "
                "(APIs & Services → Credentials) with the YouTube Data API v3 enabled"
            )
        if not (self.videos or self.channels):
            raise ValueError("youtube source needs videos or channels")
        return self

    def targets(self) -> list[tuple[str, dict[str, str]]]:
        out = [(f"video:{v}", {"videoId": v}) for v in self.videos]
        out += [(f"channel:{c}", {"allThreadsRelatedToChannelId": c}) for c in self.channels]
        return out


def next_api_day(now: datetime) -> datetime:
    """When the YouTube quota resets: the next midnight in Pacific time."""
    local = now.astimezone(PACIFIC)
    midnight = datetime(local.year, local.month, local.day, tzinfo=PACIFIC) + timedelta(days=1)
    return midnight.astimezone(UTC)


class Quota:
    """Units spent in the current API day."""

    def __init__(self, budget: int, clock: Clock) -> None:
        self.budget = budget
        self.clock = clock
        self.used = 0
        self._resets = next_api_day(clock.now())

    def spend(self, units: int = 1) -> None:
        now = self.clock.now()
        if now >= self._resets:
            self.used, self._resets = 0, next_api_day(now)
        if self.used + units > self.budget:
            wait = (self._resets - now).total_seconds()
            raise RateLimited(wait, f"youtube: daily budget of {self.budget} units spent")
        self.used += units


class YouTubeClient:
    def __init__(
        self,
        config: YouTubeConfig,
        http: httpx.AsyncClient,
        clock: Clock,
        on_page_cap: Callable[[str, int], None] | None = None,
    ) -> None:
        self.config = config
        self.http = http
        self.clock = clock
        self.on_page_cap = on_page_cap
        self.quota = Quota(config.daily_quota_units, clock)
        key = config.api_key.get_secret_value() if config.api_key else ""
        self._headers = {"X-Goog-Api-Key": key}
        self._targets = len({_name(target) for _, target in config.targets()})
        self._forbidden: set[str] = set()
        """The targets whose last answer was a 403 ``forbidden``."""

    async def since(self, target: dict[str, str], since: int) -> list[Any]:
        """Threads published at or after ``since`` (up to ``max_pages``), as the API
        lists them (newest first), the ones that cannot be read included (``stamp`` says
        which: the caller skips and counts them). A video or channel that does not exist
        (404 ``videoNotFound``, ``channelNotFound``) raises ``TargetUnavailable``: the
        other targets go on."""
        threads: list[Any] = []
        token: str | None = None
        for _ in range(self.config.max_pages):
            self.quota.spend(1)
            params = {
                "part": "snippet",
                "order": "time",
                "maxResults": "100",
                "textFormat": "plainText",
                **target,
            }
            if token:
                params["pageToken"] = token
            response = await get_at_most(
                self.http,
                self.config.endpoint,
                what="youtube",
                params=params,
                headers=self._headers,
            )
            reason = _reason(response) if response.status_code in (400, 403) else None
            if reason == "forbidden" and response.status_code == 403:
                self._refused(target, response)  # raises
            self._forbidden.discard(_name(target))  # its last answer is another one
            if reason in DAILY_LIMITS:
                wait = (next_api_day(self.clock.now()) - self.clock.now()).total_seconds()
                raise RateLimited(wait, f"youtube: {reason}, waiting for the next API day")
            if reason in RATE_LIMITS and response.status_code == 403:
                wait = retry_after(response.headers.get("retry-after"), self.clock.now(), 60.0)
                raise RateLimited(wait, f"youtube: HTTP 403 {reason}, waiting {wait:.0f} s")
            if reason == "commentsDisabled":
                # that video's state (it may change): a failing target, named in the
                # health, not a silent empty answer at every poll
                raise TargetUnavailable(
                    f"youtube commentThreads: comments are disabled on {_name(target)}"
                )
            if reason in ("keyInvalid", "badRequest") and response.status_code == 400:
                raise SourceFatalError("youtube: the API key was refused (HTTP 400 keyInvalid)")
            check_response(
                response, self.clock.now(), what="youtube commentThreads", target_statuses=(404,)
            )
            body = json_body(response, what="youtube commentThreads")
            if not isinstance(body, dict) or not isinstance(body.get("items"), list):
                raise TransientError("youtube commentThreads: unexpected response shape")
            items = body["items"]
            times = [_published_or_none(t) for t in items]
            threads.extend(t for t, p in zip(items, times, strict=True) if p is None or p >= since)
            token = body.get("nextPageToken")
            readable = [p for p in times if p is not None]
            if not token or not items or (readable and readable[-1] < since):
                break
        else:
            if self.on_page_cap is not None:
                self.on_page_cap(f"youtube commentThreads {_name(target)}", self.config.max_pages)
        return threads

    def _refused(self, target: dict[str, str], response: httpx.Response) -> None:
        """A 403 ``forbidden`` for ``target``: raises ``TargetUnavailable`` (a video the
        key may not read) or, when the answer names a key or project problem or no target
        is readable any more, ``SourceFatalError``."""
        name = _name(target)
        detail = _error_info(response)
        if detail is not None:
            raise SourceFatalError(
                f"youtube: the API key was refused (HTTP 403 forbidden, {detail}) for {name}"
            )
        self._forbidden.add(name)
        if len(self._forbidden) >= self._targets:
            raise SourceFatalError(
                "youtube: HTTP 403 forbidden for every video and channel listed: the API "
                "key is barred from the YouTube Data API, or none of them may be read "
                "with it (private videos)"
            )
        raise TargetUnavailable(
            f"youtube commentThreads: HTTP 403 forbidden for {name} (a private or "
            "members-only video, or one the key may not read); the other targets go on"
        )


DAILY_LIMITS = frozenset({"quotaExceeded", "dailyLimitExceeded"})
"""403 reasons that say the day's quota is spent: wait for the next API day."""
RATE_LIMITS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
"""403 reasons (Google's ``usageLimits`` domain) that say too many requests were sent in
a short span: a rate limit (its ``Retry-After``, else a minute), never a refused key."""


def _name(target: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in target.items())


_KEY_PROBLEMS = frozenset(
    {
        "SERVICE_DISABLED",
        "CONSUMER_SUSPENDED",
        "CONSUMER_INVALID",
        "BILLING_DISABLED",
        "USER_PROJECT_DENIED",
    }
)
"""Google ``ErrorInfo`` reasons about the key or its project (besides ``API_KEY_*``)."""


def _error_info(response: httpx.Response) -> str | None:
    """The reason of a Google ``ErrorInfo`` detail that concerns the key or its project,
    never one video (``API_KEY_SERVICE_BLOCKED``, ``API_KEY_IP_ADDRESS_BLOCKED``,
    ``SERVICE_DISABLED`` ...); None when the answer carries none. Another reason is left
    to the ambiguous ``forbidden`` rule: fatal once every target has answered it."""
    try:
        details = response.json()["error"].get("details") or []
        for detail in details:
            if not isinstance(detail, dict):
                continue
            if not str(detail.get("@type", "")).endswith("google.rpc.ErrorInfo"):
                continue
            reason = str(detail.get("reason") or "")
            if reason.startswith("API_KEY_") or reason in _KEY_PROBLEMS:
                return reason
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return None


def _reason(response: httpx.Response) -> str | None:
    try:
        errors = response.json()["error"]["errors"]
        return str(errors[0]["reason"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def _published(thread: Any) -> int:
    value = thread["snippet"]["topLevelComment"]["snippet"]["publishedAt"]
    if not isinstance(value, str):
        raise TypeError(f"publishedAt is a string, not {type(value).__name__}")
    return int(iso_utc(value).timestamp())


def _published_or_none(thread: Any) -> int | None:
    try:
        return _published(thread)
    except UNREADABLE:
        return None


def thread_id(thread: Any) -> str:
    """A thread's ``id`` (a non-empty string). Raises for anything else."""
    value = thread["id"]
    if not isinstance(value, str) or not value:
        raise TypeError(f"id is a non-empty string, not {value!r:.40}")
    return value


def stamp(thread: Any) -> tuple[int, str]:
    """(``publishedAt`` in whole seconds, ``id``) of a thread. Raises for a thread that
    lacks them or has them of the wrong type."""
    return _published(thread), thread_id(thread)


def map_thread(thread: dict[str, Any]) -> Mention:
    snippet = thread["snippet"]
    comment = snippet["topLevelComment"]["snippet"]
    video = comment.get("videoId") or snippet.get("videoId")
    return Mention(
        id=f"youtube:{thread['id']}",
        source="youtube",
        url=f"https://www.youtube.com/watch?v={video}&lc={thread['id']}" if video else None,
        text=fit_text(comment.get("textOriginal") or comment.get("textDisplay") or ""),
        created_at=iso_utc(comment["publishedAt"]),
        author=Author(
            id=(comment.get("authorChannelId") or {}).get("value"),
            handle=comment.get("authorDisplayName"),
        ),
        engagement=Engagement(
            likes=int(comment.get("likeCount") or 0),
            replies=int(snippet.get("totalReplyCount") or 0),
        ),
    )


class YouTubeSource(LiveSource):
    kind = "youtube"
    coverage = Coverage(
        needs="free token",
        covers="top-level comments on listed videos or on all videos of listed channels",
        misses="replies; YouTube-wide search; edits; more than the daily quota allows",
        resumes="publishedAt and the ids of that second, per video/channel; each poll asks "
        "again from late_window_seconds before it (comments approved later)",
    )

    def __init__(
        self,
        config: YouTubeConfig,
        http: httpx.AsyncClient,
        clock: Clock,
        cursors: CursorStore,
        metrics: Metrics | None = None,
        *,
        name: str = "youtube",
    ) -> None:
        super().__init__(name, clock, cursors, metrics)
        self.config = config
        self.client = YouTubeClient(config, http, clock, on_page_cap=self.page_cap)

    @property
    def poll_interval(self) -> float:
        """``poll_seconds``, stretched so that a day of polls fits the daily budget."""
        per_poll = len(self.config.targets())  # at least one page per target
        fits = 86_400 * per_poll / self.config.daily_quota_units
        return max(self.config.poll_seconds, fits)

    def check_cursor(self, cursor: str) -> None:
        load_marks(cursor)

    def stream(self, cursor: str | None) -> AsyncIterator[Step]:
        def fetch(target: dict[str, str]) -> Callable[[int], Awaitable[list[Any]]]:
            return lambda since: self.client.since(target, since)

        return poll_since(
            self,
            cursor,
            [(key, fetch(target)) for key, target in self.config.targets()],
            stamp,
            map_thread,
            interval=lambda: self.poll_interval,
            lookback_minutes=self.config.initial_lookback_minutes,
            late_window_seconds=self.config.late_window_seconds,
            ident=thread_id,
        )
