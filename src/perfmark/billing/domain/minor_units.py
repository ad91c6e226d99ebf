"""Cached currency checks and half-even rounding to minor units for billing's hot loop.

`perfmark.money` validates a currency against ISO 4217 on every `Money` it builds; a
profile of bench/billing.py showed those checks were a third of the time of one posted
conversion. These helpers give the same answers with the lookups cached per currency.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache

from perfmark.money import Money, currency_exponent, normalize_currency

__all__ = ["checked_currency", "minor_exponent", "round_to_minor"]


@lru_cache(maxsize=512)
def checked_currency(code: str) -> str:
    """`normalize_currency`, cached: the upper-case ISO 4217 code or a CurrencyError."""
    return normalize_currency(code)


@lru_cache(maxsize=512)
def _quantum(currency: str) -> tuple[Decimal, int]:
    exponent = currency_exponent(currency)
    return Decimal(1).scaleb(-exponent), exponent


def minor_exponent(currency: str) -> int:
    """Digits of the currency's minor unit (USD 2, JPY 0, KWD 3), cached."""
    return _quantum(currency)[1]


def round_to_minor(amount: Money) -> int:
    """The amount in integer minor units, rounded half to even (same as `Money.to_minor`)."""
    quantum, exponent = _quantum(amount.currency)
    return int(amount.amount.quantize(quantum, rounding=ROUND_HALF_EVEN).scaleb(exponent))
