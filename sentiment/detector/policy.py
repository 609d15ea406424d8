"""The tier policy, as pure functions: spread level, crisis tier, hysteresis, explanation.

Spread level (how far a story reaches, whatever it says)::

    0  a lone post
    1  a few mentions from a few authors, or one post with a wide reach
    2  local spread: beyond its first authors, or a very wide reach, or the story alone
       runs at many times the watch's usual rate
    3  network-wide: many mentions fast (short or long window) or a large projected size,
       from many authors, while the story is still hot (a minimum in the long window);
       or local spread on several platforms from as many authors

Levels 1 and 2 (by counts) only grow with the story; level 3 needs momentum, so it is
the level that cools down (under hysteresis) when a big story slows to a trickle.

Crisis tier (the response plan's tiers; only a negative story has one)::

    0  not negative (whatever its spread), or a lone negative post without complaint cue
    1  a minor complaint: negative, with a complaint cue or a few mentions
    2  local spread of a negative story
    3  a network-wide negative story

Hysteresis: a level rises at once and falls only after the lower level held for the
cool-down (event time); it then falls to the highest level seen during the cool-down.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sentiment.detector.config import DetectorConfig
from sentiment.detector.heat import HeatSnapshot, LiveHeat

TIMES = "\N{MULTIPLICATION SIGN}"


def spread_level(heat: HeatSnapshot | LiveHeat, config: DetectorConfig) -> int:
    c = config
    level1 = (heat.mentions >= c.spread1_mentions and heat.authors >= c.spread1_authors) or (
        heat.reach >= c.spread1_reach > 0
    )
    if not level1:
        return 0
    level2 = (
        spread2_without_momentum(heat, c)
        or (
            heat.rate_ratio is not None
            and heat.rate_ratio >= c.spread2_rate_ratio
            and heat.short_mentions >= c.spread2_rate_min_mentions
        )
        or (c.spread2_burst and heat.bursting())
    )
    if not level2:
        return 1
    if heat.platforms >= c.spread3_platforms and heat.authors >= c.spread3_authors:
        return 3  # local spread on several platforms, from many authors
    if heat.authors < c.spread3_authors or heat.long_mentions < c.spread3_min_long_mentions:
        return 2  # cheap checks first: the predicted size is the costly one
    fast = (
        heat.short_mentions >= c.spread3_short_mentions
        or heat.long_mentions >= c.spread3_long_mentions
        or (
            c.spread3_predicted_size is not None
            and heat.predicted_at_least(c.spread3_predicted_size)
        )
    )
    return 3 if fast else 2


def spread2_without_momentum(heat: HeatSnapshot | LiveHeat, config: DetectorConfig) -> bool:
    """Whether the story reaches spread 2 on what only grows (authors, reach), not on the
    rate or a burst, which fall with time alone (``spread_level``'s level-2 test)."""
    c = config
    return heat.authors >= c.spread2_authors or heat.reach >= c.spread2_reach > 0


def is_negative(negative_share: float, config: DetectorConfig) -> bool:
    return negative_share >= config.negative_share


def crisis_tier(
    spread: int, negative_share: float, has_complaint_cue: bool, config: DetectorConfig
) -> int:
    if not 0 <= spread <= 3:
        raise ValueError(f"spread level must be 0..3, not {spread}")
    if not is_negative(negative_share, config):
        return 0
    if spread >= 2:
        return spread
    if spread == 1 or has_complaint_cue:
        return 1
    return 0


@dataclass(frozen=True)
class Held:
    """A level under hysteresis: the level reported, and a pending lower level."""

    level: int = 0
    lower_since: datetime | None = None
    lower_max: int = 0


def hold(held: Held, raw: int, at: datetime, cooldown: timedelta) -> Held:
    """The held level after observing ``raw`` at event time ``at``."""
    if raw >= held.level:
        if raw == held.level and held.lower_since is None:
            return held  # unchanged (lower_max is 0 whenever lower_since is None)
        return Held(raw)
    if held.lower_since is None:
        since, highest = at, raw
    else:
        since, highest = held.lower_since, max(held.lower_max, raw)
    if at - since >= cooldown:
        if raw < highest:  # still lower than the new level: a new cool-down starts now
            return Held(highest, at, raw)
        return Held(highest)
    return Held(held.level, since, highest)


_UNITS = ((1e9, "G"), (1e6, "M"), (1e3, "k"))


def format_count(n: float) -> str:
    """1234 -> '1.2 k', 1_234_567 -> '1.2 M', 950 -> '950', 999_950 -> '1 M' (not
    '1000 k': a count that rounds to 1000 of a unit is 1 of the next)."""
    for i, (size, unit) in enumerate(_UNITS):
        if n >= size:
            value = n / size
            text = f"{value:.1f}" if value < 100 else f"{value:.0f}"
            if text == "1000" and i > 0:
                text, unit = "1", _UNITS[i - 1][1]
            return f"{text.removesuffix('.0')} {unit}"
    text = f"{n:.0f}"
    return "1 k" if text == "1000" else text


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def explain(heat: HeatSnapshot) -> str:
    """One human paragraph on why the story has its level, e.g. "41 posts in the last
    10 min (230 in all, 88% negative) from 37 authors, 9x the usual rate; reach 1.2 M
    followers; projected 900 posts; spreading on 3 platforms; complaint cues: refund,
    scam." (with a multiplication sign for the x)."""
    total = heat.mentions
    head = f"{_plural(heat.short_mentions, 'post')} in the last {heat.short_minutes} min"
    detail = f"{total} in all" if total != heat.short_mentions else ""
    if heat.negative_mentions:
        share = f"{heat.negative_share:.0%} negative"
        detail = f"{detail}, {share}" if detail else share
    if detail:
        head = f"{head} ({detail})"
    parts = [f"{head} from {_plural(heat.authors, 'author')}"]
    if heat.rate_ratio is not None and heat.rate_ratio >= 1.5:
        ratio = f"{heat.rate_ratio:.0f}" if heat.rate_ratio >= 10 else f"{heat.rate_ratio:.1f}"
        parts[0] += f", {ratio.removesuffix('.0')}{TIMES} the usual rate"
    if heat.reach > 0:
        parts.append(f"reach {format_count(heat.reach)} followers")
    if heat.high_reach_authors:
        parts.append(f"{_plural(heat.high_reach_authors, 'high-reach account')} involved")
    if heat.burst_windows:
        windows = ", ".join(f"{w} min" for w in heat.burst_windows)
        parts.append(f"bursting well above the usual volume ({windows} windows)")
    if heat.predicted_size is not None and heat.predicted_size >= total + 1:
        parts.append(f"projected {format_count(heat.predicted_size)} posts")
    if heat.platforms > 1:
        parts.append(f"spreading on {heat.platforms} platforms")
    if heat.complaint_cues:
        parts.append("complaint cues: " + ", ".join(heat.complaint_cues))
    return "; ".join(parts) + "."
