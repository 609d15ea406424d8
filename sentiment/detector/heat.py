"""Spread heat: per-story rolling state in event time, and the watch's usual rate.

``StoryHeat`` counts a story's mentions (all, and in a short and a long sliding window),
its distinct authors, their reach (followers of the distinct authors where known), its
platforms, the complaint cues it contains, and its negative share. A mention with no
text of its own (a plain repost) carries the sentiment of the story's root text (or of
its first text while the root is unknown), not "neutral": reposting a complaint spreads
the complaint. Until any text of the story is known such mentions count as unlabelled.

``RateBaseline`` is the watch's usual rate: an exponentially weighted moving average of
mentions per event-time minute (empty minutes count as zero), bias-corrected while young,
with a floor so that a quiet watch does not turn every post into a spike.

``predict_final_size`` extrapolates the story's current rate with a power-law decay
(the shape of self-exciting cascades, as in SEISMIC): if the rate decays as
``(t + c) ** -(1 + theta)``, the mentions still to come are ``rate(t) * (t + c) / theta``.
Two guards keep it from over-reacting: the rate is the lower of the short- and the
long-window rate (a burst of a few minutes does not project for hours), and the age ``t``
is capped at ``predict_horizon_minutes`` (a trickle on an old story does not project a
second life). On the Twitter15/16 train replay the median of (final - now) / rate grows
as about 24 + 1.5 t minutes; with theta 0.8, c 15 min and the 60-minute cap the median
predicted / final size is 1.2 at 10 min, 0.9 at 30 and 60 min. Weibo cascades decay
more slowly (theta ~ 0.5 gives a median of 0.9 there; theta 0.8 gives 0.65-0.73): one
theta does not fit every platform. ``forecast`` holds the Hawkes/SEISMIC forecast,
``sizemodel`` a model fitted on a source's past stories (``predictor: fitted``).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.events import CUE_CHARS, HeatFeatures, Label, Mention
from sentiment.detector.burst import BurstTest
from sentiment.detector.config import DetectorConfig, Predictor
from sentiment.detector.forecast import ForecastModel, StoryForecast
from sentiment.detector.sizemodel import MILESTONES
from sentiment.textnorm import shows_nothing

MAX_PLATFORMS = 64
HAWKES_READERS = frozenset({"hawkes", "consensus"})
GROWTH_REUSE = 1.05  # a fitted size is worked out afresh once the story grew by 5 %
EARLY_TIMES = MILESTONES[-1]  # the earliest mention times a story keeps
MAX_CUES = 10


class EventWindow:
    """Timestamps within the last ``minutes`` of event time (a trimmed, sorted deque)."""

    def __init__(self, minutes: float) -> None:
        self.minutes = minutes
        self._span = timedelta(minutes=minutes)
        self._times: deque[datetime] = deque()

    def add(self, at: datetime, now: datetime) -> None:
        if at <= now - self._span:
            return  # late beyond the window: counted in totals only
        times = self._times
        if not times or at >= times[-1]:
            times.append(at)
            return
        # Out of order (rare, and usually by little): insert from the right.
        i = len(times)
        while i > 0 and times[i - 1] > at:
            i -= 1
        times.insert(i, at)

    def absorb(self, other: EventWindow) -> None:
        """Hold ``other``'s timestamps too (a story merged into this one)."""
        if other._times:
            self._times = deque(heapq.merge(self._times, other._times))

    def count(self, now: datetime) -> int:
        cutoff = now - self._span
        times = self._times
        while times and times[0] <= cutoff:
            times.popleft()
        return len(times)


@dataclass(frozen=True)
class HeatSnapshot:
    """A story's heat at one moment: what the policy decides on."""

    mentions: int
    short_mentions: int
    short_minutes: int
    long_mentions: int
    long_minutes: int
    authors: int
    reach: int
    negative_mentions: int
    negative_share: float
    platforms: int
    age_minutes: float
    rate_per_minute: float
    rate_ratio: float | None
    predicted_size: float | None
    complaint_cues: tuple[str, ...] = ()
    burst_windows: tuple[int, ...] = ()
    """The window lengths (minutes) in which the story bursts (persistence-gated)."""
    high_reach_authors: int = 0
    """Distinct authors with at least ``high_reach_followers`` followers."""

    def bursting(self) -> bool:
        return bool(self.burst_windows)

    def predicted_at_least(self, threshold: float) -> bool:
        return self.predicted_size is not None and self.predicted_size >= threshold

    def features(self) -> HeatFeatures:
        return HeatFeatures(
            mentions=self.mentions,
            mentions_window=self.short_mentions,
            window_minutes=self.short_minutes,
            unique_authors=self.authors,
            reach=self.reach,
            negative_share=round(self.negative_share, 4),
            rate_ratio=None if self.rate_ratio is None else round(self.rate_ratio, 3),
            platforms=self.platforms,
            predicted_size=None if self.predicted_size is None else round(self.predicted_size, 1),
            complaint_cues=tuple(cue[:CUE_CHARS] for cue in self.complaint_cues),
            high_reach_authors=self.high_reach_authors,
            burst_windows=self.burst_windows,
        )


class LiveHeat:
    """A story's heat at one moment as the level policy reads it: the same values as
    ``StoryHeat.snapshot``, but the costly ones (burst windows, the predicted size) are
    only worked out when the policy asks, and nothing is built for the Signal (the
    detector takes a full snapshot only when it reports a change)."""

    __slots__ = (
        "_age",
        "_heat",
        "_now",
        "_now_minutes",
        "_rate",
        "authors",
        "has_cues",
        "long_mentions",
        "mentions",
        "negative_share",
        "platforms",
        "rate_ratio",
        "reach",
        "short_mentions",
    )

    def __init__(
        self,
        heat: StoryHeat,
        now: datetime,
        baseline_per_minute: float | None,
        now_minutes: float,
    ) -> None:
        short, long, age, rate, sustained = heat._rates(now)
        self._heat = heat
        self._now = now
        self._now_minutes = now_minutes
        self._age = age
        self._rate = rate if rate < sustained else sustained
        self.mentions = heat.mentions
        self.authors = heat.authors
        self.reach = heat.reach
        self.short_mentions = short
        self.long_mentions = long
        self.rate_ratio = None if baseline_per_minute is None else rate / baseline_per_minute
        self.platforms = len(heat._platforms) or 1
        self.negative_share = heat.negative()[1]
        self.has_cues = bool(heat._cues)

    def bursting(self) -> bool:
        return self._heat.bursting_at(math.floor(self._now_minutes))

    def predicted_at_least(self, threshold: float) -> bool:
        return self._heat.predicted_at_least(
            threshold, self._now, self._rate, self._age, self._now_minutes
        )


class StoryHeat:
    _label_of_root = False  # the label came from the root (class default: older snapshots)
    # What a fitted size model reads beyond the counts (class defaults stand in for them in
    # snapshots older than STATE_FORMAT 5):
    root_followers: int | None = None  # the root's author's followers, where known
    _texted = 0  # mentions beyond the root with text of their own (a comment, a quote)
    _deep = 0  # mentions whose parent is not the story's root (reposts of reposts)
    # the event times (epoch minutes) of the story's earliest mentions, sorted, at most
    # MILESTONES[-1] of them: the k-th is when the story reached k mentions, whatever
    # order they arrived in
    _early_times: tuple[float, ...] = ()
    # the fitted model's last answer: (event minute, mentions, log growth); see _fitted
    _growth: tuple[int, int, float] | None = None
    # followers of each author in the exact set who had any, and those of them counted as
    # high-reach (STATE_FORMAT 6; None in older snapshots: a merge then counts an author of
    # both stories twice in the reach)
    _followers: dict[str, int] | None = None
    _high: set[str] | None = None

    def __init__(
        self, config: DetectorConfig, first_at: datetime, label: Label | None = None
    ) -> None:
        """``label``: the story's label when known beforehand (a story that was forgotten
        and comes back keeps what its root said)."""
        self._config = config
        self.first_at = first_at
        self.mentions = 0
        self._short = EventWindow(config.short_window_minutes)
        self._long = EventWindow(config.long_window_minutes)
        self._authors: set[str] = set()
        self._authors_beyond = 0  # new-looking authors once the exact set is full
        self._followers = {}
        self._high = set()
        self.reach = 0
        self.high_reach = 0
        self._own: dict[Label, int] = {"negative": 0, "neutral": 0, "positive": 0}
        self._inherited = 0
        self._story_label = label
        self._abstained = 0  # texts the classifier could not judge ...
        self._abstained_cued = 0  # ... and how many of them carry a complaint cue
        self._platforms: dict[str, None] = {}
        self._cues: dict[str, None] = {}
        self._forecast = StoryForecast(forecast_model(config))
        # the Hawkes forecast is read by these predictors only
        self._hawkes = bool({config.predictor, config.level_predictor} & HAWKES_READERS)
        self._burst = BurstTest(
            config.burst_windows_minutes, config.burst_alpha, config.burst_min_count
        )

    @property
    def authors(self) -> int:
        return len(self._authors) + self._authors_beyond

    @property
    def story_label(self) -> Label | None:
        """The label reposts without text inherit: the root's, else the first text's."""
        return self._story_label

    @property
    def complaint_cues(self) -> tuple[str, ...]:
        return tuple(self._cues)

    def add(
        self,
        mention: Mention,
        label: Label | None,
        *,
        is_root: bool,
        now: datetime,
        cues: tuple[str, ...] = (),
        expected_per_minute: float | None = None,
        at_minutes: float | None = None,
        deep: bool = False,
    ) -> None:
        """Count one mention (never the same one twice: the story index sees to that).
        ``expected_per_minute``: the watch's usual rate now (the burst test's baseline).
        ``at_minutes``: ``created_at`` in epoch minutes, when the caller has it.
        ``deep``: its parent is a mention of the story other than the root."""
        self.mentions += 1
        at = mention.created_at
        if at_minutes is None:
            at_minutes = at.timestamp() / 60
        if at < self.first_at:
            self.first_at = at
        # text of its own: one that shows something (a repost of a zero-width space, a
        # bidi mark, a BOM or "&nbsp;" is a bare repost, as the classifier reads it)
        texted = not shows_nothing(mention.text)
        if is_root:
            self.root_followers = mention.author.followers
        elif texted:
            self._texted += 1
        if deep:
            self._deep += 1
        early = self._early_times
        if len(early) < EARLY_TIMES:
            if not early or at_minutes >= early[-1]:
                self._early_times = (*early, at_minutes)
            else:
                i = bisect.bisect_right(early, at_minutes)
                self._early_times = (*early[:i], at_minutes, *early[i:])
        elif at_minutes < early[-1]:  # late, and earlier than the last one kept
            i = bisect.bisect_right(early, at_minutes)
            self._early_times = (*early[:i], at_minutes, *early[i:-1])
        self._short.add(at, now)
        self._long.add(at, now)
        if self._hawkes:
            self._forecast.add(at_minutes, mention.author.followers)
        self._burst.add_minute(math.floor(at_minutes), expected_per_minute)
        self._count_author(mention)
        if len(self._platforms) < MAX_PLATFORMS:
            self._platforms[mention.source] = None
        for cue in cues:
            if len(self._cues) >= MAX_CUES:
                break
            self._cues[cue] = None
        if not texted:
            self._inherited += 1
            return
        if label is None:  # the classifier abstained (a language it does not read)
            self._abstained += 1
            self._abstained_cued += bool(cues)
            return
        self._own[label] += 1
        if is_root or self._story_label is None:
            self._story_label = label
            self._label_of_root = is_root

    def absorb(self, other: StoryHeat) -> None:
        """Count ``other``'s mentions in this story too (the detector merges a story
        into another). Exact for the counts, windows, labels, platforms and cues; the
        forecast and burst windows are combined at the later story's reference time;
        reach and high-reach authors add ``other``'s, an author both stories counted
        once (with the larger follower count; exact while both kept every author: the
        ones counted beyond ``max_authors_per_story`` may count twice); the later story's first
        mention keeps its first-mention weight in the forecast (``hawkes_repost_weight``
        is not applied to it)."""
        other_first = other.first_at < self.first_at
        self._absorb_size_inputs(other, other_first)
        self.mentions += other.mentions
        self.first_at = min(self.first_at, other.first_at)
        self._short.absorb(other._short)
        self._long.absorb(other._long)
        self._forecast.absorb(other._forecast, other_first=other_first)
        self._burst.absorb(other._burst)
        cap = self._config.max_authors_per_story
        mine, theirs = self._followers, other._followers
        for key in other._authors:
            if key in self._authors:
                if mine is not None and theirs is not None:
                    self._count_shared_author_once(key, mine, theirs, other)
                continue  # (a story of an older snapshot: counted twice, the safe side)
            if len(self._authors) >= cap:
                self._authors_beyond += 1
            else:
                self._authors.add(key)
                if mine is not None and theirs is not None and key in theirs:
                    mine[key] = theirs[key]
                    if self._high is not None and other._high and key in other._high:
                        self._high.add(key)
        self._authors_beyond += other._authors_beyond
        self.reach += other.reach
        self.high_reach += other.high_reach
        for label, n in other._own.items():
            self._own[label] += n
        self._inherited += other._inherited
        # the root's label, else the first text's (as one story would have it)
        if other._story_label is not None and (
            self._story_label is None
            or (other._label_of_root and not self._label_of_root)
            or (other_first and not self._label_of_root)
        ):
            self._story_label = other._story_label
            self._label_of_root = other._label_of_root
        self._abstained += other._abstained
        self._abstained_cued += other._abstained_cued
        for platform in other._platforms:
            if len(self._platforms) >= MAX_PLATFORMS:
                break
            self._platforms[platform] = None
        for cue in other._cues:
            if len(self._cues) >= MAX_CUES:
                break
            self._cues[cue] = None

    def snapshot_aside(
        self, now: datetime, baseline_per_minute: float | None, now_minutes: float
    ) -> HeatSnapshot:
        """``snapshot``, leaving the fitted model's cached answer as it was: a reading that
        decides nothing (a forecast report) must not change the next decision's size."""
        growth = self._growth
        try:
            return self.snapshot(now, baseline_per_minute, now_minutes)
        finally:
            self._growth = growth

    def _fitted(self, now: datetime, now_minutes: float) -> float:
        """The fitted model's final size. Its answer, the log growth still to come, is
        worked out at most once per event minute while the story grows by less than
        ``GROWTH_REUSE`` (the policy may ask on every mention of a hot story; the trees cost
        30-70 microseconds); in between the size is today's mentions times that growth."""
        minute = math.floor(now_minutes)
        cached = self._growth
        if cached is None or cached[0] != minute or self.mentions > cached[1] * GROWTH_REUSE:
            growth = self._config.fitted_size_model().growth(self.size_features(now, now_minutes))
            self._growth = cached = (minute, self.mentions, growth)
        return self.mentions * math.exp(cached[2])

    def _absorb_size_inputs(self, other: StoryHeat, other_first: bool) -> None:
        """The size model's inputs of a merged story: counts added, the earlier story's
        root, the two stories' earliest times merged (so the milestones are exact)."""
        first, second = (other, self) if other_first else (self, other)
        root = first.root_followers
        self.root_followers = second.root_followers if root is None else root
        self._growth = None
        self._texted += other._texted
        self._deep += other._deep
        merged = heapq.merge(self._early_times, other._early_times)
        self._early_times = tuple(itertools.islice(merged, EARLY_TIMES))

    def size_features(self, now: datetime, now_minutes: float | None = None) -> list[float]:
        """The inputs of a fitted size model at ``now`` (``sizemodel.size_feature_names``)."""
        if now_minutes is None:
            now_minutes = now.timestamp() / 60
        log1p = math.log1p
        age = max(0.0, (now - self.first_at).total_seconds() / 60)
        not_yet = log1p(2 * age)  # a size not reached: later than twice the age so far
        first = self.first_at.timestamp() / 60
        early = self._early_times
        milestones = [log1p(max(early[k - 1] - first, 0.0)) for k in MILESTONES if k <= len(early)]
        root = self.root_followers
        return [
            math.log(max(self.mentions, 1)),
            log1p(age),
            log1p(self._short.count(now)),
            log1p(self._long.count(now)),
            *(log1p(c) for c in self._burst.counts_at(math.floor(now_minutes))),
            log1p(self.authors),
            log1p(max(root or 0, 0)),
            0.0 if root is None else 1.0,
            log1p(self._texted),
            log1p(self._deep),
            *(milestones[i] if i < len(milestones) else not_yet for i in range(len(MILESTONES))),
        ]

    def _count_shared_author_once(
        self, key: str, mine: dict[str, int], theirs: dict[str, int], other: StoryHeat
    ) -> None:
        """An author both stories counted: once in the reach, with the larger of the two
        follower counts (each story took the count of the author's first mention in it),
        and once among the high-reach authors if either story counted them there (each
        under the threshold of its time)."""
        a, b = mine.get(key, 0), theirs.get(key, 0)
        self.reach -= min(a, b)
        if max(a, b):
            mine[key] = max(a, b)
        if self._high is None or not other._high or key not in other._high:
            return
        if key in self._high:
            self.high_reach -= 1
        else:
            self._high.add(key)

    def _count_author(self, mention: Mention) -> None:
        author = mention.author
        key = author.id or (f"@{author.handle}" if author.handle else f"#{mention.id}")
        key = f"{mention.source}/{key}"
        if key in self._authors:
            return
        if len(self._authors) >= self._config.max_authors_per_story:
            self._authors_beyond += 1  # an upper bound: repeat authors count again here
        else:
            self._authors.add(key)
            if author.followers and self._followers is not None:
                self._followers[key] = author.followers
        if author.followers:
            self.reach += author.followers
            if author.followers >= self._config.high_reach_followers:
                self.high_reach += 1
                if self._high is not None and key in self._authors:
                    self._high.add(key)

    @property
    def burst(self) -> BurstTest:
        """The story's burst windows (read, never changed, by the watch's surge test)."""
        return self._burst

    def burst_counts(self, now: datetime) -> list[int]:
        """The story's count in each burst window open at ``now``."""
        return self._burst.counts(now)

    def negative(self) -> tuple[int, float]:
        """Negative mentions (own label, or inherited) and their share of labelled ones."""
        negative = self._own["negative"]
        labelled = sum(self._own.values())
        if labelled == 0 and self._abstained:
            # No judged text at all (e.g. Chinese before a Chinese model ships): fall back
            # to the complaint lexicon; a cued text counts as negative.
            return self._abstained_cued, self._abstained_cued / self._abstained
        if self._story_label is not None:
            labelled += self._inherited
            if self._story_label == "negative":
                negative += self._inherited
        return negative, (negative / labelled if labelled else 0.0)

    def _rates(self, now: datetime) -> tuple[int, int, float, float, float]:
        """(short count, long count, age in minutes, short rate, sustained rate) at ``now``."""
        cfg = self._config
        short = self._short.count(now)
        long = self._long.count(now)
        age = max(0.0, (now - self.first_at).total_seconds() / 60)
        # A young story's windows are not full yet: rates over its age (at least 1 min).
        rate = short / min(float(cfg.short_window_minutes), max(age, 1.0))
        sustained = long / min(float(cfg.long_window_minutes), max(age, 1.0))
        return short, long, age, rate, sustained

    def snapshot(
        self, now: datetime, baseline_per_minute: float | None, now_minutes: float | None = None
    ) -> HeatSnapshot:
        """The heat at ``now`` (``now_minutes``: the same in epoch minutes, when known)."""
        if now_minutes is None:
            now_minutes = now.timestamp() / 60
        cfg = self._config
        short, long, age, rate, sustained = self._rates(now)
        ratio = None if baseline_per_minute is None else rate / baseline_per_minute
        negative, share = self.negative()
        return HeatSnapshot(
            mentions=self.mentions,
            short_mentions=short,
            short_minutes=cfg.short_window_minutes,
            long_mentions=long,
            long_minutes=cfg.long_window_minutes,
            authors=self.authors,
            reach=self.reach,
            negative_mentions=negative,
            negative_share=share,
            platforms=max(1, len(self._platforms)),
            age_minutes=age,
            rate_per_minute=rate,
            rate_ratio=ratio,
            predicted_size=self.predict(now, min(rate, sustained), age, now_minutes),
            complaint_cues=self.complaint_cues,
            burst_windows=self._burst.bursting_at(math.floor(now_minutes)),
            high_reach_authors=self.high_reach,
        )

    def live(
        self, now: datetime, baseline_per_minute: float | None, now_minutes: float
    ) -> LiveHeat:
        """The heat at ``now`` for deciding levels (see ``LiveHeat``)."""
        return LiveHeat(self, now, baseline_per_minute, now_minutes)

    def bursting_at(self, minute: int) -> bool:
        """Whether the story bursts (persistence-gated) in any window at event minute
        ``minute``."""
        return bool(self._burst.bursting_at(minute))

    def predicted_at_least(
        self,
        threshold: float,
        now: datetime,
        rate_per_minute: float,
        age: float,
        now_minutes: float,
    ) -> bool:
        """The spread-3 rule's test: ``level_predictor``'s size (else ``predictor``'s) at
        least ``threshold`` (None counts as below), without the Hawkes forecast when the
        consensus's power-law half is already below (the consensus is the lower of the
        two)."""
        cfg = self._config
        predictor = cfg.level_predictor or cfg.predictor
        if predictor == "consensus" and self.mentions >= cfg.predict_min_mentions:
            power_law = predict_final_size(self.mentions, rate_per_minute, age, cfg)
            if power_law is not None and power_law < threshold:
                return False
        predicted = self.predict(now, rate_per_minute, age, now_minutes, predictor)
        return predicted is not None and predicted >= threshold

    def predict(
        self,
        now: datetime,
        rate_per_minute: float,
        age: float,
        now_minutes: float | None = None,
        predictor: Predictor | None = None,
    ) -> float | None:
        """The expected final number of mentions (None for a story still too small), by
        ``predictor`` (default: the config's)."""
        cfg = self._config
        predictor = predictor or cfg.predictor
        if predictor == "power_law":
            return predict_final_size(self.mentions, rate_per_minute, age, cfg)
        if self.mentions < cfg.predict_min_mentions:
            return None
        if now_minutes is None:
            now_minutes = now.timestamp() / 60
        if predictor == "fitted":
            return self._fitted(now, now_minutes)
        if self._forecast.events != self.mentions:
            # the Hawkes state missed mentions (a story restored from the state of a config
            # that did not keep it): the power law stands in rather than a forecast of 0
            return predict_final_size(self.mentions, rate_per_minute, age, cfg)
        hawkes = self._forecast.predict(now_minutes)
        if predictor == "consensus":
            power_law = predict_final_size(self.mentions, rate_per_minute, age, cfg)
            return hawkes if power_law is None else min(hawkes, power_law)
        return hawkes


_MODELS: dict[int, tuple[DetectorConfig, ForecastModel]] = {}


def forecast_model(config: DetectorConfig) -> ForecastModel:
    """The Hawkes model of a config (built once per config object)."""
    cached = _MODELS.get(id(config))
    if cached is not None and cached[0] is config:
        return cached[1]
    model = ForecastModel(
        config.hawkes_kernel(),
        prior_p=config.hawkes_prior_infectiousness,
        prior_exposure=config.hawkes_prior_exposure,
        max_branching=config.hawkes_max_branching,
        reference_followers=config.hawkes_reference_followers,
        follower_power=config.hawkes_follower_power,
        repost_weight=config.hawkes_repost_weight,
    )
    if len(_MODELS) > 64:
        _MODELS.clear()
    _MODELS[id(config)] = (config, model)
    return model


def predict_final_size(
    mentions: int, rate_per_minute: float, age_minutes: float, config: DetectorConfig
) -> float | None:
    """Mentions so far plus the power-law tail of the current rate (see the module
    docstring); None below ``predict_min_mentions``."""
    if mentions < config.predict_min_mentions:
        return None
    age = min(age_minutes, config.predict_horizon_minutes)
    tail = rate_per_minute * (age + config.predict_offset_minutes) / config.predict_theta
    return mentions + tail


class RateBaseline:
    """A watch's usual mentions per minute (event time), as an EWMA over minute buckets."""

    # ``per_minute``'s answer, kept until the open bucket moves on (the detector asks on
    # every mention; the answer changes once a minute); None: to be worked out
    _known: tuple[float | None] | None = None

    def __init__(self, half_life_minutes: float, warmup_minutes: float, floor: float) -> None:
        self._keep = 0.5 ** (1.0 / half_life_minutes)  # weight kept per minute
        self._warmup = warmup_minutes
        self._floor = floor
        self._first: int | None = None
        self._minute: int | None = None  # the open (not yet folded) bucket
        self._count = 0
        self._ewma = 0.0
        self._weight = 0.0  # sum of the weights folded so far (bias correction)

    def add(self, at: datetime) -> None:
        self.add_minute(math.floor(at.timestamp() / 60))

    def add_minute(self, minute: int) -> None:
        """``add`` for a mention in event minute ``minute`` (floor of epoch minutes)."""
        if self._minute is None or self._first is None:
            self._first = self._minute = minute
            self._known = None
        elif minute > self._minute:
            self._fold(self._count, 1)
            self._fold(0, minute - self._minute - 1)
            self._minute = minute
            self._count = 0
            self._known = None
        # a late mention (minute < open bucket) counts in the open bucket
        self._count += 1

    def _fold(self, count: int, minutes: int) -> None:
        if minutes <= 0:
            return
        keep = self._keep**minutes
        take = 1.0 - self._keep
        if count:  # minutes == 1 when count > 0
            self._ewma = take * count + keep * self._ewma
        else:
            self._ewma *= keep
        self._weight = 1.0 - keep * (1.0 - self._weight)

    def per_minute(self) -> float | None:
        """The usual rate, or None while the watch has less than the warm-up history."""
        known = self._known
        if known is None:
            known = self._known = (self._per_minute(),)
        return known[0]

    def _per_minute(self) -> float | None:
        if self._minute is None or self._first is None:
            return None
        if self._minute - self._first < self._warmup or self._weight <= 0:
            return None
        return max(self._ewma / self._weight, self._floor)
