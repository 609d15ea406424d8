"""Reddit: site-wide search and subreddit listings through the OAuth API.

Needs a free "script"/"web" app (https://www.reddit.com/prefs/apps): ``client_id`` and
``client_secret``, used with the client-credentials grant (read-only, application-only),
and a descriptive ``user_agent`` (Reddit blocks generic ones). Commercial use needs an
agreement with Reddit (a paid plan).

* token: ``POST https://www.reddit.com/api/v1/access_token`` (HTTP Basic
  ``client_id:client_secret``, ``grant_type=client_credentials``), renewed before
  ``expires_in`` runs out and once after a 401;
* listings: ``GET https://oauth.reddit.com/search?q=&sort=new`` and
  ``/r/<sub>/new`` (posts, ``t3``) or ``/r/<sub>/comments`` (comments, ``t1``): a
  ``Listing`` of ``children`` newest first, paged with ``after``;
* rate limit: ``X-Ratelimit-Remaining`` / ``X-Ratelimit-Reset`` (seconds to the end of
  the window) / ``X-Ratelimit-Used`` on every response; when nothing remains the client
  waits for the reset before its next request (logged, counted in
  ``crisiswatch_source_rate_limited_total``); a 429 waits ``Retry-After`` (or the reset).

Errors: a refused credential is a 401 (after one fresh token) and stops the source. A 403
or 404 on a subreddit listing means that subreddit is private, quarantined or banned, and
a redirect that Reddit does not know it (it sends the name to its subreddit search): that
listing is skipped for a while (``listener.sources.targets``), the others go on. A poll
stopped by ``max_pages`` is logged and counted. A thing that cannot be read (no
``created_utc`` or ``name``, a value of the wrong type) is skipped, logged and counted;
the rest of the listing goes on.

Deleted and removed things: Reddit keeps them in listings with ``[deleted]`` for the
author and a placeholder for the text (``[removed]``, ``[deleted]``, ``[ Removed by
Reddit ]``...). The author is then no handle, the placeholder no text (a post whose body
is gone keeps its title): see ``map_thing``.

Cursor: per listing, the newest ``created_utc`` delivered and the ids of that second, and
the ids delivered in the late window before it (``listener.sources.timemark``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Self

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
    redirect_target,
    server_wait,
)
from listener.cursors import CursorStore
from listener.health import Coverage
from listener.sources import names
from listener.sources.base import SourceFatalError
from listener.sources.live import LiveSource, Step
from listener.sources.skips import UNREADABLE
from listener.sources.text import fit_text
from listener.sources.timemark import (
    DEFAULT_LATE_WINDOW_SECONDS,
    LateWindowSeconds,
    load_marks,
    poll_since,
    searched,
    whole_seconds,
)

log = logging.getLogger(__name__)

Thing = dict[str, Any]
AUTH_URL = "https://www.reddit.com/api/v1/access_token"


class RedditConfig(Section):
    """Reddit search queries and subreddits, polled through the OAuth API."""

    client_id: str | None = None
    client_secret: Secret | None = None
    user_agent: str = Field(
        "", description='e.g. "server:crisiswatch-acme:1.0 (by /u/your_account)"'
    )
    searches: list[str] = Field(default_factory=list, description="site-wide search queries")
    subreddits: list[str] = Field(default_factory=list, description="their new posts")
    subreddit_comments: list[str] = Field(default_factory=list, description="their new comments")
    poll_seconds: float = Field(60.0, ge=10)
    initial_lookback_minutes: float = Field(60.0, ge=0)
    max_pages: int = Field(5, ge=1, le=10)
    late_window_seconds: LateWindowSeconds = DEFAULT_LATE_WINDOW_SECONDS
    api_base: str = Field("https://oauth.reddit.com", pattern=r"^https?://\S+$")
    token_url: str = Field(AUTH_URL, pattern=r"^https?://\S+$")

    @field_validator("subreddits", "subreddit_comments")
    @classmethod
    def _subreddits(cls, values: list[str]) -> list[str]:
        return [names.subreddit(v) for v in values]

    @model_validator(mode="after")
    def _complete(self) -> Self:
        missing = [
            name
            for name, value in (
                ("client_id", self.client_id),
                ("client_secret", self.client_secret),
                ("user_agent", self.user_agent),
            )
            if not value
        ]
        if missing:
            raise ValueError(
                f"reddit source needs {', '.join(missing)}: create an app at "
                "https://www.reddit.com/prefs/apps and describe your client in user_agent"
            )
        if not (self.searches or self.subreddits or self.subreddit_comments):
            raise ValueError("reddit source needs searches, subreddits or subreddit_comments")
        return self

    def listings(self) -> list[tuple[str, str, dict[str, str]]]:
        """(cursor key, path, params) per listing."""
        out = [
            (f"search:{q}", "/search", {"q": q, "sort": "new", "type": "link"})
            for q in self.searches
        ]
        out += [(f"r/{s}/new", f"/r/{s}/new", {}) for s in self.subreddits]
        out += [(f"r/{s}/comments", f"/r/{s}/comments", {}) for s in self.subreddit_comments]
        return out


_TOKEN_HINTS = {
    401: "check client_id and client_secret at https://www.reddit.com/prefs/apps (the id "
    "is the string under the app's name; the app is a script or a web app)",
    403: "Reddit refuses this client (a generic user_agent, or a blocked address): "
    'describe it in user_agent, e.g. "server:crisiswatch-acme:1.0 (by /u/your_account)"',
    404: "token_url is not Reddit's token endpoint (leave it unset)",
}
"""What to do when Reddit refuses the token request, by status."""


class RedditClient:
    def __init__(
        self,
        config: RedditConfig,
        http: httpx.AsyncClient,
        clock: Clock,
        on_wait: Callable[[float], None] | None = None,
        on_page_cap: Callable[[str, int], None] | None = None,
    ) -> None:
        self.config = config
        self.http = http
        self.clock = clock
        self.on_wait = on_wait
        self.on_page_cap = on_page_cap
        self._token: str | None = None
        self._expires: datetime | None = None
        self._wait_until: datetime | None = None

    async def _authorize(self) -> str:
        now = self.clock.now()
        if self._token and self._expires and now < self._expires:
            return self._token
        secret = self.config.client_secret.get_secret_value() if self.config.client_secret else ""
        response = await get_at_most(
            self.http,
            self.config.token_url,
            what="reddit token",
            method="POST",
            data={"grant_type": "client_credentials"},
            auth=(self.config.client_id or "", secret),
            headers={"User-Agent": self.config.user_agent},
        )
        try:
            check_response(response, now, what="reddit token")
        except SourceFatalError as exc:
            raise SourceFatalError(f"{exc}: {_TOKEN_HINTS.get(response.status_code, '')}") from None
        body = json_body(response, what="reddit token")
        if not isinstance(body, dict):
            raise TransientError("reddit token: not an object")
        if "access_token" not in body:  # Reddit answers 200 {"error": ...} for bad grants
            raise TransientError(f"reddit token: {body.get('error', 'no access_token')}")
        self._token = str(body["access_token"])
        self._expires = now + timedelta(seconds=max(60, int(body.get("expires_in", 3600)) - 60))
        return self._token

    async def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        if self._wait_until is not None:
            delay = (self._wait_until - self.clock.now()).total_seconds()
            self._wait_until = None
            if delay > 0:
                if self.on_wait is not None:
                    self.on_wait(delay)
                else:
                    log.warning(
                        "reddit: rate limit used up (X-Ratelimit-Remaining 0); waiting %.0f s "
                        "for its reset (X-Ratelimit-Reset)",
                        delay,
                    )
                await self.clock.sleep(delay)
        for attempt in range(2):
            token = await self._authorize()
            response = await get_at_most(
                self.http,
                self.config.api_base + path,
                what=f"reddit {path}",
                params=params,
                headers={"Authorization": f"bearer {token}", "User-Agent": self.config.user_agent},
            )
            if response.status_code == 401 and attempt == 0:
                self._token = None  # expired or revoked: one fresh token, then give up
                continue
            break
        self._note_limits(response)
        if response.status_code == 429 and "retry-after" not in response.headers:
            reset = server_wait(response.headers.get("x-ratelimit-reset"), 60.0)
            raise RateLimited(reset, f"reddit {path}: HTTP 429, waiting {reset:.0f} s")
        self._redirected(response, path)
        # a subreddit can be private, quarantined or banned (403/404): that listing's
        # problem, not the credential's (a refused token is a 401, even after a new one)
        gone = (403, 404) if path.startswith("/r/") else ()
        check_response(response, self.clock.now(), what=f"reddit {path}", target_statuses=gone)
        body = json_body(response, what=f"reddit {path}")
        if not isinstance(body, dict) or body.get("kind") != "Listing":
            raise TransientError(f"reddit {path}: not a Listing")
        return body

    @staticmethod
    def _redirected(response: httpx.Response, path: str) -> None:
        """Raise ``TargetUnavailable`` for a redirect of a listing: Reddit sends a
        subreddit name it does not know (a typo, a name never taken) to its subreddit
        search, and a search it will not run (a query that is a URL) to ``/submit``.
        Neither is an outage: retrying every poll would give the same redirect."""
        status = response.status_code
        if not 300 <= status < 400 or status == 304:
            return
        where = f" to {target}" if (target := redirect_target(response)) else ""
        if path.startswith("/r/"):
            name = path.split("/")[2]
            raise TargetUnavailable(
                f"reddit {path}: HTTP {status}, redirected{where}: no such subreddit (Reddit "
                f"sends a name it does not know to its subreddit search): check {name!r} in "
                "the config"
            )
        raise TargetUnavailable(
            f"reddit {path}: HTTP {status}, redirected{where}: Reddit does not run this "
            "search (it sends a query that is a URL to /submit: search for url:<address> "
            "instead)"
        )

    def _note_limits(self, response: httpx.Response) -> None:
        remaining = response.headers.get("x-ratelimit-remaining")
        reset = response.headers.get("x-ratelimit-reset")
        try:
            spent = remaining is not None and reset is not None and float(remaining) < 1
        except ValueError:
            log.debug("reddit: unreadable rate-limit headers")
            return
        if spent:  # a reset of years, or not a number, must not stop the source
            wait = server_wait(reset, 60.0)
            self._wait_until = self.clock.now() + timedelta(seconds=wait)

    async def since(self, path: str, params: dict[str, str], since: int) -> list[Any]:
        """Things created at or after ``since`` (up to ``max_pages`` pages), as the
        listing gives them (newest first), the ones that cannot be read included
        (``stamp`` says which: the caller skips and counts them)."""
        things: list[Any] = []
        after: str | None = None
        for _ in range(self.config.max_pages):
            page_params = {**params, "limit": "100", "raw_json": "1"}
            if after:
                page_params["after"] = after
            body = await self._get(path, page_params)
            data = body.get("data") or {}
            children = data.get("children") if isinstance(data, dict) else None
            if not isinstance(children, list):
                raise TransientError(f"reddit {path}: a Listing without children")
            children = [_thing(c) for c in children]
            times = [_created(c) for c in children]
            things += [c for c, t in zip(children, times, strict=True) if t is None or t >= since]
            after = data.get("after")
            readable = [t for t in times if t is not None]
            if not after or not children or (readable and readable[-1] < since):
                break
        else:
            if self.on_page_cap is not None:
                self.on_page_cap(f"reddit {path}", self.config.max_pages)
        return things


def _thing(child: Any) -> Any:
    """A listing child's ``data`` (the thing); the child as it is when it has none (it
    cannot be read, and is skipped and counted as such)."""
    if isinstance(child, dict) and isinstance(child.get("data"), dict):
        return child["data"]
    return child


def _created(thing: Any) -> int | None:
    """A thing's ``created_utc`` in whole seconds; None when it cannot be read."""
    try:
        return whole_seconds(thing["created_utc"])
    except UNREADABLE:
        return None


def fullname(thing: Any) -> str:
    """A thing's ``name`` (``t3_<id>``, ``t1_<id>``). Raises for anything else."""
    value = thing["name"]
    if not isinstance(value, str) or not value:
        raise TypeError(f"name is a non-empty string, not {value!r:.40}")
    return value


def stamp(thing: Any) -> tuple[int, str]:
    """(``created_utc`` in whole seconds, ``name``) of a thing. Raises for a thing that
    lacks them or has them of the wrong type."""
    return whole_seconds(thing["created_utc"]), fullname(thing)


_PLACEHOLDER = re.compile(
    # inside the brackets: words, and at most the content policy's markdown link (no other
    # bracket: "[deleted by user] lol, see [this]" is somebody's comment, not a placeholder)
    r"\[\s*(?:removed|deleted)"
    r"(?:\s+by\s+(?:reddit|moderator|user|admin)\b(?:[^\[\]\n]|\[[^\[\]\n]*\]\([^()\n]*\))*)?"
    r"\s*\]",
    re.IGNORECASE,
)
"""What Reddit puts in place of a text or an author that is gone, as a whole value:
``[removed]`` (by a moderator), ``[deleted]`` (by its author, or the account deleted),
``[ Removed by Reddit ]`` and its sentences (``[ Removed by Reddit on account of violating
the [content policy](/help/contentpolicy). ]``, ``[ Removed by reddit in response to a
copyright notice. ]``), ``[removed by moderator]``, ``[deleted by user]``, in any case."""


def _said(value: Any) -> Any:
    """A text field as the author wrote it; ``""`` when Reddit replaced it with a
    placeholder (the sentiment model would read "[removed]", and a story would count it
    as a text of its own) or there is none. A value of the wrong type stays (the thing
    is then skipped as unreadable)."""
    if isinstance(value, str) and _PLACEHOLDER.fullmatch(value.strip()):
        return ""
    return value or ""


def _author(thing: dict[str, Any]) -> Author:
    """The thing's author. A deleted one (``[deleted]``: the account is gone, or the text
    was removed) is no handle, and no id unless Reddit still names the account: every
    such mention then counts as an author of its own in a story (the detector keys an
    author without id or handle by the mention's id). Counting them all as one author
    "[deleted]" under-counted a story's distinct authors (a spread signal); one account
    whose deleted comments count as several authors is the lesser error, and the one
    every source without author ids already makes."""
    handle = thing.get("author")
    if isinstance(handle, str) and _PLACEHOLDER.fullmatch(handle.strip()):
        handle = None
    return Author(id=thing.get("author_fullname"), handle=handle or None)


def map_thing(thing: dict[str, Any]) -> Mention:
    name = str(thing["name"])  # t3_<id> (post) or t1_<id> (comment)
    is_comment = name.startswith("t1_")
    # a removed or deleted text is no text (a bare mention: it still counts in its story,
    # as a repost does); a post whose body is gone keeps its title
    if is_comment:
        text = _said(thing.get("body"))
    else:
        text = "\n".join(p for p in (_said(thing.get("title")), _said(thing.get("selftext"))) if p)
    return Mention(
        id=f"reddit:{name}",
        source="reddit",
        url=f"https://www.reddit.com{thing['permalink']}" if thing.get("permalink") else None,
        text=fit_text(text),
        lang=None,
        created_at=datetime.fromtimestamp(float(thing["created_utc"]), UTC),
        author=_author(thing),
        engagement=Engagement(
            likes=max(0, int(thing.get("score") or 0)),
            # a comment in a listing carries its post's num_comments, not its own replies
            replies=0 if is_comment else int(thing.get("num_comments") or 0),
        ),
        reply_to=f"reddit:{thing['parent_id']}" if is_comment and thing.get("parent_id") else None,
    )


class RedditSource(LiveSource):
    kind = "reddit"
    coverage = Coverage(
        needs="free token",
        covers="Reddit posts matching site-wide searches; new posts/comments of subreddits",
        misses="comments site-wide (only in listed subreddits); commercial use needs a "
        "Reddit agreement; edits after the first read",
        resumes="created_utc and the ids of that second, per listing; each poll asks again "
        "from late_window_seconds before it (late-indexed items)",
    )

    def __init__(
        self,
        config: RedditConfig,
        http: httpx.AsyncClient,
        clock: Clock,
        cursors: CursorStore,
        metrics: Metrics | None = None,
        *,
        name: str = "reddit",
    ) -> None:
        super().__init__(name, clock, cursors, metrics)
        self.config = config
        self.client = RedditClient(
            config, http, clock, on_wait=self._waiting, on_page_cap=self.page_cap
        )

    def _waiting(self, seconds: float) -> None:
        """The rate limit is used up: the next request waits ``seconds`` for its reset.
        Logged (a backfill or the live listener would otherwise pause silently) and
        counted (``crisiswatch_source_rate_limited_total``)."""
        log.warning(
            "source %s: rate limit used up (X-Ratelimit-Remaining 0); waiting %.0f s for its "
            "reset (X-Ratelimit-Reset) before the next request",
            self.name,
            seconds,
        )
        self.health.error(f"rate limit used up; waiting {seconds:.0f} s", rate_limited=True)

    async def search(self, query: str, since: datetime) -> list[Mention]:
        """Backfill: posts matching ``query`` since ``since`` (site-wide search), oldest
        first (a thing that cannot be read is skipped, logged and counted)."""
        params = {"q": query, "sort": "new", "type": "link"}
        things = await self.client.since("/search", params, int(since.timestamp()))
        return searched(self, things, stamp, map_thing, f"thing of search {query!r}")

    def check_cursor(self, cursor: str) -> None:
        load_marks(cursor)

    def stream(self, cursor: str | None) -> AsyncIterator[Step]:
        def fetch(path: str, params: dict[str, str]) -> Callable[[int], Awaitable[list[Any]]]:
            return lambda since: self.client.since(path, params, since)

        return poll_since(
            self,
            cursor,
            [(key, fetch(path, params)) for key, path, params in self.config.listings()],
            stamp,
            map_thing,
            interval=lambda: self.config.poll_seconds,
            lookback_minutes=self.config.initial_lookback_minutes,
            late_window_seconds=self.config.late_window_seconds,
            ident=lambda thing: thing["name"],
        )
