"""The ``listener`` config section: watches, sources, the inbound webhook, dedup."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self

from pydantic import Field, SecretStr, StringConstraints, field_validator, model_validator

from core.settings import Secret, Section
from listener.query import QueryError, compile_any, compile_query
from listener.query.lexer import LANG
from listener.sources.feeds import FeedsConfig
from listener.sources.hackernews import HackerNewsConfig
from listener.sources.jetstream import JetstreamConfig
from listener.sources.mastodon import MastodonConfig
from listener.sources.reddit import RedditConfig
from listener.sources.telegram import TelegramConfig
from listener.sources.youtube import YouTubeConfig

Term = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
AliasName = Annotated[str, StringConstraints(pattern=r"^[^\W][\w.-]*$", max_length=100)]


class WatchConfig(Section):
    """One brand query: any of ``terms`` matches (or the boolean ``query``), any of
    ``exclude`` vetoes. Each entry is a literal phrase; a trailing ``*`` makes a prefix
    (``refund*``), as in alias entries and queries.

    Matching is case-insensitive; Latin-script terms match whole words (``acme`` does not
    match ``acmeville``), CJK terms match as substrings. ``langs`` (ISO 639-1 codes such as
    ``en``, ``zh``) keeps only mentions in those languages; a mention of unknown language
    passes. ``match_all`` takes every mention (for replays and catch-all streams).
    ``query`` is the watch query language (README, "Watch query language"); ``aliases``
    name lists of literals it refers to as ``@name``; ``sources`` keeps only mentions from
    those sources.
    """

    id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    brand: str = ""
    terms: list[Term] = Field(default_factory=list)
    exclude: list[Term] = Field(default_factory=list)
    langs: list[Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True)]] | None = (
        None
    )
    match_all: bool = False
    query: Annotated[str, StringConstraints(max_length=10_000)] | None = None
    aliases: dict[AliasName, list[Term]] = Field(default_factory=dict)
    sources: (
        list[Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True)]] | None
    ) = None

    @model_validator(mode="after")
    def _terms_or_match_all(self) -> Self:
        if self.match_all and (self.terms or self.query):
            raise ValueError(
                f"watch {self.id!r}: match_all takes every mention; remove its terms/query "
                "(or set match_all: false)"
            )
        if self.terms and self.query:
            raise ValueError(
                f"watch {self.id!r}: give either terms (any of them matches) or query, not both "
                "(write the terms into the query with OR)"
            )
        if not self.match_all and not self.terms and not self.query:
            raise ValueError(f"watch {self.id!r}: needs at least one term (or match_all: true)")
        if self.aliases and self.query is None:
            raise ValueError(f"watch {self.id!r}: aliases are referred to from a query (@name)")
        # langs and sources are stripped and lower-cased above, once: the watch filters and
        # the query's lang:/source: (listener.query) compare the same normalised values
        for field, values in (("langs", self.langs), ("sources", self.sources)):
            if values is not None and "" in values:
                raise ValueError(
                    f"watch {self.id!r}: {field}: entry {values.index('') + 1} is empty "
                    "(remove it, or give a name: e.g. "
                    f"{'[en, zh]' if field == 'langs' else '[bluesky, reddit]'})"
                )
        for lang in self.langs or ():  # "en, zh" or "chinese" kept every known language out
            if not LANG.fullmatch(lang):
                raise ValueError(
                    f"watch {self.id!r}: langs: {lang!r} is not a language code "
                    "(one code per entry, e.g. [en, zh, zh-Hant])"
                )
        for source in self.sources or ():
            if "," in source or any(c.isspace() for c in source):
                raise ValueError(
                    f"watch {self.id!r}: sources: {source!r} is not a source name "
                    "(one source per entry, e.g. [bluesky, reddit, news])"
                )
        for field, terms in (("terms", self.terms), ("exclude", self.exclude)):
            try:
                compile_any(terms)
            except ValueError as exc:  # e.g. only invisible characters
                raise ValueError(f"watch {self.id!r}: {field}: {exc}") from None
        if self.query is not None:
            try:
                compile_query(self.query, self.aliases)
            except QueryError as exc:
                raise ValueError(f"watch {self.id!r}: {exc.explain(indent='      ')}") from None
        return self


class ReplaySourceConfig(Section):
    """Replays a recorded mention stream (.jsonl or .jsonl.gz, wire format)."""

    path: Path
    speed: float | None = Field(
        None,
        ge=0,
        description="event-time gaps are replayed this many times faster; 0/None: no waiting",
    )
    loop: bool = Field(
        False, description="start again at the end (ids get a loop suffix, times shift)"
    )
    max_gap_seconds: float | None = Field(
        None, gt=0, description="shorten quiet event-time gaps longer than this (paced mode)"
    )
    limit: int | None = Field(None, ge=1, description="stop after this many input lines")


class DemoSourceConfig(Section):
    """The generated demo stream: brand chatter plus one complaint that goes viral."""

    brand: str = Field("Nimbus", min_length=1, max_length=60)
    seed: int = 7
    speed: float = Field(1.0, gt=0, description="run the story this many times faster")
    chatter_per_minute: float = Field(6.0, ge=0, description="background posts per minute")
    crisis_after_seconds: float = Field(
        20.0, ge=0, description="when the complaint is posted, after the stream starts"
    )
    crisis_growth_seconds: float = Field(
        120.0, gt=0, description="from the complaint to its network-wide peak"
    )
    crisis_mentions: int = Field(
        360, ge=1, description="crisis mentions up to the peak (a quieter tail follows)"
    )
    duration_seconds: float | None = Field(
        None, gt=0, description="end the stream after this long (None: endless)"
    )


OTHER_SOURCE_NAMES = frozenset(
    {"bluesky", "rss", "hackernews", "reddit", "telegram", "youtube", "demo", "replay", "webhook"}
)
"""The names the other sources keep their cursors and health under (``LiveSource.name``)."""


class SourcesConfig(Section):
    replay: ReplaySourceConfig | None = None
    demo: DemoSourceConfig | None = None
    bluesky: JetstreamConfig | None = None
    mastodon: list[MastodonConfig] = Field(default_factory=list)
    rss: FeedsConfig | None = None
    hackernews: HackerNewsConfig | None = None
    reddit: RedditConfig | None = None
    telegram: TelegramConfig | None = None
    youtube: YouTubeConfig | None = None

    @field_validator("mastodon")
    @classmethod
    def _unique_names(cls, instances: list[MastodonConfig]) -> list[MastodonConfig]:
        names = [m.name for m in instances]
        if len(set(names)) != len(names):
            raise ValueError("each mastodon source needs its own name (mastodon-social, ...)")
        for name in names:
            if name in OTHER_SOURCE_NAMES:
                raise ValueError(
                    f"a mastodon source may not be named {name!r}: that is the {name} "
                    "source's name, and the two would share one cursor (each restart, one "
                    "of them would start afresh) and one health line; name it after its "
                    "instance (mastodon-social, ...)"
                )
        return instances

    @property
    def live(self) -> bool:
        """Whether a source that keeps a cursor is configured."""
        return bool(
            self.bluesky
            or self.mastodon
            or self.rss
            or self.hackernews
            or self.reddit
            or self.telegram
            or self.youtube
        )


class WebhookConfig(Section):
    """``POST /ingest/mentions``: HMAC-signed batches pushed by other systems."""

    enabled: bool = False
    secret: Secret | None = None
    max_items: int = Field(1000, ge=1)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_skew_seconds: int = Field(300, ge=1)

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("the webhook secret must be at least 16 characters")
        return value

    @model_validator(mode="after")
    def _secret_when_enabled(self) -> Self:
        if self.enabled and self.secret is None:
            raise ValueError("webhook.enabled needs webhook.secret (requests are HMAC-signed)")
        return self


class ListenerConfig(Section):
    watches: list[WatchConfig] = Field(default_factory=list)
    sources: SourcesConfig = Field(default_factory=SourcesConfig)
    webhook: WebhookConfig = Field(default_factory=WebhookConfig)
    dedup_capacity: int = Field(
        1_000_000, ge=1, description="mention ids remembered for dedup (in memory, LRU)"
    )
    cascade_capacity: int = Field(
        500_000,
        ge=1,
        description="matched mention ids remembered so that their reposts/replies inherit "
        "the watches (in memory; with a database also in table listener_cascade, at most "
        "this many rows)",
    )
    cascade_keep_days: float = Field(
        7.0,
        gt=0,
        description="with a database: a cascade entry not used (remembered, or continued by a "
        "repost/reply) for this long is deleted from listener_cascade and not loaded at start",
    )
    cascade_flush_seconds: float = Field(
        5.0,
        gt=0,
        description="with a database: new cascade entries are written this often (and at "
        "stop); a crash loses at most this much",
    )
    cascade_load_seconds: float = Field(
        30.0,
        gt=0,
        description="with a database: the longest start-up spends loading cascade entries "
        "(most recent first); the rest are not loaded",
    )
    ingest_batch: int = Field(200, ge=1, description="mentions per ingest call from a source")
    source_retry_seconds: float = Field(1.0, gt=0, description="first backoff after an error")
    source_retry_max_seconds: float = Field(60.0, gt=0)

    @field_validator("watches")
    @classmethod
    def _unique_ids(cls, watches: list[WatchConfig]) -> list[WatchConfig]:
        seen: set[str] = set()
        for watch in watches:
            if watch.id in seen:
                raise ValueError(f"duplicate watch id {watch.id!r}")
            seen.add(watch.id)
        return watches

    def idle_warnings(self) -> list[str]:
        """Why a listener started with this config would publish nothing, in words (said at
        its start: a role started without its config file ran, ready, and took nothing in)."""
        warnings: list[str] = []
        if not self.watches:
            warnings.append(
                "listener: no watches configured (listener.watches): every mention is "
                "unmatched and none is published (is the config file given, --config FILE?)"
            )
        sources = self.sources
        if not (sources.live or sources.replay or sources.demo or self.webhook.enabled):
            warnings.append(
                "listener: no sources configured (listener.sources) and the webhook is off "
                "(listener.webhook.enabled): this listener takes no mentions in"
            )
        return warnings

    @classmethod
    def demo(cls, brand: str = "Nimbus", **demo: object) -> ListenerConfig:
        """A config with the demo watch and the generated demo stream."""
        return cls(
            watches=[demo_watch(brand)],
            sources=SourcesConfig(demo=DemoSourceConfig.model_validate({"brand": brand, **demo})),
        )


def demo_watch(brand: str = "Nimbus") -> WatchConfig:
    """The watch that the demo stream's brand posts match (and its cloud chatter does not)."""
    return WatchConfig(
        id=brand.lower().replace(" ", "-"),
        brand=brand,
        terms=[brand],
        exclude=[f"{brand} clouds", f"{brand} cloud"],
    )
