"""Every metric of the catalog on a hand-computed group, zero denominators, measure lists."""

from __future__ import annotations

from decimal import Decimal

import pytest

from perfmark.reports.domain.catalog import (
    BASE_MEASURES,
    DIMENSIONS,
    METRICS,
    NON_ADDITIVE_MEASURES,
    TIME_DIMENSIONS,
    derive,
    measures_of,
)

#: One group's base measures, small enough to check every figure by hand.
GROUP: dict[str, Decimal | int | None] = {
    "impressions": 2000,
    "clicks": 80,
    "unique_clicks": 60,
    "conversions_pending": 3,
    "conversions_approved": 5,
    "conversions_rejected": 2,
    "conversions_refunded": 1,
    "conversions_over_cap": 1,
    "leads": 4,
    "sales": 4,
    "revenue": Decimal("400.00"),
    "sales_revenue": Decimal("360.00"),
    "cost": Decimal("200.00"),
    "payout": Decimal("120.00"),
    "customers": 6,
    "new_customers": 5,
    "converted_after_click": 7,
    "median_seconds_to_convert": Decimal("90.5"),
}

#: What each metric must be for GROUP, worked out by hand.
EXPECTED: dict[str, Decimal | int | None] = {
    "impressions": 2000,
    "clicks": 80,
    "unique_clicks": 60,
    "ctr": Decimal("0.04"),  # 80 / 2000
    "conversions": 8,  # 3 pending + 5 approved
    "conversions_pending": 3,
    "conversions_approved": 5,
    "conversions_rejected": 2,
    "conversions_refunded": 1,
    "conversions_over_cap": 1,
    "conversion_rate": Decimal("0.1"),  # 8 / 80
    "cost": Decimal("200"),
    "revenue": Decimal("400"),
    "payout": Decimal("120"),
    "profit": Decimal("200"),  # 400 - 200
    "margin": Decimal("0.5"),  # 200 / 400
    "network_margin": Decimal("80"),  # 200 - 120
    "cpc": Decimal("2.5"),  # 200 / 80
    "cpm": Decimal("100"),  # 200 / 2000 x 1000
    "cpl": Decimal("50"),  # 200 / 4 leads
    "cpa": Decimal("25"),  # 200 / 8
    "cac": Decimal("40"),  # 200 / 5 new customers
    "roas": Decimal("2"),  # 400 / 200
    "roi": Decimal("1"),  # (400 - 200) / 200
    "epc": Decimal("5"),  # 400 / 80
    "aov": Decimal("90"),  # 360 / 4 sales
    "median_time_to_convert": Decimal("90.5"),
    "customers": 6,
    "new_customers": 5,
    "ltv": Decimal(400) / Decimal(6),  # 66.666..., exact to Decimal's 28 digits
}

#: Metrics that divide, and so are null when their denominator is zero.
RATIOS = {"ctr", "conversion_rate", "margin", "cpc", "cpm", "cpl", "cpa", "cac", "roas",
          "roi", "epc", "aov", "ltv"}  # fmt: skip


def test_every_metric_of_the_catalog_is_checked_here() -> None:
    assert set(EXPECTED) == set(METRICS)


@pytest.mark.parametrize("name", list(METRICS))
def test_metric_on_a_hand_computed_group(name: str) -> None:
    value = derive(GROUP, (name,))[name]
    assert value == EXPECTED[name]
    assert not isinstance(value, float)  # exact arithmetic only


@pytest.mark.parametrize("name", sorted(RATIOS))
def test_division_by_zero_is_none(name: str) -> None:
    empty: dict[str, Decimal | int | None] = dict.fromkeys(BASE_MEASURES, 0)
    empty["median_seconds_to_convert"] = None
    assert derive(empty, (name,))[name] is None


def test_ratios_with_only_their_denominator_zero_are_none() -> None:
    no_revenue = {**GROUP, "revenue": Decimal(0)}
    assert derive(no_revenue, ("margin",))["margin"] is None
    assert derive(no_revenue, ("profit",))["profit"] == Decimal("-200")
    assert derive(no_revenue, ("roas",))["roas"] == 0
    free = {**GROUP, "cost": Decimal(0)}
    assert derive(free, ("roas", "roi", "cpa"))["roas"] is None
    assert derive(free, ("roi",))["roi"] is None
    assert derive(free, ("cpa",))["cpa"] == 0


def test_non_ratio_metrics_of_an_empty_group_are_zero_not_none() -> None:
    values = derive({}, tuple(METRICS))
    for name, value in values.items():
        if name in RATIOS or name == "median_time_to_convert":
            assert value is None, name
        else:
            assert value == 0, name


def test_refunds_can_make_a_period_negative_and_ratios_follow() -> None:
    # A day with only a refund: -1 approved conversion worth -40, cost -4.
    day: dict[str, Decimal | int | None] = {
        "conversions_approved": -1,
        "revenue": Decimal(-40),
        "cost": Decimal(-4),
    }
    values = derive(day, ("conversions", "revenue", "cpa", "roas"))
    assert values == {
        "conversions": -1,
        "revenue": Decimal(-40),
        "cpa": Decimal(4),
        "roas": Decimal(10),
    }


def test_measures_of_lists_exactly_what_each_formula_reads() -> None:
    assert measures_of(("cpa",)) == ("conversions_pending", "conversions_approved", "cost")
    assert measures_of(("ctr", "clicks")) == ("impressions", "clicks")
    assert measures_of(("cac",)) == ("cost", "new_customers")
    assert measures_of(("ltv",)) == ("revenue", "customers")
    assert measures_of(("aov",)) == ("sales", "sales_revenue")
    assert measures_of(("median_time_to_convert",)) == ("median_seconds_to_convert",)
    assert measures_of(()) == ()
    every = measures_of(tuple(METRICS))
    assert set(every) == set(BASE_MEASURES) - {"converted_after_click"}


def test_measures_of_is_enough_to_compute_each_metric() -> None:
    for name in METRICS:
        only = {measure: GROUP[measure] for measure in measures_of((name,))}
        assert derive(only, (name,))[name] == EXPECTED[name], name


def test_non_additive_measures_are_base_measures() -> None:
    assert set(BASE_MEASURES) >= NON_ADDITIVE_MEASURES
    assert {"unique_clicks", "customers", "new_customers", "median_seconds_to_convert"} == set(
        NON_ADDITIVE_MEASURES
    )


def test_dimensions_cover_the_issue_list() -> None:
    wanted = {"campaign", "advertiser", "publisher", "channel", "offer", "goal", "creative",
              "landing_page", "sub1", "sub2", "sub3", "sub4", "sub5", "utm_source",
              "utm_medium", "utm_campaign", "utm_term", "utm_content", "country", "device",
              "os", "browser", "hour", "day", "week", "month"}  # fmt: skip
    assert set(DIMENSIONS) == wanted
    assert {"hour", "day", "week", "month"} == TIME_DIMENSIONS
    for name, dimension in DIMENSIONS.items():
        assert dimension.name == name and dimension.column and dimension.description
