"""The landing-page mix: page effects within campaign-days, exposures, and the curves it corrects."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmark.errors import ValidationError
from perfmark.optimize.domain.page_mix import MixCell, PageMix, fit_page_mix
from perfmark.optimize.domain.response_curves import hill_value
from perfmark.optimize.domain.response_posterior import CampaignHistory, fit_conversion_curves

_START = date(2026, 1, 1)
_PAGES = {"a": 0.8, "b": 1.2, "c": 1.0}


def _cells(
    rng: np.random.Generator,
    days: int,
    clicks_per_day: int,
    rates: dict[str, float],
    share_of_b: list[float],
) -> list[MixCell]:
    """Two campaigns of different rates; page b's share of clicks changes day by day.

    Days on which b is shown more convert worse on every page (as when spend rises with
    it), so comparing pages over the whole history, not within a day, undersells b.
    """
    cells = []
    for campaign, base in (("x", 0.05), ("y", 0.02)):
        for day in range(days):
            b = share_of_b[day]
            shares = {"a": (1 - b) / 2, "b": b, "c": (1 - b) / 2}
            day_rate = base * (1.5 - b) * rng.uniform(0.9, 1.1)
            for page, share in shares.items():
                clicks = int(clicks_per_day * share)
                conversions = int(rng.binomial(clicks, min(1.0, day_rate * rates[page])))
                cells.append(
                    MixCell(campaign, _START + timedelta(days=day), page, clicks, conversions)
                )
    return cells


def _all_exposures(mix: PageMix) -> list[float]:
    return [value for days in mix.exposures.values() for value in days.values()]


def test_recovers_page_effects_within_strata() -> None:
    rng = np.random.default_rng(4)
    cells = _cells(rng, 60, 3000, _PAGES, [0.1 + 0.8 * d / 59 for d in range(60)])

    mix = fit_page_mix(cells)

    assert set(mix.effects) == {"a", "b", "c"}
    effects = mix.effects
    assert effects["b"] / effects["c"] == pytest.approx(1.2, rel=0.06)
    assert effects["a"] / effects["c"] == pytest.approx(0.8, rel=0.06)
    # Pooled over the history instead, b would look no better than c.
    pooled = {
        page: sum(c.conversions for c in cells if c.page == page)
        / sum(c.clicks for c in cells if c.page == page)
        for page in _PAGES
    }
    assert pooled["b"] / pooled["c"] < 1.0
    # Scaled so the history's click-weighted mean is 1.
    clicks = {p: sum(c.clicks for c in cells if c.page == p) for p in effects}
    total = sum(clicks.values())
    assert sum(effects[p] * clicks[p] for p in effects) / total == pytest.approx(1.0)


def test_exposure_is_each_days_mix_relative_to_the_latest_day() -> None:
    rng = np.random.default_rng(5)
    shares = [0.1 + 0.8 * d / 29 for d in range(30)]
    mix = fit_page_mix(_cells(rng, 30, 3000, _PAGES, shares))

    for campaign in ("x", "y"):
        days = mix.exposures[campaign]
        assert days[_START + timedelta(days=29)] == pytest.approx(1.0)
        # The first day showed the better page b far less than the last: fewer conversions
        # per click, as the true effects predict (0.1 vs 0.9 of b, the rest split a/c).
        expected = (0.45 * 0.8 + 0.1 * 1.2 + 0.45 * 1.0) / (0.05 * 0.8 + 0.9 * 1.2 + 0.05 * 1.0)
        assert days[_START] == pytest.approx(expected, rel=0.05)
        values = [days[_START + timedelta(days=d)] for d in range(30)]
        assert values == sorted(values)  # b only gains share


def test_a_single_page_or_an_unchanged_mix_leaves_exposure_at_one() -> None:
    rng = np.random.default_rng(6)
    single = fit_page_mix(_cells(rng, 10, 500, {"a": 1.0, "b": 1.0, "c": 1.0}, [1.0] * 10))
    assert _all_exposures(single) == pytest.approx([1.0] * 20)
    assert single.effects == {"b": 1.0}
    steady = fit_page_mix(_cells(rng, 10, 600, _PAGES, [0.4] * 10))
    assert _all_exposures(steady) == pytest.approx([1.0] * 20, abs=1e-9)
    assert steady.effects["b"] > steady.effects["a"]


def test_few_conversions_stay_near_the_average() -> None:
    day = _START
    cells = [
        MixCell("x", day, "a", 40, 3),
        MixCell("x", day, "b", 40, 0),
    ]
    mix = fit_page_mix(cells)
    # Raw rates 3/40 vs 0/40; the prior worth 10 conversions keeps both near 1.
    assert 1.0 < mix.effects["a"] < 1.3
    assert 0.7 < mix.effects["b"] < 1.0


def test_clicks_without_a_page_and_days_without_clicks() -> None:
    day = _START
    cells = [
        MixCell("x", day, None, 10, 0),
        MixCell("x", day, "a", 100, 5),
        MixCell("x", day + timedelta(days=1), "a", 0, 0),  # no clicks: no stratum
    ]
    mix = fit_page_mix(cells)
    assert set(mix.effects) == {"a", None}
    assert set(mix.exposures["x"]) == {day}
    assert fit_page_mix([]).exposures == {}


@pytest.mark.parametrize(
    ("cell", "field"),
    [
        (MixCell("x", _START, "a", -1, 0), "clicks"),
        (MixCell("x", _START, "a", 10, float("nan")), "conversions"),
    ],
)
def test_bad_counts_are_refused(cell: MixCell, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        fit_page_mix([cell])
    assert caught.value.field == field


def test_bad_prior_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        fit_page_mix([], prior_conversions=0)
    assert caught.value.field == "prior_conversions"


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 5),
            st.sampled_from(["a", "b", "c"]),
            st.integers(0, 300),
            st.integers(0, 300),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_effects_and_exposures_are_finite_and_positive(
    rows: list[tuple[int, str, int, int]],
) -> None:
    cells = [
        MixCell("x", _START + timedelta(days=d), page, clicks, min(conv, clicks))
        for d, page, clicks, conv in rows
    ]
    mix = fit_page_mix(cells)
    assert all(np.isfinite(v) and v > 0 for v in mix.effects.values())
    for days in mix.exposures.values():
        assert all(np.isfinite(v) and v > 0 for v in days.values())
        assert days[max(days)] == pytest.approx(1.0)


def test_exposure_ones_change_nothing() -> None:
    spend = [20.0, 40.0, 60.0, 80.0, 100.0, 120.0]
    counts = [2, 3, 5, 4, 6, 6]
    plain = fit_conversion_curves(
        [CampaignHistory("c", spend, counts)], rng=np.random.default_rng(9), draws=200
    )["c"]
    ones = fit_conversion_curves(
        [CampaignHistory("c", spend, counts, [1.0] * 6)], rng=np.random.default_rng(9), draws=200
    )["c"]
    assert ones.params == plain.params
    assert ones.param_draws == plain.param_draws


def test_exposure_removes_a_page_change_from_the_curve() -> None:
    # Spend rises while a better page takes over: conversions per click rise 50% with it.
    # Unadjusted, the curve keeps climbing; with the exposure it shows the true saturation.
    rng = np.random.default_rng(11)
    days = 120
    spend = np.linspace(20, 300, days)
    exposure = np.linspace(1 / 1.5, 1.0, days)
    truth = hill_value(spend, 20.0, 60.0, 1.0)
    counts = rng.poisson(truth * exposure).tolist()
    plain = fit_conversion_curves(
        [CampaignHistory("c", spend.tolist(), counts)], rng=np.random.default_rng(1)
    )["c"]
    adjusted = fit_conversion_curves(
        [CampaignHistory("c", spend.tolist(), counts, exposure.tolist())],
        rng=np.random.default_rng(1),
    )["c"]
    # The return of the last 100 of spend: small on the true curve.
    true_gain = float(hill_value(300.0, 20.0, 60.0, 1.0) - hill_value(200.0, 20.0, 60.0, 1.0))
    plain_gain = plain.predict(300.0) - plain.predict(200.0)
    adjusted_gain = adjusted.predict(300.0) - adjusted.predict(200.0)
    assert abs(adjusted_gain - true_gain) < abs(plain_gain - true_gain)
    assert adjusted.predict(300.0) == pytest.approx(float(truth[-1]), rel=0.15)


@pytest.mark.parametrize(
    ("exposure", "message"), [([1.0, 1.0], "has 2 days"), ([1.0, 0.0, 1.0], "> 0")]
)
def test_bad_exposure_is_refused(exposure: list[float], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        fit_conversion_curves(
            [CampaignHistory("c", [1.0, 2.0, 3.0], [1, 1, 1], exposure)],
            rng=np.random.default_rng(0),
        )
    assert caught.value.field == "exposure"
    assert message in caught.value.message
