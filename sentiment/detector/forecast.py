"""The spread forecast: a self-exciting (Hawkes) estimate of a story's final size.

In the spirit of SEISMIC (Zhao et al., KDD 2015): every mention of a story excites
further mentions with a memory kernel ``phi`` (a density over the delay ``s``), scaled
by the mention's weight ``w`` (its author's reach when known) and the story's
infectiousness ``p``::

    rate(t) = p * sum_i w_i * phi(t - t_i)

**Infectiousness** is estimated from what the story did so far: its mentions beyond the
first, over the *exposure* its mentions have had (each mention's weight times the share
of its kernel already elapsed, ``Phi(t - t_i)``), with a weak prior (``prior_p`` over
``prior_exposure``) so that a story of three mentions is not extrapolated wildly::

    p = (N - 1 + prior_p * prior_exposure) / (sum_i w_i * Phi(t - t_i) + prior_exposure)

**Final size** adds what the existing mentions still owe (their unexpired kernel) and the
descendants of those, a branching process with ratio ``rho = p * mean weight of the
mentions beyond the first`` (capped at ``max_branching`` below 1)::

    N_final = N + p * sum_i w_i * (1 - Phi(t - t_i)) / (1 - rho)

**Kernel.** Repost delays have a heavy (power-law) tail. The kernel here is a mixture of
exponentials on log-spaced time scales ``tau_k`` with weights ``a_k ~ tau_k ** -theta``
(such a mixture approximates a survival ``~ s ** -theta`` between the smallest and the
largest scale). Its survival ``1 - Phi(s) = sum_k a_k exp(-s / tau_k)`` makes the state
per story a fixed, small vector: the decayed weight sums ``S_k = sum_i w_i exp(-(t - t_i)
/ tau_k)`` are updated in O(K) per mention, and the prediction costs O(K), however
large the story.

**Weights.** ``w = clamp((followers / reference_followers) ** follower_power)`` where the
author's follower count is known, else 1 (the fallback: every mention counts alike, which
is a plain Hawkes branching estimate). ``follower_power`` 0 ignores followers. Every
mention but the story's first is further weighted by ``repost_weight`` (1: a plain
Hawkes process; below 1: reposts excite less than the original post).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Kernel:
    """A mixture-of-exponentials memory kernel (time in minutes)."""

    taus: tuple[float, ...]
    weights: tuple[float, ...]

    @classmethod
    def power_law(cls, theta: float, shortest: float, longest: float, scales: int) -> Kernel:
        """Log-spaced scales from ``shortest`` to ``longest`` minutes, weights ~ tau**-theta."""
        if scales < 1 or shortest <= 0 or longest < shortest:
            raise ValueError("need scales >= 1 and 0 < shortest <= longest")
        step = (longest / shortest) ** (1 / (scales - 1)) if scales > 1 else 1.0
        taus = tuple(shortest * step**k for k in range(scales))
        raw = [tau**-theta for tau in taus]
        total = sum(raw)
        return cls(taus, tuple(w / total for w in raw))

    def survival(self, s: float) -> float:
        """The share of the kernel still ahead ``s`` minutes after a mention."""
        return sum(
            a * math.exp(-max(s, 0.0) / tau) for a, tau in zip(self.weights, self.taus, strict=True)
        )


@dataclass(frozen=True)
class ForecastModel:
    kernel: Kernel
    prior_p: float = 0.5
    prior_exposure: float = 5.0
    max_branching: float = 0.9
    reference_followers: float = 1000.0
    follower_power: float = 0.0
    min_weight: float = 0.1
    max_weight: float = 10.0
    repost_weight: float = 1.0

    def weight(self, followers: int | None, *, first: bool = False) -> float:
        """A mention's weight: its reach where known (else 1), times ``repost_weight``
        unless it is the story's first mention."""
        w = 1.0
        if followers is not None and self.follower_power != 0:
            w = float((max(followers, 1) / self.reference_followers) ** self.follower_power)
            w = min(max(w, self.min_weight), self.max_weight)
        return w if first else w * self.repost_weight


class StoryForecast:
    """One story's Hawkes state: O(K) numbers, whatever the story's size."""

    __slots__ = ("_decay", "_model", "_sums", "_t", "events", "first_weight", "weight")

    def __init__(self, model: ForecastModel) -> None:
        self._model = model
        self._decay = tuple(1.0 / tau for tau in model.kernel.taus)
        self._sums = [0.0] * len(self._decay)  # S_k at time self._t
        self._t: float | None = None
        self.events = 0
        self.weight = 0.0  # sum of all weights
        self.first_weight = 0.0

    def add(self, at_minutes: float, followers: int | None) -> None:
        """Count one mention at ``at_minutes`` (any fixed epoch, minutes)."""
        first = self._t is None
        w = self._model.weight(followers, first=first)
        if first:
            self._t = at_minutes
            self.first_weight = w
        t = self._t
        assert t is not None
        if at_minutes > t:  # decay to the new time and add, in one pass
            exp = math.exp
            back = t - at_minutes  # -dt: (-dt) * d is exactly -(dt * d)
            self._sums = [
                s * exp(back * d) + w for s, d in zip(self._sums, self._decay, strict=True)
            ]
            self._t = at_minutes
        elif at_minutes == t:
            self._sums = [s + w for s in self._sums]
        else:  # late: its contribution, decayed to the current reference time
            lag = t - at_minutes
            exp = math.exp
            self._sums = [
                s + w * exp(-lag * d) for s, d in zip(self._sums, self._decay, strict=True)
            ]
        self.events += 1
        self.weight += w

    def absorb(self, other: StoryForecast, *, other_first: bool) -> None:
        """Count ``other``'s mentions too (a story merged into this one): both states are
        decayed to the later reference time and added. ``other_first``: ``other``'s
        first mention came before this one's (its weight is then the story's first)."""
        if other._t is None:
            return
        if self._t is None:
            self._t, self._sums = other._t, list(other._sums)
            self.events, self.weight, self.first_weight = (
                other.events,
                other.weight,
                other.first_weight,
            )
            return
        t = max(self._t, other._t)
        exp = math.exp

        def at_t(sums: list[float], since: float) -> list[float]:
            lag = t - since
            return [s * exp(-lag * d) for s, d in zip(sums, self._decay, strict=True)]

        mine, theirs = at_t(self._sums, self._t), at_t(other._sums, other._t)
        self._sums = [a + b for a, b in zip(mine, theirs, strict=True)]
        self._t = t
        self.events += other.events
        self.weight += other.weight
        if other_first:
            self.first_weight = other.first_weight

    def ahead(self, now_minutes: float) -> float:
        """``sum_i w_i * (1 - Phi(now - t_i))``: the excitation still owed."""
        if self._t is None:
            return 0.0
        dt = max(now_minutes - self._t, 0.0)
        a = self._model.kernel.weights
        if dt == 0.0:  # just after a mention (the usual case): exp(0) is 1
            return sum(w * s for w, s in zip(a, self._sums, strict=True))
        exp = math.exp
        return sum(w * s * exp(-dt * d) for w, s, d in zip(a, self._sums, self._decay, strict=True))

    def infectiousness(self, now_minutes: float, ahead: float | None = None) -> float:
        """Mentions beyond the first per unit of exposure so far (with the prior)."""
        m = self._model
        if ahead is None:
            ahead = self.ahead(now_minutes)
        exposure = max(self.weight - ahead, 0.0)
        return (self.events - 1 + m.prior_p * m.prior_exposure) / (exposure + m.prior_exposure)

    def branching(self, p: float) -> float:
        """``p`` times the mean weight of the mentions beyond the first (capped)."""
        offspring = self.events - 1
        mean_w = (self.weight - self.first_weight) / offspring if offspring > 0 else 1.0
        return min(p * mean_w, self._model.max_branching)

    def predict(self, now_minutes: float) -> float:
        """The expected final number of mentions."""
        if self.events == 0:
            return 0.0
        ahead = self.ahead(now_minutes)
        p = self.infectiousness(now_minutes, ahead)
        return self.events + p * ahead / (1.0 - self.branching(p))
