"""Build the sources named in the config. Explicit: one line per source kind, no discovery
by naming convention; a configured source that cannot be built stops start-up."""

from __future__ import annotations

import logging

import httpx

from core.clock import Clock
from core.metrics import Metrics
from listener.config import SourcesConfig
from listener.cursors import CursorStore, MemoryCursorStore
from listener.sources.base import Source
from listener.sources.demo import DemoSource
from listener.sources.feeds import FeedsSource
from listener.sources.hackernews import HackerNewsSource
from listener.sources.jetstream import JetstreamSource
from listener.sources.mastodon import MastodonSource
from listener.sources.reddit import RedditSource
from listener.sources.replay import ReplaySource
from listener.sources.telegram import TelegramSource
from listener.sources.youtube import YouTubeSource

log = logging.getLogger(__name__)


class SourceConfigError(ValueError):
    """A configured source cannot be built (a missing dependency such as the HTTP client)."""


def build_sources(
    config: SourcesConfig,
    clock: Clock,
    metrics: Metrics,
    *,
    http: httpx.AsyncClient | None = None,
    cursors: CursorStore | None = None,
) -> list[Source]:
    sources: list[Source] = []
    if config.replay is not None:
        sources.append(ReplaySource(config.replay, clock, metrics))
    if config.demo is not None:
        sources.append(DemoSource(config.demo, clock))
    if not config.live:
        return sources
    if cursors is None:
        log.warning(
            "no database for the listener: source cursors are kept in memory and lost at "
            "exit (a restart starts the live sources from now)"
        )
        cursors = MemoryCursorStore()
    if config.bluesky is not None:
        sources.append(JetstreamSource(config.bluesky, clock, cursors, metrics))
    polled = (
        config.mastodon,
        config.rss,
        config.hackernews,
        config.reddit,
        config.telegram,
        config.youtube,
    )
    if not any(polled):
        return sources
    if http is None:
        raise SourceConfigError("the HTTP sources need an HTTP client")
    for instance in config.mastodon:
        sources.append(MastodonSource(instance, http, clock, cursors, metrics))
    if config.rss is not None:
        sources.append(FeedsSource(config.rss, http, clock, cursors, metrics))
    if config.hackernews is not None:
        sources.append(HackerNewsSource(config.hackernews, http, clock, cursors, metrics))
    if config.reddit is not None:
        sources.append(RedditSource(config.reddit, http, clock, cursors, metrics))
    if config.telegram is not None:
        sources.append(TelegramSource(config.telegram, http, clock, cursors, metrics))
    if config.youtube is not None:
        sources.append(YouTubeSource(config.youtube, http, clock, cursors, metrics))
    return sources
