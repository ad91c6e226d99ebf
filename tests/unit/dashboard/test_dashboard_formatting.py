"""How the pages write numbers: money rounded half-even per currency, changes, metrics."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmark.dashboard.rendering import (
    format_change,
    format_metric,
    format_money,
    format_number,
    navigation,
)
from perfmark.domain.accounts import Role


@pytest.mark.parametrize(
    ("value", "currency", "shown"),
    [
        (Decimal("2.345"), "USD", "2.34 USD"),  # half-even: 4 is even
        (Decimal("2.355"), "USD", "2.36 USD"),
        (Decimal("1234567.5"), "USD", "1,234,567.50 USD"),
        (Decimal("100.5"), "JPY", "100 JPY"),  # no minor unit; 100 is even
        (Decimal("101.5"), "JPY", "102 JPY"),
        (Decimal("1.0005"), "KWD", "1.000 KWD"),  # fils: three places
        (27, "USD", "27.00 USD"),
        (None, "USD", "–"),
    ],
)
def test_money_is_rounded_half_even_to_the_currency_minor_unit(
    value: object, currency: str, shown: str
) -> None:
    assert format_money(value, currency) == shown


@pytest.mark.parametrize(
    ("change", "shown"),
    [(Decimal("0.35"), "+35.0 %"), (Decimal("-0.325"), "−32.5 %"), (Decimal(0), "±0.0 %"),
     (Decimal("2.3333333"), "+233.3 %"), (None, "n/a")],
)  # fmt: skip
def test_changes_are_signed_percentages(change: Decimal | None, shown: str) -> None:
    assert format_change(change) == shown


def test_metrics_read_as_their_kind() -> None:
    assert format_metric(Decimal("0.25"), "conversion_rate") == "25.00 %"
    assert format_metric(Decimal("3.703704"), "roas") == "3.70×"
    assert format_metric(Decimal("13.5"), "cpa", "EUR") == "13.50 EUR"
    assert format_metric(1234, "clicks") == "1,234"
    assert format_metric(None, "roas") == "–"


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value=-(10**9), max_value=10**9, places=6, allow_nan=False))
def test_money_text_is_the_half_even_rounding_of_the_value(value: Decimal) -> None:
    shown = format_money(value, "USD")
    number = Decimal(shown.removesuffix(" USD").replace(",", ""))
    assert number == value.quantize(Decimal("0.01"), rounding="ROUND_HALF_EVEN")
    assert abs(number - value) <= Decimal("0.005")


@given(st.integers(min_value=0, max_value=10**12))
def test_counts_keep_every_digit(value: int) -> None:
    assert int(format_number(value).replace(",", "")) == value


def test_each_role_sees_only_its_pages_in_the_menu() -> None:
    def keys(role: Role) -> list[str]:
        return [item.key for item in navigation(role)]

    assert keys(Role.OWNER) == [
        "overview", "campaigns", "reports", "attribution", "conversions", "publishers",
        "advertisers", "settings",
    ]  # fmt: skip
    assert keys(Role.ADVERTISER) == ["overview", "campaigns", "reports", "conversions", "invoices"]
    assert keys(Role.PUBLISHER) == ["overview", "links", "reports", "payouts", "postback"]
