"""Money without floats: a `Decimal` amount with its ISO 4217 currency beside it.

Rounding rule (documented in docs/architecture.md): amounts are computed exactly in
`Decimal` and rounded to the currency's minor unit only when they become ledger
entries, with ROUND_HALF_EVEN ("banker's rounding", which does not drift upward over
many entries).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, Inexact, InvalidOperation
from functools import lru_cache

from iso4217 import Currency as _IsoCurrency

__all__ = [
    "MAX_AMOUNT_DIGITS",
    "CurrencyError",
    "Money",
    "MoneyError",
    "currency_exponent",
    "is_currency",
    "normalize_currency",
    "parse_amount",
]


#: Amounts must be below 10**MAX_AMOUNT_DIGITS in absolute value. The bound keeps rounding
#: to minor units inside Decimal's precision (1e30 could not be quantized) and a whole
#: ledger's sums far from it; no real price, budget or balance comes near.
MAX_AMOUNT_DIGITS = 18
_AMOUNT_LIMIT = Decimal(10) ** MAX_AMOUNT_DIGITS
#: Longest rendering of a rejected input inside an error message, in characters.
_SHOWN_CHARS = 60

#: Money arithmetic runs in this context: wide enough for any sum of bounded amounts, and
#: an inexact result raises instead of being rounded silently at the default 28 digits.
_EXACT = Context(prec=80, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, Inexact])


class MoneyError(ValueError):
    """An amount or currency that cannot be used; the message says which and why."""


class CurrencyError(MoneyError):
    """A currency code that is not an active ISO 4217 code."""


@lru_cache(maxsize=512)
def _lookup(code: str) -> _IsoCurrency | None:
    try:
        return _IsoCurrency(code)
    except ValueError:
        return None


def is_currency(code: str) -> bool:
    """Whether `code` is an ISO 4217 currency code (upper-case, three letters)."""
    return len(code) == 3 and code.isupper() and _lookup(code) is not None


def normalize_currency(code: str) -> str:
    """Upper-case and check a currency code, raising `CurrencyError` when it is unknown."""
    if not isinstance(code, str):
        raise CurrencyError(f"{code!r} is not a currency code; use a three-letter code such as USD")
    normalized = code.strip().upper()
    if not is_currency(normalized):
        raise CurrencyError(
            f"{code!r} is not an ISO 4217 currency code; use a three-letter code such as USD or EUR"
        )
    return normalized


def currency_exponent(code: str) -> int:
    """Digits after the decimal point in the currency's minor unit (USD 2, JPY 0, KWD 3)."""
    currency = _lookup(normalize_currency(code))
    assert currency is not None
    exponent = currency.exponent
    return 2 if exponent is None else int(exponent)


def _shown(value: object) -> str:
    """A bounded repr for messages, so an absurd input does not become an absurd error."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."


def parse_amount(value: object, *, field: str = "amount") -> Decimal:
    """Turn a string, int or Decimal into an exact Decimal; floats are refused."""
    if isinstance(value, bool | float):
        raise MoneyError(f'{field}: {value!r} is a float; send amounts as strings such as "12.50"')
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)  # exact, and no str() of a huge int (Python caps its digits)
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            raise MoneyError(
                f"{field}: {_shown(value)} is not a number; send a decimal string"
            ) from None
    else:
        raise MoneyError(f"{field}: {_shown(value)} is not an amount; send a decimal string")
    if not amount.is_finite():
        raise MoneyError(f"{field}: {value!r} is not a finite amount")
    if amount.copy_abs() >= _AMOUNT_LIMIT:
        raise MoneyError(f"{field}: {amount:.6E} is too large; amounts must be below 10^18")
    return amount


def _exact(operation: str, left: Decimal, right: Decimal) -> Decimal:
    """`left <operation> right` computed exactly, or MoneyError when it cannot be."""
    try:
        result: Decimal = getattr(_EXACT, operation)(left, right)
    except (Inexact, InvalidOperation):
        raise MoneyError(
            f"{operation} of {left} and {right} is not exact to {_EXACT.prec} digits; "
            "round one amount first"
        ) from None
    return result


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount of one currency."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "amount", parse_amount(self.amount))
        object.__setattr__(self, "currency", normalize_currency(self.currency))

    @classmethod
    def of(cls, amount: object, currency: str) -> Money:
        """Build from any exact amount representation (`"12.50"`, `12`, `Decimal`)."""
        return cls(parse_amount(amount), currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), currency)

    @classmethod
    def from_minor(cls, minor_units: int, currency: str) -> Money:
        """Build from an integer count of minor units (cents for USD)."""
        if isinstance(minor_units, bool) or not isinstance(minor_units, int):
            raise MoneyError(f"minor_units: {minor_units!r} is not a whole number of minor units")
        exponent = currency_exponent(currency)
        return cls(Decimal(minor_units).scaleb(-exponent), currency)

    def _check(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise MoneyError(
                f"cannot combine {self.currency} with {other.currency}; convert one first"
            )

    def __add__(self, other: Money) -> Money:
        self._check(other)
        return Money(_exact("add", self.amount, other.amount), self.currency)

    def __sub__(self, other: Money) -> Money:
        self._check(other)
        return Money(_exact("subtract", self.amount, other.amount), self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __mul__(self, factor: Decimal | int) -> Money:
        if isinstance(factor, bool) or not isinstance(factor, Decimal | int):
            raise TypeError(
                f"multiply Money by a Decimal or int, not {type(factor).__name__} (never a float)"
            )
        return Money(_exact("multiply", self.amount, Decimal(factor)), self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: Money) -> bool:
        self._check(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._check(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._check(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._check(other)
        return self.amount >= other.amount

    def is_zero(self) -> bool:
        return self.amount == 0

    def rounded(self) -> Money:
        """Round to the currency's minor unit, half to even."""
        quantum = Decimal(1).scaleb(-currency_exponent(self.currency))
        return Money(self.amount.quantize(quantum, rounding=ROUND_HALF_EVEN), self.currency)

    def to_minor(self) -> int:
        """The amount in integer minor units, after rounding half to even."""
        return int(self.rounded().amount.scaleb(currency_exponent(self.currency)))

    def __str__(self) -> str:
        return f"{self.rounded().amount} {self.currency}"
