"""Cost rows: exact spend parsing, sources, periods, aggregation, conversion at the day's rate."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmark.billing.domain.pricing import ExchangeRate, RateNotFoundError, RateTable
from perfmark.costs.domain import (
    CostFileError,
    CostLine,
    CostRow,
    aggregate_rows,
    check_source,
    check_spend,
    import_period,
    spend_in,
)
from perfmark.costs.domain.csvfile import parse_number_cell
from perfmark.errors import ValidationError
from perfmark.money import Money

D = Decimal


@pytest.mark.parametrize(
    ("text", "separator", "expected"),
    [
        ("1,234.56", ".", "1234.56"),
        ("1,234,567.8", ".", "1234567.8"),
        ("987.25", ".", "987.25"),
        ("0.00", ".", "0.00"),
        (".5", ".", "0.5"),
        ("12", ".", "12"),
        ("1.234,56", ",", "1234.56"),
        ("1 234,56", ",", "1234.56"),
        ("1\u00a0234,56", ",", "1234.56"),
        ("0,99", ",", "0.99"),
        ("1234", ",", "1234"),
    ],
)
def test_numbers_as_exported(text: str, separator: str, expected: str) -> None:
    parsed = parse_number_cell(text, row=7, column="Cost", decimal_separator=separator)
    assert parsed == D(expected)


@pytest.mark.parametrize(
    ("text", "separator"),
    [
        ("1,23.4", "."),  # a thousands group of two digits
        ("12,34", "."),  # a decimal comma in a point file
        ("1.234,56", "."),
        ("1,234.56", ","),
        ("--", "."),
        ("", "."),
        ("€12", "."),
        ("12 EUR", "."),
        ("1e3", "."),
        ("NaN", "."),
        ("1.2.3", "."),
    ],
)
def test_numbers_that_are_not_amounts(text: str, separator: str) -> None:
    with pytest.raises(CostFileError) as caught:
        parse_number_cell(text, row=7, column="Cost", decimal_separator=separator)
    assert caught.value.row == 7 and caught.value.column == "Cost"
    assert caught.value.message.startswith("row 7, column 'Cost': ")


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value=0, max_value=D("999999999.99"), places=2))
def test_thousands_formatting_round_trips_exactly(amount: Decimal) -> None:
    # An independent writer: Python's own grouping, then the European style by swapping.
    point = f"{amount:,.2f}"
    comma = point.replace(",", " ").replace(".", ",")
    assert parse_number_cell(point, row=2, column="c") == amount
    assert parse_number_cell(comma, row=2, column="c", decimal_separator=",") == amount


def test_spend_rules() -> None:
    assert check_spend("12.345678", where="w", field="spend") == D("12.345678")
    assert check_spend(12, where="w", field="spend") == D(12)
    assert str(check_spend("-0", where="w", field="spend")) == "0"
    for bad, reason in [
        (1.5, "float"),
        ("-0.01", "negative"),
        ("0.0000001", "decimals"),
        ("1000000000000", "not below"),
        ("abc", "not a number"),
    ]:
        with pytest.raises(CostFileError, match=reason) as caught:
            check_spend(bad, where="rows[3].spend", field="rows[3].spend", row=3)
        assert caught.value.field == "rows[3].spend"
        assert caught.value.message.startswith("rows[3].spend: ")


def test_source_names() -> None:
    assert check_source(" Google_Ads:123-456-7890 ") == "google_ads:123-456-7890"
    for bad in ["", "tik tok", "-ads", "a" * 65, "ads/1"]:
        with pytest.raises(ValidationError) as caught:
            check_source(bad)
        assert caught.value.field == "source"


def test_import_period_defaults_to_the_rows_and_checks_bounds() -> None:
    days = [date(2026, 1, 3), date(2026, 1, 1)]
    period = import_period(days)
    assert (period.start, period.end, period.days) == (date(2026, 1, 1), date(2026, 1, 3), 3)
    wider = import_period(days, date(2025, 12, 1), None)
    assert (wider.start, wider.end) == (date(2025, 12, 1), date(2026, 1, 3))
    with pytest.raises(ValidationError, match="after end_date"):
        import_period(days, date(2026, 2, 1), date(2026, 1, 1))
    with pytest.raises(ValidationError, match="spans"):
        import_period([date(2026, 1, 1), date(2206, 1, 1)])
    with pytest.raises(ValidationError, match="no cost rows"):
        import_period([])


def _line(row: int, day: int, spend: str, currency: str = "EUR", name: str = "x") -> CostLine:
    return CostLine(row, name, date(2026, 1, day), D(spend), currency)


def _describe(line: CostLine) -> tuple[str, str]:
    return f"row {line.row}, column 'Campaign'", "Campaign"


def test_aggregation_sums_platform_campaigns_mapped_to_one() -> None:
    lines = [
        (_line(2, 1, "10.10", name="Brand EN"), "cmp_a"),
        (_line(3, 1, "5.05", name="Brand DE"), "cmp_a"),
        (_line(4, 2, "1.00", name="Brand EN"), "cmp_a"),
        (_line(5, 1, "7", name="Other"), "cmp_b"),
    ]
    rows = aggregate_rows(lines, "google_ads", _describe)
    assert rows == [
        CostRow(date(2026, 1, 1), "cmp_a", "google_ads", D("15.15"), "EUR"),
        CostRow(date(2026, 1, 1), "cmp_b", "google_ads", D("7"), "EUR"),
        CostRow(date(2026, 1, 2), "cmp_a", "google_ads", D("1.00"), "EUR"),
    ]


def test_aggregation_refuses_two_currencies_for_one_campaign_and_day() -> None:
    lines = [(_line(2, 1, "1"), "cmp_a"), (_line(9, 1, "1", currency="USD"), "cmp_a")]
    with pytest.raises(ValidationError) as caught:
        aggregate_rows(lines, "s", _describe)
    assert caught.value.field == "Campaign"
    assert caught.value.message.startswith("row 9, column 'Campaign'")
    assert "row 2" in caught.value.message


def test_spend_in_converts_at_the_rate_of_the_day() -> None:
    rates = RateTable(
        [
            ExchangeRate("EUR", "USD", D("1.0412"), datetime(2026, 1, 1, tzinfo=UTC)),
            ExchangeRate("EUR", "USD", D("1.0389"), datetime(2026, 1, 2, tzinfo=UTC)),
        ]
    )
    day1 = CostRow(date(2026, 1, 1), "cmp", "meta_ads", D("84.12"), "EUR")
    day2 = CostRow(date(2026, 1, 2), "cmp", "meta_ads", D("91.37"), "EUR")
    # 84.12 * 1.0412 = 87.585744; 91.37 * 1.0389 = 94.924293 (by hand).
    assert spend_in(day1, "USD", rates) == Money(D("87.585744"), "USD")
    assert spend_in(day2, "USD", rates) == Money(D("94.924293"), "USD")
    assert spend_in(day1, "EUR", rates) == Money(D("84.12"), "EUR")
    before = CostRow(date(2025, 12, 31), "cmp", "meta_ads", D("1"), "EUR")
    with pytest.raises(RateNotFoundError):
        spend_in(before, "USD", rates)
    # Noon of 2 January in Auckland (UTC+13) is 23:00 UTC on 1 January: that day's rate.
    auckland = ZoneInfo("Pacific/Auckland")
    assert spend_in(day2, "USD", rates, zone=auckland) == Money(D("95.134444"), "USD")
    # ... and in Los Angeles (UTC-8) it is 20:00 UTC on 2 January.
    los_angeles = ZoneInfo("America/Los_Angeles")
    assert spend_in(day2, "USD", rates, zone=los_angeles) == Money(D("94.924293"), "USD")
