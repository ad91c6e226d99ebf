"""The simulated market's truth: clicks' chances follow the hidden curve, exploration keeps the total.

And the day's clicks carry no clock-time signal: no hour converts better than another, and a
conversion is posted after its click, within the day.
"""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmark.simulation.market import SimulationConfig, exploration_budgets
from perfmark.simulation.truth import (
    CLICK_HOURS,
    MAX_CONVERSION_DELAY_S,
    MIN_CONVERSION_DELAY_S,
    ChannelTruth,
    MarketTruth,
    click_chances,
    default_market,
    plan_clicks,
)


@settings(max_examples=40, deadline=None)
@given(
    ymax=st.floats(0.5, 50),
    ec50=st.floats(5, 500),
    shape=st.floats(0.5, 3),
    cpc=st.sampled_from([Decimal("0.25"), Decimal("0.50"), Decimal("1.00"), Decimal("2.30")]),
    count=st.integers(0, 400),
)
def test_a_days_chances_add_up_to_the_hidden_curve(
    ymax: float, ec50: float, shape: float, cpc: Decimal, count: int
) -> None:
    channel = ChannelTruth("c", cpc, ymax, ec50, shape, 10.0)
    chances = click_chances(channel, count, day=0)
    if channel.max_click_chance() > 1:  # a curve no click stream can meet is refused
        with pytest.raises(ValueError, match="probability"):
            MarketTruth((channel,), (("a", 1.0),))
        return
    spend = count * float(cpc)
    # Hill curve written out here, independently of the simulator.
    expected = ymax * spend**shape / (ec50**shape + spend**shape) if spend else 0.0
    assert math.fsum(chances) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert all(0 <= chance <= channel.max_click_chance() <= 1 for chance in chances)
    MarketTruth((channel,), (("a", 1.0),))


def test_a_channel_that_goes_bad_converts_at_its_decay_share() -> None:
    channel = ChannelTruth("c", Decimal("1"), 10, 50, 1.0, 10.0, decay_from_day=3, decay_factor=0.1)
    before, after = click_chances(channel, 40, day=2), click_chances(channel, 40, day=3)
    assert sum(after) == pytest.approx(0.1 * sum(before))
    assert sum(before) == pytest.approx(10 * 40 / 90)


@pytest.mark.parametrize("count", [1, 2, 4, 7])
def test_exploration_keeps_the_total_and_spans_the_range(count: int) -> None:
    names = [f"c{i}" for i in range(count)]
    total = Decimal("400")
    seen: dict[str, set[Decimal]] = {name: set() for name in names}
    for day in range(count):
        budgets = exploration_budgets(names, total, day)
        assert abs(sum(budgets.values()) - total) <= Decimal("0.01") * count
        for name, budget in budgets.items():
            seen[name].add(budget)
    share = total / count
    if count > 1:  # each campaign tried every level from 0.2x to 1.8x once
        for levels in seen.values():
            assert min(levels) == (share * Decimal("0.2")).quantize(Decimal("0.01"))
            assert max(levels) == (share * Decimal("1.8")).quantize(Decimal("0.01"))
            assert len(levels) == count


def test_scaling_the_market_scales_conversions_at_scaled_spend() -> None:
    market, double = default_market(), default_market().scaled(2.0)
    for one, two in zip(market.channels, double.channels, strict=True):
        assert two.expected(2 * 80.0) == pytest.approx(2 * one.expected(80.0))
    assert market.best_arm == ("lp-b", 1.2)


def test_no_hour_of_the_day_converts_better_than_another() -> None:
    # A steeply saturating channel: in time order its first clicks would be far the best.
    channel = ChannelTruth("c", Decimal("0.50"), 12, 30, 1.0, 40)
    budget = Decimal(100)
    morning, evening = [], []
    for day in range(60):
        clicks = plan_clicks(channel, budget, seed=5, day=day, index=0)
        chances = [click["marginal"] for _second, _index, click in clicks]
        # Every marginal chance of the curve is dealt out once: the day still follows it.
        assert math.fsum(chances) == pytest.approx(channel.expected(float(budget)), rel=1e-9)
        assert sorted(chances) == pytest.approx(sorted(click_chances(channel, 200, day)))
        half = CLICK_HOURS * 3600 / 2
        morning += [c["marginal"] for second, _i, c in clicks if second < half]
        evening += [c["marginal"] for second, _i, c in clicks if second >= half]
    # In time order the morning's mean chance would be 4.3x the evening's; dealt at random
    # the two means differ only by sampling noise (sd 1.5% over seeds; 8% is over 5 sd).
    ratio = (sum(morning) / len(morning)) / (sum(evening) / len(evening))
    assert ratio == pytest.approx(1.0, abs=0.08)


def test_a_conversion_is_posted_after_its_click_within_the_day() -> None:
    channel = default_market().channels[0]
    for day in range(5):
        for second, _index, click in plan_clicks(channel, Decimal(60), seed=1, day=day, index=0):
            assert 0 <= second < CLICK_HOURS * 3600
            assert MIN_CONVERSION_DELAY_S <= click["delay"] <= MAX_CONVERSION_DELAY_S
            assert second + click["delay"] < 24 * 3600


@pytest.mark.parametrize("minutes", [0, 7, 1441])
def test_a_slice_must_divide_the_day(minutes: int) -> None:
    with pytest.raises(ValueError, match="slice_minutes"):
        SimulationConfig(slice_minutes=minutes)
