"""Money without floats: a `Decimal` amount with its ISO 4217 currency beside it.

Rounding rule (documented in docs/architecture.md): amounts are computed exactly in
`Decimal` and rounded to the currency's minor unit only when they become ledger
entries, with ROUND_HALF_EVEN ("banker's rounding", which does not drift upward over
many entries).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache

from iso4217 import Currency as _IsoCurrency

__all__ = [
    "CurrencyError",
    "Money",
    "MoneyError",
    "currency_exponent",
    "is_currency",
    "normalize_currency",
    "parse_amount",
]


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


def parse_amount(value: object, *, field: str = "amount") -> Decimal:
    """Turn a string, int or Decimal into an exact Decimal; floats are refused."""
    if isinstance(value, bool | float):
        raise MoneyError(f'{field}: {value!r} is a float; send amounts as strings such as "12.50"')
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int | str):
        try:
            amount = Decimal(str(value).strip())
        except InvalidOperation:
            raise MoneyError(f"{field}: {value!r} is not a number; send a decimal string") from None
    else:
        raise MoneyError(f"{field}: {value!r} is not an amount; send a decimal string")
    if not amount.is_finite():
        raise MoneyError(f"{field}: {value!r} is not a finite amount")
    return amount


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
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __mul__(self, factor: Decimal | int) -> Money:
        if isinstance(factor, float):
            raise TypeError("multiply Money by a Decimal or int, never a float")
        return Money(self.amount * factor, self.currency)

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
