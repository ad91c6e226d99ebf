"""Cost export layouts: the sample files parse to hand-computed rows; bad files name row and column."""

from __future__ import annotations

import codecs
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from perfmark.costs.domain import CostFileError, GenericMapping, Layout, parse_cost_file
from perfmark.errors import ValidationError

DATA = Path(__file__).resolve().parents[2] / "data" / "costs"
D = Decimal


def _sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


def _by_campaign(lines: object) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for line in lines:  # type: ignore[attr-defined]
        totals[line.campaign] = totals.get(line.campaign, D(0)) + line.spend
    return totals


GENERIC_SAMPLE_MAPPING = GenericMapping(
    campaign_column="Kampagne",
    date_column="Datum",
    spend_column="Kosten",
    currency="EUR",
    date_format="%d.%m.%Y",
    decimal_separator=",",
)


# ---- the sample files ----------------------------------------------------------------------


def test_google_ads_sample_rows_totals_and_stated_period() -> None:
    parsed = parse_cost_file(_sample("google_ads_campaign_report.csv"), Layout.GOOGLE_ADS)
    assert parsed.source == "google_ads"
    assert (parsed.campaign_column, parsed.date_column) == ("Campaign", "Day")
    assert parsed.stated_period is not None
    assert (parsed.stated_period.start, parsed.stated_period.end) == (
        date(2026, 1, 1),
        date(2026, 1, 3),
    )
    # Nine data rows; the three "Total:" rows at the end are not costs.
    assert len(parsed.lines) == 9
    first = parsed.lines[0]
    assert (first.row, first.campaign, first.day, first.spend, first.currency) == (
        4,
        "Brand - Search",
        date(2026, 1, 1),
        D("1204.50"),
        "EUR",
    )
    # Hand sums: 1204.50+987.25+1310.05; 2450.00+2312.40+2598.77; 0+156.33+412.90.
    assert _by_campaign(parsed.lines) == {
        "Brand - Search": D("3501.80"),
        "Generic - Shoes DE": D("7361.17"),
        "PMax - Catalog": D("569.23"),
    }
    assert sum(line.spend for line in parsed.lines) == D("11432.20")  # the file's Total: Account


def test_meta_ads_sample_rows_and_totals() -> None:
    parsed = parse_cost_file(_sample("meta_ads_export.csv"), Layout.META_ADS)
    assert parsed.source == "meta_ads"
    assert parsed.campaign_column == "Campaign name"
    assert len(parsed.lines) == 6
    assert {line.currency for line in parsed.lines} == {"EUR"}  # from "Amount spent (EUR)"
    assert [line.day for line in parsed.lines[:3]] == [
        date(2026, 1, 1),
        date(2026, 1, 2),
        date(2026, 1, 3),
    ]
    assert _by_campaign(parsed.lines) == {
        "Retargeting - Cart": D("252.54"),  # 84.12 + 91.37 + 77.05
        "Prospecting - Lookalike 1%": D("1813.55"),  # 310.50 + 298.44 + 1204.61
    }


def test_generic_sample_with_decimal_comma_and_day_first_dates() -> None:
    parsed = parse_cost_file(_sample("generic.csv"), Layout.GENERIC, GENERIC_SAMPLE_MAPPING)
    assert [(line.campaign, line.day, line.spend) for line in parsed.lines] == [
        ("Spring Shoes", date(2026, 1, 1), D("1250.40")),
        ("Spring Shoes", date(2026, 1, 2), D("980.10")),
        ("Brand - Search", date(2026, 1, 1), D("75.00")),
        ("Brand - Search", date(2026, 1, 2), D("0.99")),
    ]
    assert {line.currency for line in parsed.lines} == {"EUR"}
    assert sum(line.spend for line in parsed.lines) == D("2306.49")


def test_generic_default_mapping_reads_campaign_date_spend_currency() -> None:
    text = "Campaign,Date,Spend,Currency\nSpring,2026-02-01,12.5,usd\nSpring,2026-02-02,0,USD\n"
    parsed = parse_cost_file(text.encode(), Layout.GENERIC)
    assert [(line.row, line.day, line.spend, line.currency) for line in parsed.lines] == [
        (2, date(2026, 2, 1), D("12.5"), "USD"),
        (3, date(2026, 2, 2), D("0"), "USD"),
    ]
    assert parsed.stated_period is None


def test_google_ads_excel_export_in_utf16_with_tabs() -> None:
    text = (
        "Campaign report\n"
        "January 1, 2026 - January 1, 2026\n"
        "Campaign\tDay\tCurrency code\tCost\n"
        "Brand - Search\tJan 1, 2026\tEUR\t1,204.50\n"
        "Total: Account\t--\tEUR\t1,204.50\n"
    )
    data = codecs.BOM_UTF16_LE + text.encode("utf-16-le")
    parsed = parse_cost_file(data, Layout.GOOGLE_ADS)
    assert [(line.day, line.spend) for line in parsed.lines] == [(date(2026, 1, 1), D("1204.50"))]


def test_utf8_byte_order_mark_is_ignored() -> None:
    data = codecs.BOM_UTF8 + b"campaign,date,spend,currency\nA,2026-01-01,1.00,EUR\n"
    assert parse_cost_file(data, Layout.GENERIC).lines[0].spend == D("1.00")


def test_meta_export_with_a_day_column_uses_it() -> None:
    text = (
        "Day,Campaign name,Reporting starts,Reporting ends,Amount spent (USD)\n"
        "2026-01-02,Summer,2026-01-01,2026-01-07,19.99\n"
    )
    (line,) = parse_cost_file(text.encode(), Layout.META_ADS).lines
    assert (line.day, line.spend, line.currency) == (date(2026, 1, 2), D("19.99"), "USD")


def test_quoted_campaign_names_with_commas_and_quotes() -> None:
    text = 'campaign,date,spend,currency\n"Shoes, ""best"" sellers",2026-01-01,3,EUR\n'
    assert parse_cost_file(text.encode(), Layout.GENERIC).lines[0].campaign == (
        'Shoes, "best" sellers'
    )


# ---- malformed files: the error names the row and the column --------------------------------


def _error(data: bytes, layout: Layout, mapping: GenericMapping | None = None) -> CostFileError:
    with pytest.raises(CostFileError) as caught:
        parse_cost_file(data, layout, mapping)
    return caught.value


def test_missing_column_names_the_header_row_and_the_column() -> None:
    text = "Campaign report\nCampaign,Day,Cost\nBrand,2026-01-01,1.00\n"
    error = _error(text.encode(), Layout.GOOGLE_ADS)
    assert (error.row, error.column, error.field) == (2, "Currency code", "Currency code")
    assert "row 2" in error.message and "'Currency code'" in error.message
    assert "'Campaign', 'Day', 'Cost'" in error.message  # what the header has instead


def test_file_that_is_not_the_layout_names_the_expected_columns() -> None:
    error = _error(b"foo,bar\n1,2\n", Layout.META_ADS)
    assert "Campaign name" in error.message and error.column == "Campaign name"


def test_bad_number_names_row_and_column() -> None:
    data = _sample("google_ads_campaign_report.csv").replace(b'"2,312.40"', b'"2,31.40"')
    error = _error(data, Layout.GOOGLE_ADS)
    assert (error.row, error.column) == (8, "Cost")
    assert error.message.startswith("row 8, column 'Cost': '2,31.40' is not an amount")


def test_negative_spend_is_refused_with_its_row() -> None:
    text = "campaign,date,spend,currency\nA,2026-01-01,1,EUR\nA,2026-01-02,-4.00,EUR\n"
    error = _error(text.encode(), Layout.GENERIC)
    assert (error.row, error.column) == (3, "spend")
    assert "negative" in error.message


def test_unknown_currency_names_row_and_column() -> None:
    data = _sample("google_ads_campaign_report.csv").replace(
        b"Brand - Search,2026-01-02,EUR", b"Brand - Search,2026-01-02,EUX"
    )
    error = _error(data, Layout.GOOGLE_ADS)
    assert (error.row, error.column) == (5, "Currency code")
    assert "'EUX'" in error.message and "ISO 4217" in error.message


def test_unknown_currency_in_the_meta_spend_header() -> None:
    data = _sample("meta_ads_export.csv").replace(b"Amount spent (EUR)", b"Amount spent (EUX)")
    error = _error(data, Layout.META_ADS)
    assert (error.row, error.column) == (1, "Amount spent (EUX)")


def test_meta_without_amount_spent_column() -> None:
    data = _sample("meta_ads_export.csv").replace(b"Amount spent (EUR)", b"Spend")
    error = _error(data, Layout.META_ADS)
    assert error.row == 1 and "Amount spent" in error.message


def test_meta_row_spanning_several_days_asks_for_a_daily_breakdown() -> None:
    text = "Campaign name,Reporting starts,Reporting ends,Amount spent (EUR)\nA,2026-01-01,2026-01-31,100\n"
    error = _error(text.encode(), Layout.META_ADS)
    assert (error.row, error.column) == (2, "Reporting ends")
    assert "By time > Day" in error.message


def test_bad_date_names_row_column_and_expected_form() -> None:
    data = _sample("meta_ads_export.csv").replace(
        b"2026-01-03,2026-01-03", b"2026-01-32,2026-01-32"
    )
    error = _error(data, Layout.META_ADS)
    assert (error.row, error.column) == (4, "Reporting starts")
    assert "'2026-01-32' is not a date like 2026-01-31" in error.message


def test_generic_date_format_is_shown_in_the_error() -> None:
    data = _sample("generic.csv").replace(b"02.01.2026;980", b"2026-01-02;980")
    error = _error(data, Layout.GENERIC, GENERIC_SAMPLE_MAPPING)
    assert (error.row, error.column) == (3, "Datum")
    assert "like 31.01.2026" in error.message


def test_empty_cell_names_row_and_column() -> None:
    text = "campaign,date,spend,currency\n,2026-01-01,1,EUR\n"
    error = _error(text.encode(), Layout.GENERIC)
    assert (error.row, error.column) == (2, "campaign")
    assert "empty" in error.message


def test_short_row_is_an_empty_cell_not_a_crash() -> None:
    text = "campaign,date,spend,currency\nA,2026-01-01\n"
    error = _error(text.encode(), Layout.GENERIC)
    assert (error.row, error.column) == (2, "spend")


def test_header_without_rows_is_refused() -> None:
    error = _error(b"campaign,date,spend,currency\n\n", Layout.GENERIC)
    assert "no data rows" in error.message


def test_empty_file_is_refused() -> None:
    error = _error(b"", Layout.GOOGLE_ADS)
    assert "no header row" in error.message


def test_not_utf8_names_the_row() -> None:
    data = "campaign,date,spend,currency\nCafé,2026-01-01,1,EUR\n".encode("latin-1")
    error = _error(data, Layout.GENERIC)
    assert error.row == 2 and "UTF-8" in error.message


def test_unterminated_quote_is_a_malformed_csv_error_with_its_row() -> None:
    text = 'campaign,date,spend,currency\nA,2026-01-01,1,EUR\n"B,2026-01-02,2,EUR\n'
    error = _error(text.encode(), Layout.GENERIC)
    assert error.row == 3 and "malformed" in error.message


def test_nul_bytes_are_refused() -> None:
    error = _error(b"campaign,date,spend,currency\nA\x00,2026-01-01,1,EUR\n", Layout.GENERIC)
    assert error.row == 2 and "NUL" in error.message


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"campaign_column": " "}, "campaign_column"),
        ({"currency": "XYZ"}, "currency"),
        ({"decimal_separator": ";"}, "decimal_separator"),
        ({"date_format": "YYYY-MM-DD"}, "date_format"),
    ],
)
def test_generic_mapping_is_validated(changes: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        GenericMapping(**changes)
    assert caught.value.field == field
