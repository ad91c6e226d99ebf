"""Money: exact arithmetic, half-even rounding to minor units, floats and mixed currencies refused."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmark.money import (
    MAX_AMOUNT_DIGITS,
    CurrencyError,
    Money,
    MoneyError,
    currency_exponent,
    is_currency,
    normalize_currency,
    parse_amount,
)

#: Amounts with up to 6 decimal places, as prices per impression have, far below the bound.
amounts = st.decimals(
    min_value=Decimal("-1e12"),
    max_value=Decimal("1e12"),
    places=6,
    allow_nan=False,
    allow_infinity=False,
)
#: Up to 17 integer and 30 fractional digits: sums need up to 48 digits, beyond Decimal's
#: default 28, which Money must not round to.
wide_amounts = st.decimals(
    min_value=-Decimal("9" * 17),
    max_value=Decimal("9" * 17),
    places=30,
    allow_nan=False,
    allow_infinity=False,
)


def usd(text: str) -> Money:
    return Money.of(text, "USD")


# --- exactness ------------------------------------------------------------------------------


@settings(max_examples=200)
@given(amounts, amounts)
def test_adding_then_subtracting_gives_back_the_same_amount(a: Decimal, b: Decimal) -> None:
    assert Money(a, "USD") + Money(b, "USD") - Money(b, "USD") == Money(a, "USD")


@settings(max_examples=200)
@given(wide_amounts, wide_amounts)
def test_add_and_subtract_stay_exact_beyond_decimals_default_28_digits(
    a: Decimal, b: Decimal
) -> None:
    total = Money(a, "EUR") + Money(b, "EUR")
    # Fractions are exact rationals: an independent oracle for the sum.
    assert Fraction(total.amount) == Fraction(a) + Fraction(b)
    assert (total - Money(b, "EUR")).amount == a


def test_a_sum_that_needs_more_than_28_digits_is_not_rounded() -> None:
    big = usd("12345678901234567.12")
    tiny = usd("0.000000000000000000000001")
    total = big + tiny
    assert total.amount == Decimal("12345678901234567.120000000000000000000001")
    assert total - tiny == big


@settings(max_examples=50)
@given(st.lists(amounts, min_size=1, max_size=200))
def test_sums_of_many_amounts_never_drift(values: list[Decimal]) -> None:
    total = Money.zero("USD")
    for value in values:
        total = total + Money(value, "USD")
    assert Fraction(total.amount) == sum((Fraction(v) for v in values), Fraction(0))


def test_ten_thousand_tenths_of_a_cent_sum_to_exactly_ten_dollars() -> None:
    total = Money.zero("USD")
    for _ in range(10_000):
        total = total + usd("0.001")
    assert total == usd("10")
    assert total.to_minor() == 1000


def test_multiplication_is_exact() -> None:
    assert usd("0.1") * 3 == usd("0.3")
    assert 3 * usd("0.1") == usd("0.3")
    assert usd("19.99") * Decimal("0.15") == usd("2.9985")


@pytest.mark.parametrize("factor", [1.5, True, "2", Fraction(1, 3)])
def test_multiplying_by_anything_but_decimal_or_int_is_refused(factor: object) -> None:
    with pytest.raises(TypeError, match="Decimal or int"):
        usd("1") * factor  # type: ignore[operator]


def test_multiplying_money_by_money_is_refused() -> None:
    with pytest.raises(TypeError):
        usd("2") * usd("3")  # type: ignore[operator]


def test_an_operation_that_cannot_be_exact_raises_instead_of_rounding() -> None:
    with pytest.raises(MoneyError, match="not exact"):
        usd("1") + usd("1e-100")


# --- minor units ----------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "digits"), [("USD", 2), ("EUR", 2), ("JPY", 0), ("KWD", 3)])
def test_currency_exponents(code: str, digits: int) -> None:
    assert currency_exponent(code) == digits


@settings(max_examples=150)
@given(
    st.integers(min_value=-(10**15), max_value=10**15),
    st.sampled_from(["USD", "JPY", "KWD"]),
)
def test_from_minor_to_minor_round_trip(minor: int, code: str) -> None:
    money = Money.from_minor(minor, code)
    assert money.to_minor() == minor
    assert money.amount == Decimal(minor) / Decimal(10) ** currency_exponent(code)


@pytest.mark.parametrize(
    ("minor", "code", "amount"),
    [(1234, "USD", "12.34"), (1234, "JPY", "1234"), (1234, "KWD", "1.234"), (-5, "USD", "-0.05")],
)
def test_from_minor_places_the_decimal_point_by_currency(
    minor: int, code: str, amount: str
) -> None:
    assert Money.from_minor(minor, code).amount == Decimal(amount)


@pytest.mark.parametrize("minor", [1.5, True, "12", Decimal(3)])
def test_from_minor_takes_only_whole_ints(minor: object) -> None:
    with pytest.raises(MoneyError, match="minor units"):
        Money.from_minor(minor, "USD")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("amount", "code", "rounded"),
    [
        ("0.125", "USD", "0.12"),  # half to even: down to the even cent
        ("0.135", "USD", "0.14"),  # half to even: up to the even cent
        ("0.1251", "USD", "0.13"),  # above half: up
        ("-0.125", "USD", "-0.12"),
        ("2.5", "JPY", "2"),
        ("3.5", "JPY", "4"),
        ("0.0005", "KWD", "0.000"),
        ("0.0015", "KWD", "0.002"),
        ("7", "USD", "7.00"),
    ],
)
def test_rounding_is_half_even_to_the_minor_unit(amount: str, code: str, rounded: str) -> None:
    result = Money.of(amount, code).rounded()
    assert result.amount == Decimal(rounded)
    assert str(result.amount) == rounded  # quantized: exactly the minor-unit digits


def test_to_minor_rounds_half_even() -> None:
    assert usd("0.125").to_minor() == 12
    assert usd("0.135").to_minor() == 14
    assert Money.of("2.5", "JPY").to_minor() == 2


def test_half_even_does_not_drift_where_half_up_would() -> None:
    # 0.005, 0.015, ..., 0.995: half-up would add half a cent per value; half-even balances.
    values = [usd(f"0.{n:02d}5") for n in range(100)]
    exact_total = sum((v.amount for v in values), Decimal(0))
    rounded_total = sum((Decimal(v.to_minor()) for v in values), Decimal(0)) / 100
    assert exact_total == Decimal("50.000")
    assert rounded_total == Decimal("50.00")


def test_str_shows_the_rounded_amount_and_currency() -> None:
    assert str(usd("12.345")) == "12.34 USD"
    assert str(Money.of("1234", "JPY")) == "1234 JPY"


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1.5, 0.1, True, False])
def test_floats_and_bools_are_refused(value: object) -> None:
    with pytest.raises(MoneyError, match="float"):
        parse_amount(value, field="daily_budget")
    with pytest.raises(MoneyError):
        Money(value, "USD")  # type: ignore[arg-type]


def test_refusal_names_the_field() -> None:
    with pytest.raises(MoneyError, match=r"^daily_budget: 1\.5 is a float"):
        parse_amount(1.5, field="daily_budget")


@pytest.mark.parametrize("value", ["abc", "", "  ", "1,5", "NaN", "Infinity", "-inf", None, [1]])
def test_non_numbers_and_non_finite_values_are_refused(value: object) -> None:
    with pytest.raises(MoneyError):
        parse_amount(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("12.50", Decimal("12.50")), (" 3 ", Decimal(3)), (7, Decimal(7)), (Decimal("-1"), -1)],
)
def test_exact_representations_are_accepted(value: object, expected: Decimal) -> None:
    assert parse_amount(value) == expected


def test_amounts_at_or_above_the_bound_are_refused() -> None:
    below = Decimal(10) ** MAX_AMOUNT_DIGITS - 1
    assert parse_amount(below) == below
    for too_big in (Decimal(10) ** MAX_AMOUNT_DIGITS, "1e30", -(10**20), 10**5000):
        with pytest.raises(MoneyError, match="too large"):
            parse_amount(too_big)


def test_a_huge_input_gives_a_short_message() -> None:
    with pytest.raises(MoneyError) as caught:
        parse_amount("x" * 100_000)
    assert len(str(caught.value)) < 200


def test_mixing_currencies_is_refused() -> None:
    eur = Money.of("1", "EUR")
    for operation in (
        lambda: usd("1") + eur,
        lambda: usd("1") - eur,
        lambda: usd("1") < eur,
        lambda: usd("1") <= eur,
        lambda: usd("1") > eur,
        lambda: usd("1") >= eur,
    ):
        with pytest.raises(MoneyError, match="cannot combine USD with EUR"):
            operation()


def test_money_with_something_else_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        usd("1") + Decimal(1)  # type: ignore[operator]


def test_equal_currencies_compare_by_amount() -> None:
    assert usd("1.5") < usd("2")
    assert usd("2.00") == usd("2")
    assert hash(usd("2.00")) == hash(usd("2"))
    assert usd("2") >= usd("2.0")
    assert usd("1") != Money.of("1", "EUR")


# --- currencies -----------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["XYZ", "US", "USDD", "", "dollars"])
def test_unknown_currency_is_refused_with_a_message_naming_it(code: str) -> None:
    with pytest.raises(CurrencyError) as caught:
        Money.of("1", code)
    assert repr(code) in str(caught.value)
    assert "ISO 4217" in str(caught.value)


@pytest.mark.parametrize("code", [None, 840, b"USD"])
def test_non_text_currency_is_a_currency_error(code: object) -> None:
    with pytest.raises(CurrencyError):
        normalize_currency(code)  # type: ignore[arg-type]


def test_currency_is_normalized_to_upper_case() -> None:
    assert normalize_currency(" eur ") == "EUR"
    assert Money.of("1", "jpy").currency == "JPY"


def test_is_currency_is_strict_about_case_and_length() -> None:
    assert is_currency("USD")
    assert not is_currency("usd")
    assert not is_currency("USDX")
    assert not is_currency("ZZZ")


def test_zero_and_negation() -> None:
    assert Money.zero("KWD").is_zero()
    assert not usd("0.01").is_zero()
    assert -usd("1.25") == usd("-1.25")
