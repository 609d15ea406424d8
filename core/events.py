"""Event schemas: the contracts between the stages.

Every event is a versioned pydantic model. The wire format is JSON; the topic decides the
type (see ``TOPIC_TYPES``). ``schema_version`` lets a consumer refuse (dead-letter) an
event from a newer producer instead of misreading it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, NonNegativeInt


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a timezone (UTC)")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00: a refusal, not a crash of the caller
        raise ValueError("timestamp out of range once converted to UTC") from None


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]

Label = Literal["negative", "neutral", "positive"]
LABELS: tuple[Label, ...] = ("negative", "neutral", "positive")

Change = Literal["created", "edited", "deleted"]

TOPIC_MENTIONS = "mentions"
TOPIC_SCORED = "scored"
TOPIC_SIGNALS = "signals"


class _Event(BaseModel):
    """Frozen; unknown fields ignored (an older consumer reads a newer minor version).
    Floats must be finite: JSON has no NaN or infinity, so Kafka's consumers would
    dead-letter such an event while the memory bus handed over the instance; refusing it
    where it is built makes both buses agree and points at the producer."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)


_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: str) -> str:
    """PostgreSQL text cannot hold NUL, and UTF-8 (JSON on the bus, an HTTP answer) cannot
    carry a lone surrogate (``"\\ud800"``: half an emoji cut by a scraper): both are
    replaced by U+FFFD where a platform sent them (valid surrogate pairs were joined by
    the JSON decoder already). One scan of the text when it holds neither."""
    return _UNSTORABLE.sub("\ufffd", value) if _UNSTORABLE.search(value) else value


def _no_surrogate(value: str) -> str:
    """An id or code must be exact: a lone surrogate, which no JSON encoder can write out,
    is refused rather than replaced (two ids would become one)."""
    if _SURROGATE.search(value):
        raise ValueError("holds a lone surrogate (\\ud800-\\udfff), not valid text")
    return value


MAX_COUNT = 10**12
"""The most followers, likes, reposts, replies or views a mention may claim: far above any
platform's (the most-followed accounts have about 10**9, the most-viewed videos about
10**10). A larger number (a broken or hostile sender: 2**64 followers) is read as this, so
that sums of them (a story's reach) stay within a 64-bit database column: a Signal whose
reach could not be stored held up the alerter, retrying it for ever."""
MAX_STORED_INT = 2**63 - 1


def _at_most(limit: int) -> AfterValidator:
    return AfterValidator(lambda value: min(value, limit))


Count = Annotated[NonNegativeInt, _at_most(MAX_COUNT)]
"""A platform's count (followers, likes, views): at most ``MAX_COUNT``."""

Text = Annotated[str, AfterValidator(storable)]
"""Free text from a platform (a post, a name, a link): NUL characters and lone
surrogates are replaced."""
Code = Annotated[str, AfterValidator(_no_surrogate)]
"""An id or code from a platform: refused if it holds a lone surrogate."""
_ID = r"[^:\s\x00-\x1f\x7f]+:[^\s\x00-\x1f\x7f]+"
"""``<source>:<native id>``, no whitespace or control characters (ids are database keys)."""


MAX_URL_CHARS = 8192
"""The longest ``Mention.url``. Browsers take longer links, but the web's servers do not:
Apache (``LimitRequestLine``, 8190 bytes) and nginx (8 KiB header buffers) refuse a longer
request line by default, Cloudflare one over 16 KiB; the sitemap protocol's bound is 2,048.
A longer one (a hostile feed's link) is refused, not carried: a 1.1 MB link made a
mention larger than a Kafka record may be, and its batch was refused for ever."""
MAX_AUTHOR_CHARS = 512
"""The longest ``author.id`` and ``author.handle``: above every platform's (a Bluesky
handle or ``did:web`` at most 253 characters plus the prefix, a Mastodon ``user@domain``
at most 30 + 1 + 253, a YouTube channel name 100, Reddit and Telegram names 20 and 32)."""
MAX_LANG_CHARS = 64
"""The longest ``Mention.lang``: a BCP 47 tag (RFC 5646 asks software to take at least 35
characters; platforms send 2- or 3-letter ISO 639 codes)."""

# What these bounds add up to, on the wire: a Mention with every bounded field at its
# longest, of characters JSON escapes as 6 bytes each (``"\u0001"``), is about 300 KB
# (its text, ``MAX_TEXT_CHARS``, at most 240 KB of it); a ScoredMention adds at most
# 4 KB (its embedding). Both fit a Kafka record with the defaults (the producer's
# ``max_request_size`` and the broker's ``message.max.bytes``, 1 MiB), with room for the
# watch's brand and terms, which the operator's configuration sets
# (tests/unit/test_mention_bounds.py). A record refused for its size all the same (a
# topic configured smaller) is refused alone by the listener (``ListenerService.ingest``).


def _longest(limit: int) -> AfterValidator:
    """At most ``limit`` characters, checked before the value is scanned (a constraint of
    pydantic's own would refuse a lone surrogate before it is replaced)."""

    def check(value: str) -> str:
        if len(value) > limit:
            raise ValueError(f"at most {limit} characters (not {len(value)})")
        return value

    return AfterValidator(check)


UrlText = Annotated[str, _longest(MAX_URL_CHARS), AfterValidator(storable)]
AuthorText = Annotated[str, _longest(MAX_AUTHOR_CHARS), AfterValidator(storable)]
LangCode = Annotated[str, _longest(MAX_LANG_CHARS), AfterValidator(_no_surrogate)]


class Author(_Event):
    id: AuthorText | None = None
    handle: AuthorText | None = None
    followers: Count | None = None
    verified: bool = False


class Engagement(_Event):
    likes: Count = 0
    reposts: Count = 0
    replies: Count = 0
    views: Count | None = None


class WatchMatch(_Event):
    """Which watch (brand + query) a mention matched, and the terms that matched. ``id`` is
    bounded as the config bounds a watch's id (100): a longer one, from another producer,
    is refused where it is decoded (dead-lettered), not left to fail the detector's state
    save and the alerter's inserts (255-character columns) and be retried for ever."""

    id: Annotated[str, Field(min_length=1, max_length=100)]
    brand: str = ""
    terms: tuple[str, ...] = ()


MAX_TEXT_CHARS = 40_000
"""The longest ``Mention.text``: sources cut a longer post to it (``listener.sources.text.
fit_text``), so the post is kept and its start matched and scored."""


NO_LANGUAGE = frozenset({"und", "unknown", "xx", "zxx", "art", "qme", "qht", "qam", "qct"})
"""``Mention.lang`` codes that name no language: undetermined (``und``), no linguistic
content (``zxx``), artificial (``art``), and X/Twitter's media-, hashtag-, mention- and
cashtag-only posts (``qme``, ``qht``, ``qam``, ``qct``)."""


_TWO_LETTER = {
    **dict.fromkeys(("eng",), "en"),
    **dict.fromkeys(("zho", "chi", "cmn"), "zh"),  # cmn: Mandarin, as franc tags Chinese
    **dict.fromkeys(("jpn",), "ja"),
    **dict.fromkeys(("kor",), "ko"),
    **dict.fromkeys(("fra", "fre"), "fr"),
    **dict.fromkeys(("deu", "ger"), "de"),
    **dict.fromkeys(("spa",), "es"),
    **dict.fromkeys(("por",), "pt"),
    **dict.fromkeys(("rus",), "ru"),
    **dict.fromkeys(("ara", "arb"), "ar"),
    **dict.fromkeys(("ita",), "it"),
    **dict.fromkeys(("nld", "dut"), "nl"),
    **dict.fromkeys(("tur",), "tr"),
    **dict.fromkeys(("vie",), "vi"),
    **dict.fromkeys(("tha",), "th"),
    **dict.fromkeys(("ind",), "id"),
    **dict.fromkeys(("msa", "may", "zsm"), "ms"),
    **dict.fromkeys(("hin",), "hi"),
    **dict.fromkeys(("pol",), "pl"),
    **dict.fromkeys(("ukr",), "uk"),
    **dict.fromkeys(("swe",), "sv"),
    **dict.fromkeys(("heb",), "he"),
    **dict.fromkeys(("fas", "per", "pes"), "fa"),
}
"""Three-letter codes (ISO 639-2, and the 639-3 codes language detectors such as franc
and whatlang give) of common languages, read as their two-letter code: a watch's ``langs:
[en]`` keeps a mention tagged ``eng``, and the scorer routes it to its English model."""


def language_of(lang: str | None) -> str:
    """A mention's language as its primary subtag, lower case (``"zh-Hant"`` -> ``"zh"``,
    ``"EN_us"`` -> ``"en"``), a common language's three-letter code as its two-letter one
    (``"eng"`` -> ``"en"``, ``_TWO_LETTER``); ``""`` when it names none (missing,
    ``NO_LANGUAGE``): the text's script must tell."""
    if not lang:
        return ""
    code = lang.strip().lower().replace("_", "-").split("-", 1)[0]
    return "" if code in NO_LANGUAGE else _TWO_LETTER.get(code, code)


class Mention(_Event):
    """One post, comment or repost from a platform, normalised.

    ``id`` is ``"<source>:<native id>"``. ``received_at`` is the wall time the listener
    took it in (the start of the alert-latency clock); ``created_at`` is the event time.
    """

    schema_version: Literal[1] = 1
    id: Annotated[Code, Field(min_length=3, max_length=512, pattern=f"^{_ID}$")]
    source: Annotated[Code, Field(min_length=1, max_length=64)]
    url: UrlText | None = None
    text: Annotated[Text, Field(max_length=MAX_TEXT_CHARS)] = ""
    lang: LangCode | None = None
    created_at: UtcDatetime
    received_at: UtcDatetime | None = None
    author: Author = Field(default_factory=Author)
    engagement: Engagement = Field(default_factory=Engagement)
    reply_to: Annotated[Text, Field(max_length=512)] | None = None
    repost_of: Annotated[Text, Field(max_length=512)] | None = None
    watch: WatchMatch | None = None
    drill: bool = False
    change: Change = "created"
    """``edited``/``deleted``: a later version of the mention ``id`` names (same id);
    ``edited_at`` tells edits apart. A deletion carries no text."""
    edited_at: UtcDatetime | None = None

    @property
    def parent_id(self) -> str | None:
        """The mention this one continues in a cascade (repost first, then reply)."""
        return self.repost_of or self.reply_to


class Sentiment(_Event):
    label: Label
    probs: dict[Label, float]
    model: str
    version: str


class ScoredMention(_Event):
    schema_version: Literal[1] = 1
    mention: Mention
    sentiment: Sentiment
    embedding: str | None = Field(default=None, max_length=4096)
    """The text's sentence embedding, for a mention without a parent when the scorer runs
    an embedder (``scorer.embedder``): int8 values of the L2-normalised vector times 127,
    base64. The detector joins paraphrases of a story's texts with it."""


class Evidence(_Event):
    """A representative mention, carried in a Signal so that alerts can show it."""

    id: str
    url: str | None = None
    text: str = ""
    author: str | None = None
    followers: int | None = None
    created_at: UtcDatetime
    label: Label


CUE_CHARS = 200
"""The longest complaint cue a Signal's heat names (a longer one is cut)."""


class HeatFeatures(_Event):
    mentions: int
    mentions_window: int
    window_minutes: int
    unique_authors: int
    reach: Annotated[int, _at_most(MAX_STORED_INT)]
    negative_share: float
    rate_ratio: float | None = None
    platforms: int = 1
    predicted_size: float | None = None
    complaint_cues: tuple[Annotated[str, Field(max_length=CUE_CHARS)], ...] = Field(
        (), max_length=50
    )
    """The complaint cues (``detector.complaint_cues`` entries) found in the story's posts."""
    high_reach_authors: NonNegativeInt = 0
    """Distinct authors with at least ``detector.high_reach_followers`` followers."""
    burst_windows: tuple[Annotated[int, Field(gt=0)], ...] = Field((), max_length=20)
    """The window lengths (minutes) in which the story bursts above its usual volume."""


class Signal(_Event):
    """The detector's verdict on a story when its tier or spread level changes; also,
    where configured, its forecast at fixed ages (``forecast_minutes``, levels unchanged)."""

    schema_version: Literal[1] = 1
    id: str
    story_id: str
    story_root: str
    watch: WatchMatch
    tier: Annotated[int, Field(ge=0, le=3)]
    previous_tier: Annotated[int, Field(ge=0, le=3)]
    spread: Annotated[int, Field(ge=0, le=3)]
    heat: HeatFeatures
    explanation: str
    evidence: tuple[Evidence, ...] = ()
    at: UtcDatetime
    trigger_received_at: UtcDatetime | None = None
    drill: bool = False
    kind: Literal["story", "surge"] = "story"
    """``story``: one story's levels; ``surge``: the whole watch bursts without one
    dominant story (``story_id`` is ``"<watch>:surge"``, the heat counts the watch)."""
    forecast_minutes: Annotated[float, Field(gt=0)] | None = None
    """Set on a Signal sent because the story reached this age (minutes after its first
    mention; ``detector.forecast_report_minutes``): tier and spread are the levels already
    reported, the heat (its ``predicted_size``) is the story's forecast at that age."""
    merged_into: str | None = Field(default=None, max_length=255)
    """Set on a story's last Signal when the detector found it to be part of another
    story (``merged_into``, same watch): a copy of a complaint that arrived before the
    complaint itself, or a cascade whose late root joined a bigger one. Its tier and
    spread are 0; the other story's Signals carry the combined heat from then on."""


TOPIC_TYPES: dict[str, type[BaseModel]] = {
    TOPIC_MENTIONS: Mention,
    TOPIC_SCORED: ScoredMention,
    TOPIC_SIGNALS: Signal,
}


def utcnow() -> datetime:
    return datetime.now(UTC)
