"""The simulated market's hidden truth, and how a day's clicks are drawn from it.

Hidden truth of a channel: expected conversions per day at spend s are the Hill curve
f(s) = ymax s^k / (ec50^k + s^k). A day of n clicks at CPC c brings the n marginal
chances f(j c) - f((j - 1) c), j = 1..n, dealt to the day's clicks in random order (the
day's cheap and dear inventory is spread over its hours, so no hour converts better than
another), each x landing-page multiplier x sub-id multiplier: a day's expected conversions
follow the curve, and better pages and sub ids convert more. Every random draw of a (day,
channel) comes from its own seeded stream, so policies run on the same seed see the same
visitors ("common random numbers"). `perfmark.simulation.market` runs the market.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import numpy as np

from perfmark.optimize.domain.response_curves import hill_value

__all__ = [
    "CLICK_HOURS",
    "MAX_CONVERSION_DELAY_S",
    "MIN_CONVERSION_DELAY_S",
    "VALUE_SIGMA",
    "ChannelTruth",
    "MarketTruth",
    "click_chances",
    "default_market",
    "plan_clicks",
]

#: Clicks arrive in the first 20 hours of a day, conversions at most 3 hours later, so a
#: day's conversions land on that day (whatever the report's date basis).
CLICK_HOURS = 20
MAX_CONVERSION_DELAY_S = 3 * 3600
MIN_CONVERSION_DELAY_S = 60
#: Spread of a conversion's value around its channel's mean (log-normal sigma).
VALUE_SIGMA = 0.5


@dataclass(frozen=True)
class ChannelTruth:
    """One channel's hidden truth: its CPC, response curve, value per conversion, sub ids."""

    name: str
    cpc: Decimal
    ymax: float  #: conversions per day that unlimited spend would bring
    ec50: float  #: the daily spend that brings half of ymax
    shape: float
    value_mean: float  #: mean value of one conversion
    subs: tuple[tuple[str, float], ...] = (("main", 1.0),)  #: sub id and quality multiplier
    decay_from_day: int | None = None  #: from this day on, conversions drop...
    decay_factor: float = 1.0  #: ...to this share (a channel that goes bad)

    def expected(self, spend: float) -> float:
        """Expected conversions per day at this spend (with the average page and sub id)."""
        return float(hill_value(spend, self.ymax, self.ec50, self.shape))

    def max_click_chance(self) -> float:
        """The highest chance any one click has (the curve's steepest CPC-wide step)."""
        # A Hill curve is steepest below ec50, so three times ec50 covers every candidate.
        clicks = math.ceil(3 * self.ec50 / float(self.cpc)) + 1
        return max(click_chances(self, clicks, day=0), default=0.0)


@dataclass(frozen=True)
class MarketTruth:
    """Everything the market hides from the optimizer."""

    channels: tuple[ChannelTruth, ...]
    arms: tuple[tuple[str, float], ...]  #: landing page key and conversion multiplier

    def __post_init__(self) -> None:
        best = max(multiplier for _, multiplier in self.arms)
        for channel in self.channels:
            chance = channel.max_click_chance() * best * max(_sub_multipliers(channel))
            if chance > 1:
                raise ValueError(
                    f"channel {channel.name!r}: a click would convert with probability "
                    f"{chance:.2f} > 1, so the curve cannot be met; lower ymax, or raise ec50 "
                    "or the CPC"
                )

    @property
    def best_arm(self) -> tuple[str, float]:
        """The landing page that converts best."""
        return max(self.arms, key=lambda arm: arm[1])

    def scaled(self, factor: float) -> MarketTruth:
        """The same market with `factor` x the traffic: curves stretched along spend and outcome."""
        return replace(
            self,
            channels=tuple(
                replace(c, ymax=c.ymax * factor, ec50=c.ec50 * factor) for c in self.channels
            ),
        )


def default_market() -> MarketTruth:
    """Four channels that saturate differently and three landing pages (at $400 a day)."""
    subs = (("top", 1.3), ("side", 1.0), ("feed", 0.7))
    return MarketTruth(
        channels=(
            ChannelTruth("search", Decimal("0.50"), 12, 60, 1.0, 40, subs),
            ChannelTruth("social", Decimal("0.80"), 24, 300, 1.2, 55, subs),
            ChannelTruth("native", Decimal("1.00"), 6, 40, 1.5, 30, subs),
            ChannelTruth("display", Decimal("0.60"), 3, 200, 1.0, 35, subs),
        ),
        arms=(("lp-a", 0.8), ("lp-b", 1.2), ("lp-c", 1.0)),
    )


def _sub_multipliers(channel: ChannelTruth) -> list[float]:
    """Each sub id's conversion multiplier, in the order of `channel.subs`."""
    # Normalised so the traffic-weighted mean is 1: the curve holds for the average sub id.
    raw = [quality for _, quality in channel.subs]
    mean = sum(raw) / len(raw)
    return [quality / mean for quality in raw]


def click_chances(channel: ChannelTruth, count: int, day: int) -> list[float]:
    """Each of a day's clicks' chance to convert (average page and sub id): f(j c) - f((j-1) c).

    They sum to f(count x CPC): the day's expected conversions follow the hidden curve.
    """
    cpc = float(channel.cpc)
    decay = (
        channel.decay_factor
        if channel.decay_from_day is not None and day >= channel.decay_from_day
        else 1.0
    )
    spends = np.arange(count + 1, dtype=np.float64) * cpc
    cumulative = hill_value(spends, channel.ymax, channel.ec50, channel.shape)
    return [float(step) * decay for step in np.diff(cumulative)]


def plan_clicks(
    channel: ChannelTruth, budget: Decimal, *, seed: int, day: int, index: int
) -> list[tuple[float, int, dict[str, Any]]]:
    """The day's clicks of one channel: (second of the day, order, what the click needs).

    `index` is the channel's position in the market: each (seed, day, channel) has its own
    random stream. A converting click's postback is due `delay` seconds after it.
    """
    count = int(budget // channel.cpc) if budget > 0 else 0
    rng = np.random.default_rng([seed, day, index])
    times = np.sort(rng.uniform(0, CLICK_HOURS * 3600, count))
    subs = rng.integers(0, len(channel.subs), count)
    draws = rng.random(count)
    delays = rng.uniform(MIN_CONVERSION_DELAY_S, MAX_CONVERSION_DELAY_S, count)
    values = channel.value_mean * np.exp(rng.normal(-(VALUE_SIGMA**2) / 2, VALUE_SIGMA, count))
    # The marginal chances are dealt out in random order: in time order the morning's clicks
    # would convert best, and a bandit or report reading the day so far would see that.
    in_order = click_chances(channel, count, day)
    chances = [in_order[k] for k in rng.permutation(count)]
    multipliers = _sub_multipliers(channel)
    return [
        (
            float(times[j]),
            index,
            {
                "channel": channel,
                "marginal": chances[j],
                "sub": channel.subs[int(subs[j])][0],
                "sub_multiplier": multipliers[int(subs[j])],
                "draw": float(draws[j]),
                "delay": float(delays[j]),
                "value": float(values[j]),
            },
        )
        for j in range(count)
    ]
