"""Configuration of the detector stage (section ``detector``).

Every number the detector decides with lives here. Times are **event time** (the
mentions' ``created_at``), never wall time.

The level-3 thresholds were calibrated on the Twitter15/16 train replay
(``../shared/data/replay``; its top 10 % of stories end with at least 876 reposts; see
``deploy/config/replay-twitter.yaml``): with these defaults spread 3 fires for 68 % of
those stories (precision 0.73, 2.4 false calls per 100 stories), a median 25 minutes
before the story reached half its final size. They are platform-scale numbers: a small
brand's watch should lower ``spread3_*`` (its level 2 also rises with
``spread2_rate_ratio`` and the burst test, relative to the watch's own usual rate). Weibo
cascades decay more slowly and their repost lists stop near 1,000:
``deploy/config/replay-weibo.yaml`` (power law, ``predict_theta`` 0.5, 920, 200 authors,
for the spread-3 trigger; the size it reports comes from the fitted model ``size-weibo``).

Spread levels (see ``policy.spread_level``)::

    0  a lone post
    1  a few mentions, or one post with a wide reach
    2  local spread: the story has grown beyond its first authors
    3  network-wide: many mentions fast or a large projected size while still hot, or
       local spread on several platforms from as many authors
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, PrivateAttr, field_validator, model_validator

from core.settings import Section
from sentiment.detector.forecast import Kernel
from sentiment.detector.sizemodel import SizeModel, load_size_model, size_feature_names

DEFAULT_COMPLAINT_CUES: dict[str, list[str]] = {
    "en": [
        "refund",
        "scam",
        "fraud",
        "lawsuit",
        "sue",
        "broken",
        "recall",
        "is this true",
        "dangerous",
        "fire",
        "caught fire",
        "exploded",
        "explosion",
        "injured",
        "injury",
        "poisoned",
        "food poisoning",
        "hospital",
        "defective",
        "faulty",
        "leak",
        "leaked",
        "data breach",
        "hacked",
        "boycott",
        "rip off",
        "ripoff",
        "never again",
        "complaint",
        "customer service",
        "misleading",
        "false advertising",
        "unsafe",
        "toxic",
    ],
    "zh": [
        "退款",
        "退货",
        "骗",
        "欺诈",
        "投诉",
        "维权",
        "起诉",
        "律师",
        "真的吗",
        "曝光",
        "爆炸",
        "起火",
        "着火",
        "自燃",
        "召回",
        "受伤",
        "中毒",
        "住院",
        "质量问题",
        "泄露",
        "抵制",
        "黑心",
        "虚假宣传",
        "假货",
        "差评",
        "避雷",
        "翻车",
        "315",
    ],
}


SENSITIVITY: dict[str, tuple[float, float, float]] = {
    # preset: (spread threshold factor, negative_share shift, burst alpha factor)
    "fewer": (1.5, 0.1, 0.1),
    "more": (0.67, -0.1, 10.0),
}


Predictor = Literal["hawkes", "power_law", "consensus", "fitted"]


class DetectorConfig(Section):
    _size_model: SizeModel | None = PrivateAttr(None)  # loaded by the validator
    # --- bus -----------------------------------------------------------------------------
    max_batch: int = Field(
        1024,
        ge=1,
        le=10_000,
        description="scored mentions per batch, at most. The state of every story a batch "
        "changed is saved once per batch, so a bigger batch saves a hot story less often "
        "(measured, embedded, 15,000 distinct tweets on 2 cores: about 20 us of CPU a "
        "mention less at 1,024 than at 256); Signals go out at the end of each batch. A "
        "quiet stream gives small batches anyway (max_wait_seconds)",
    )
    max_wait_seconds: float = Field(
        0.05, ge=0, le=10, description="wait this long (wall time) to fill a batch"
    )
    state_store: Literal["auto", "memory", "database"] = Field(
        "auto",
        description="where each watch's state is saved after every batch, so that a "
        "restart or a rebalance resumes its stories: database (the detector_state table), "
        "memory (lost at exit), auto = database on the Kafka bus and in an embedded process "
        "whose bus keeps a journal (bus.journal), memory otherwise (replays, benchmarks)",
    )

    # --- windows -------------------------------------------------------------------------
    short_window_minutes: int = Field(
        10, ge=1, le=24 * 60, description="the 'fast' window: mentions in the last N minutes"
    )
    long_window_minutes: int = Field(60, ge=1, le=7 * 24 * 60, description="the 'sustained' window")

    # --- spread levels -------------------------------------------------------------------
    spread1_mentions: int = Field(3, ge=1, description="level 1: at least this many mentions")
    spread1_authors: int = Field(2, ge=1, description="... from at least this many authors")
    spread1_reach: int = Field(
        10_000, ge=0, description="level 1 also: a reach (followers) of at least this"
    )
    spread2_authors: int = Field(
        10, ge=1, description="level 2: at least this many distinct authors"
    )
    spread2_reach: int = Field(
        200_000, ge=0, description="level 2 also: reach of at least this (with level 1 met)"
    )
    high_reach_followers: int = Field(
        100_000, ge=1, description="an author with this many followers is a high-reach account"
    )
    spread2_rate_ratio: float = Field(
        10.0,
        gt=0,
        description="level 2 also: the story alone runs at this many times the "
        "watch's usual mention rate ...",
    )
    spread2_rate_min_mentions: int = Field(
        5, ge=1, description="... with at least this many mentions in the short window"
    )
    spread3_short_mentions: int = Field(
        300, ge=1, description="level 3: at least this many mentions in the short window ..."
    )
    spread3_long_mentions: int = Field(
        600, ge=1, description="... or at least this many in the long window ..."
    )
    spread3_predicted_size: float | None = Field(
        1_200.0,
        gt=0,
        description="... or a predicted final size of at least this "
        "(with level 2 met); null: prediction is not used for the level",
    )
    spread3_authors: int = Field(
        30, ge=1, description="level 3 (by count or size) needs this many distinct authors ..."
    )
    spread3_min_long_mentions: int = Field(
        20,
        ge=0,
        description="... and this many mentions in the long window: a big story "
        "that has slowed to a trickle is no longer network-wide hot",
    )
    spread3_platforms: int = Field(
        3, ge=2, description="level 3 also: level 2 met on at least this many platforms"
    )

    # --- burst layer ---------------------------------------------------------------------
    burst_windows_minutes: list[int] = Field(
        default_factory=lambda: [1, 5, 15, 60],
        min_length=1,
        max_length=8,
        description="sliding event-time windows tested for bursts (each against the one "
        "before it: the persistence gate)",
    )
    burst_alpha: float = Field(
        1e-4,
        gt=0,
        lt=1,
        description="a story's window is hot when its count has a Poisson tail probability "
        "of at most this under the watch's usual rate for the hour of the week",
    )
    burst_min_count: int = Field(5, ge=1, description="... and at least this many mentions")
    seasonal_half_life_minutes: float = Field(
        240.0,
        gt=0,
        description="half-life of each hour-of-week slot's EWMA, in minutes of that slot "
        "(60 minutes a week: 240 is about four weeks)",
    )
    seasonal_warmup_minutes: int = Field(
        30, ge=1, description="a slot (else the all-hours rate) is used from this many minutes"
    )
    surge_enabled: bool = Field(
        True, description="signal a watch-level surge (kind 'surge'): the whole watch bursts"
    )
    surge_alpha: float = Field(
        1e-6, gt=0, lt=1, description="the watch's windows are hot at this tail probability"
    )
    surge_min_count: int = Field(30, ge=1, description="... and at least this many mentions")
    surge_min_ratio: float = Field(
        5.0, ge=1, description="... and at least this many times the usual count"
    )
    surge_min_window_minutes: int = Field(
        15, ge=1, description="only burst windows this long or longer count for a surge"
    )
    surge_max_story_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="a surge is reported only while no single story holds this share of "
        "the bursting window (a dominant story is reported as itself)",
    )
    spread2_burst: bool = Field(
        True, description="level 2 also: the story bursts (persistence-gated) in any window"
    )

    # --- sensitivity ---------------------------------------------------------------------
    sensitivity: Literal["fewer", "balanced", "more"] = Field(
        "balanced",
        description="preset on top of the thresholds: 'fewer' alerts (spread thresholds x1.5, "
        "negative_share +0.1, burst alpha /10), 'balanced' (as configured), 'more' alerts "
        "(x0.67, -0.1, alpha x10)",
    )

    # --- sentiment -----------------------------------------------------------------------
    negative_share: float = Field(
        0.4, gt=0, le=1, description="a story is negative from this share of negative mentions"
    )
    complaint_cues: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_COMPLAINT_CUES.items()},
        description="complaint cues per language (lowercase; Latin-script cues match whole "
        "words). Every language's cues are checked on every text.",
    )

    # --- hysteresis and signals ----------------------------------------------------------
    downgrade_cooldown_minutes: float = Field(
        120.0, ge=0, description="a lower tier/spread must hold this long before it is reported"
    )
    sweep_interval_minutes: float = Field(
        5.0,
        gt=0,
        description="how often (event time, per watch) quiet elevated stories are "
        "re-evaluated so that they can cool down without new mentions",
    )
    future_tolerance_minutes: float | None = Field(
        60.0,
        gt=0,
        description="a mention dated more than this ahead of its watch's event time (not "
        "received within this of its own date, and received less wall time after the "
        "mention that set it than that) is held back "
        "until the watch's next mention: one dated at most this much before it or later "
        "takes it in at its own time (a quiet spell: the same decisions, a mention later); "
        "one dated earlier counts it at the watch's event time instead (a bad timestamp: "
        "logged and counted), so that one wrong date cannot age every story of the watch. "
        "null: every mention moves event time",
    )
    signal_min_spread: int = Field(
        2,
        ge=1,
        le=3,
        description="a tier-0 story is reported only from this spread level on "
        "(changes among tier 0 with a lower spread are not signalled)",
    )

    # --- baseline and prediction ---------------------------------------------------------
    baseline_half_life_minutes: float = Field(
        360.0, gt=0, description="half-life of the watch's EWMA of mentions per minute"
    )
    baseline_warmup_minutes: float = Field(
        60.0, ge=0, description="no rate ratio before the watch has this much history"
    )
    baseline_min_per_minute: float = Field(
        0.2,
        gt=0,
        description="floor of the baseline (a quiet watch does not make every post a spike)",
    )
    predict_min_mentions: int = Field(
        10, ge=1, description="no size prediction for stories smaller than this"
    )
    predict_theta: float = Field(
        0.8, gt=0, description="power-law decay exponent of the extrapolation (see heat)"
    )
    predict_offset_minutes: float = Field(
        15.0, ge=0, description="time offset c of the power-law decay (see heat)"
    )
    predict_horizon_minutes: float = Field(
        60.0, gt=0, description="the story age used in the extrapolation is capped at this"
    )
    predictor: Predictor = Field(
        "consensus",
        description="hawkes: the self-exciting forecast (see forecast); power_law: the "
        "rate extrapolation (predict_theta, predict_offset_minutes, predict_horizon_minutes); "
        "consensus: the lower of the two (either can overshoot early, rarely both); "
        "fitted: size_model, fitted on past stories of the source (see sizemodel)",
    )
    level_predictor: Predictor | None = Field(
        None,
        description="the size the spread-3 rule compares with spread3_predicted_size, when "
        "it is not predictor's (a trigger tuned on one forecast, the best estimate reported "
        "from another)",
    )
    size_model: str | None = Field(
        None,
        description="predictor fitted: a bundled model's name (size-weibo) or the path of "
        "a model file written by `crisiswatch bench fit-size` (with a / or ending in .json; "
        "relative to the working directory)",
    )
    forecast_report_minutes: list[float] = Field(
        default_factory=list,
        description="story ages (minutes after its first mention, event time) at which "
        "the detector also sends a Signal with the story's current forecast "
        "(heat.predicted_size) and unchanged levels (Signal.forecast_minutes): the "
        "incident's timeline follows the projection as the story ages, and a replay's "
        "output can be scored at fixed ages (`crisiswatch replay --forecast-at`). "
        "Sent only where there is a forecast (predict_min_mentions)",
    )
    forecast_report_quiet: bool = Field(
        False,
        description="forecast_report_minutes also for stories that are not reported "
        "(tier 0 below signal_min_spread): for replays; on a live bus every small story "
        "would send them",
    )
    hawkes_theta: float = Field(
        1.0, gt=0, le=3, description="power-law exponent of the Hawkes memory kernel's tail"
    )
    hawkes_shortest_minutes: float = Field(1.0, gt=0, description="kernel: shortest time scale")
    hawkes_longest_minutes: float = Field(10_000.0, gt=0, description="kernel: longest time scale")
    hawkes_scales: int = Field(9, ge=1, le=32, description="kernel: log-spaced time scales")
    hawkes_prior_infectiousness: float = Field(
        0.5, ge=0, description="prior infectiousness (mentions per unit of exposure) ..."
    )
    hawkes_prior_exposure: float = Field(
        5.0, ge=0, description="... worth this much exposure (a weak prior for small stories)"
    )
    hawkes_max_branching: float = Field(
        0.95, gt=0, lt=1, description="the branching ratio is capped here (no infinite size)"
    )
    hawkes_follower_power: float = Field(
        0.0,
        ge=0,
        le=2,
        description="mention weight = (followers / hawkes_reference_followers) ** this where "
        "the follower count is known, else 1; 0 ignores followers",
    )
    hawkes_reference_followers: float = Field(1_000.0, gt=0)
    hawkes_repost_weight: float = Field(
        1.0,
        ge=0,
        le=1,
        description="how much a mention other than the story's first excites (1: a plain "
        "Hawkes process; lower: star-shaped cascades where the original post does the work)",
    )

    # --- stories and memory --------------------------------------------------------------
    join_by_text: bool = Field(
        True,
        description="a post without a parent joins the story of a near-duplicate or a "
        "paraphrase of its text (rules 4 and 4b of `stories`): copies of one complaint are "
        "one story. false: a story is one cascade (a post and its reposts, replies and "
        "quotes), the unit of replay truth files that count each root's own reposts "
        "(`deploy/config/replay-*.yaml`, README 'Detection benchmark')",
    )
    near_duplicate_threshold: float = Field(
        0.6, gt=0, le=1, description="Jaccard similarity (3-shingles) joining two posts"
    )
    near_duplicate_min_chars: int = Field(
        20, ge=3, description="shorter normalised texts are never joined by similarity"
    )
    minhash_permutations: int = Field(128, ge=8, le=1024)
    minhash_bands: int = Field(32, ge=1, le=1024)
    indexed_texts_per_story: int = Field(
        4, ge=1, description="texts per story kept in the near-duplicate index"
    )
    paraphrase_threshold: float = Field(
        0.93,
        gt=0,
        le=1,
        description="cosine of sentence embeddings (`scorer.embedder`) at which a post "
        "without a parent joins the story of a paraphrase of it (after near-duplicates); "
        "without embeddings nothing joins this way. Hand-made pairs (e5-embed card): same "
        "claim 0.91-0.96 in English, another claim about the same brand 0.84-0.93; on the "
        "replay posts the joins at 0.93 are the same event or rumour retold",
    )
    paraphrase_threshold_by_lang: dict[str, float] = Field(
        default_factory=lambda: {"zh": 0.94},
        description="`paraphrase_threshold` per language (the mention's `lang`, before any "
        "'-'): Chinese cosines run 0.02-0.03 higher (same claim 0.94-0.99, another claim "
        "0.88-0.94)",
    )

    @field_validator("paraphrase_threshold_by_lang")
    @classmethod
    def _lang_thresholds(cls, value: dict[str, float]) -> dict[str, float]:
        for lang, threshold in value.items():
            if not 0 < threshold <= 1:
                raise ValueError(f"paraphrase threshold of {lang!r} must be in (0, 1]")
        return {lang.split("-")[0].lower(): t for lang, t in value.items()}

    paraphrase_vectors_per_story: int = Field(
        4, ge=1, le=64, description="embeddings per story compared (its first texts)"
    )
    story_expiry_hours: float = Field(
        48.0, gt=0, description="a story without mentions for this long is forgotten"
    )
    max_stories: int = Field(
        5_000, ge=1, description="stories held per watch; the longest-quiet go first"
    )
    max_mentions_per_story: int = Field(
        5_000, ge=1, description="mention ids remembered per story (redelivery, cascades)"
    )
    max_authors_per_story: int = Field(
        20_000, ge=1, description="authors counted exactly per story (an upper bound beyond)"
    )

    # --- evidence ------------------------------------------------------------------------
    evidence_count: int = Field(5, ge=1, le=50, description="mentions carried in a Signal")
    evidence_chars: int = Field(280, ge=20, le=4_000, description="text trimmed to this")

    def durable_state(self, bus_kind: str, *, journaled: bool = False) -> bool:
        """Whether the detector saves watch state in the database on this bus
        (``journaled``: a memory bus whose events survive the process)."""
        if self.state_store == "auto":
            return bus_kind != "memory" or journaled
        return self.state_store == "database"

    def effective(self) -> DetectorConfig:
        """The thresholds the detector decides with: the configured ones under the
        ``sensitivity`` preset (``balanced`` changes nothing)."""
        if self.sensitivity == "balanced":
            return self
        scale, share, alpha = SENSITIVITY[self.sensitivity]

        def count(n: int) -> int:
            return max(1, round(n * scale))

        spread2_authors = count(self.spread2_authors)
        return self.model_copy(
            update={
                "sensitivity": "balanced",
                "spread2_authors": spread2_authors,
                "spread3_short_mentions": count(self.spread3_short_mentions),
                "spread3_long_mentions": count(self.spread3_long_mentions),
                "spread3_authors": max(count(self.spread3_authors), spread2_authors),
                "spread3_predicted_size": None
                if self.spread3_predicted_size is None
                else self.spread3_predicted_size * scale,
                "negative_share": min(max(self.negative_share + share, 0.05), 1.0),
                "burst_alpha": min(self.burst_alpha * alpha, 0.5),
                "surge_alpha": min(self.surge_alpha * alpha, 0.5),
            }
        )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.long_window_minutes < self.short_window_minutes:
            raise ValueError("long_window_minutes must be at least short_window_minutes")
        if self.hawkes_longest_minutes < self.hawkes_shortest_minutes:
            raise ValueError("hawkes_longest_minutes must be at least hawkes_shortest_minutes")
        if sorted(set(self.burst_windows_minutes)) != self.burst_windows_minutes:
            raise ValueError("burst_windows_minutes must be increasing, without repeats")
        if any(w < 1 or w > 24 * 60 for w in self.burst_windows_minutes):
            raise ValueError("burst_windows_minutes must be between 1 and 1440")
        ages = self.forecast_report_minutes
        if sorted(set(ages)) != ages or any(not 0 < a <= 7 * 24 * 60 for a in ages):
            raise ValueError(
                "forecast_report_minutes must be increasing, without repeats, each above 0 "
                "and at most 10080 (7 days)"
            )
        if len(ages) > 24:
            raise ValueError("forecast_report_minutes holds at most 24 ages")
        if self.minhash_permutations % self.minhash_bands:
            raise ValueError("minhash_permutations must be a multiple of minhash_bands")
        if self.spread3_authors < self.spread2_authors:
            raise ValueError("spread3_authors must be at least spread2_authors")
        if self.downgrade_cooldown_minutes > self.story_expiry_hours * 60:
            raise ValueError("downgrade_cooldown_minutes must be shorter than story expiry")
        for lang, cues in self.complaint_cues.items():
            if any(not cue.strip() for cue in cues):
                raise ValueError(f"complaint_cues.{lang} holds an empty cue")
        if "fitted" in (self.predictor, self.level_predictor):
            if not self.size_model:
                raise ValueError("predictor fitted needs size_model (a model name or file)")
            model = load_size_model(self.size_model)  # a SizeModelError is a ValueError
            model.require(self.size_feature_names(), f"size_model {self.size_model!r}")
            least = model.meta.get("predict_min_mentions")
            if isinstance(least, int) and self.predict_min_mentions < least:
                raise ValueError(
                    f"size_model {self.size_model!r} was fitted on stories of at least "
                    f"{least} mentions, but predict_min_mentions is "
                    f"{self.predict_min_mentions}: it would answer for smaller stories than "
                    f"it ever saw. Set predict_min_mentions to {least} or more, or refit "
                    "the model on this config (`crisiswatch bench fit-size --config ...`)"
                )
            self._size_model = model
        return self

    def size_feature_names(self) -> tuple[str, ...]:
        """The features a fitted size model reads with these windows."""
        return size_feature_names(
            self.short_window_minutes,
            self.long_window_minutes,
            self.burst_windows_minutes,
        )

    def hawkes_kernel(self) -> Kernel:
        """The Hawkes forecast's memory kernel (``forecast.Kernel``)."""
        return Kernel.power_law(
            self.hawkes_theta,
            self.hawkes_shortest_minutes,
            self.hawkes_longest_minutes,
            self.hawkes_scales,
        )

    def fitted_size_model(self) -> SizeModel:
        """The loaded ``size_model`` (``predictor`` fitted only)."""
        if self._size_model is None:
            raise ValueError("this detector config has no fitted size model")
        return self._size_model
