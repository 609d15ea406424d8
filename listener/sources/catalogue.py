"""The coverage table: every kind of source, what it needs, what it covers, and whether
crisiswatch implements it yet. ``GET /sources`` and the README show it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from listener.config import SourcesConfig
from listener.health import Coverage
from listener.sources.feeds import RSSHUB_COVERAGE, FeedsSource
from listener.sources.hackernews import HackerNewsSource
from listener.sources.jetstream import JetstreamSource
from listener.sources.mastodon import MastodonSource
from listener.sources.reddit import RedditSource
from listener.sources.telegram import TelegramSource
from listener.sources.youtube import YouTubeSource


@dataclass(frozen=True)
class Entry:
    kind: str
    config_key: str
    implemented: bool
    coverage: Coverage

    def configured_in(self, sources: SourcesConfig) -> bool:
        value = getattr(sources, self.config_key, None)
        if self.kind == "rsshub":  # RSSHub routes are rss feeds marked rsshub: true
            return sources.rss is not None and any(f.rsshub for f in sources.rss.feeds)
        if self.kind == "rss":
            return sources.rss is not None and not all(f.rsshub for f in sources.rss.feeds)
        return bool(value)

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "config_key": self.config_key,
            "implemented": self.implemented,
            **asdict(self.coverage),
        }


CATALOGUE: tuple[Entry, ...] = (
    Entry("jetstream", "bluesky", True, JetstreamSource.coverage),
    Entry("mastodon", "mastodon", True, MastodonSource.coverage),
    Entry("rss", "rss", True, FeedsSource.coverage),
    Entry("rsshub", "rss", True, RSSHUB_COVERAGE),
    Entry("hackernews", "hackernews", True, HackerNewsSource.coverage),
    Entry(
        "webhook",
        "webhook",
        True,
        Coverage(
            needs="push",
            covers="whatever a vendor (Brandwatch, Meltwater exports) or your own scraper "
            "pushes, HMAC-signed: WeChat, Douyin, Weibo via a data vendor",
            misses="anything nobody pushes",
            edits=True,
            deletes=True,
            resumes="the sender retries; dedup on the mention id",
        ),
    ),
    Entry(
        "replay",
        "replay",
        True,
        Coverage(needs="nothing", covers="a recorded JSONL mention stream (tests, drills)"),
    ),
    Entry(
        "demo",
        "demo",
        True,
        Coverage(needs="nothing", covers="a generated stream with one crisis (first run)"),
    ),
    Entry("reddit", "reddit", True, RedditSource.coverage),
    Entry("youtube", "youtube", True, YouTubeSource.coverage),
    Entry("telegram", "telegram", True, TelegramSource.coverage),
)
