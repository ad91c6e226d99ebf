"""Billing-side pricing: pick the rule and payout tier for an event, quote it, convert currencies.

A quote is exact (`Decimal`, never rounded); rounding to minor units happens once, when the
quote becomes a ledger charge (`ledger.build_charge`, half-even per side). Clicks and
impressions are quoted per batch (`quantity`), so a CPM of 2.00 charges 0.002 per
impression exactly and the batch total is rounded once.
"""

from __future__ import annotations

import csv
import io
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from perfmark.clock import utc
from perfmark.domain.pricing import BillableEvent, Price, PricingRule, price_of
from perfmark.domain.rules import check_currency, check_decimal
from perfmark.errors import NotFoundError, ValidationError
from perfmark.money import CurrencyError, Money

from .minor_units import checked_currency

__all__ = [
    "ExchangeRate",
    "Quote",
    "RateNotFoundError",
    "RateTable",
    "check_rule_set",
    "parse_rates_csv",
    "quote_event",
    "select_rule",
]


def check_rule_set(rules: Sequence[PricingRule]) -> tuple[PricingRule, ...]:
    """Validate a campaign's rules at save time: at most one rule per (event, goal, publisher)."""
    seen: set[tuple[BillableEvent, str | None, str | None]] = set()
    for rule in rules:
        key = (rule.event, rule.goal_id, rule.publisher_id)
        if key in seen:
            who = f"publisher {rule.publisher_id}" if rule.publisher_id else "the campaign"
            what = f"goal {rule.goal_id}" if rule.goal_id else f"{rule.event.value}s"
            raise ValidationError(
                f"two pricing rules for {what} apply to {who}; keep one", field="pricing"
            )
        seen.add(key)
    return tuple(rules)


def select_rule(
    rules: Sequence[PricingRule],
    *,
    event: BillableEvent,
    goal_id: str | None,
    publisher_id: str | None,
) -> PricingRule:
    """The rule for this event: a rule for this publisher beats the campaign-wide one.

    Conversions match on `goal_id`; clicks and impressions have no goal. NotFoundError when
    neither a publisher override nor a campaign rule prices the event.
    """
    wanted_goal = goal_id if event is BillableEvent.CONVERSION else None
    campaign_rule: PricingRule | None = None
    for rule in rules:
        if rule.event is not event or rule.goal_id != wanted_goal:
            continue
        if rule.publisher_id is not None and rule.publisher_id == publisher_id:
            return rule
        if rule.publisher_id is None and campaign_rule is None:
            campaign_rule = rule
    if campaign_rule is None:
        what = f"goal {goal_id}" if event is BillableEvent.CONVERSION else f"{event.value}s"
        raise NotFoundError(
            f"no pricing rule prices {what} (publisher {publisher_id}); "
            "add a campaign rule or a publisher override",
            field="pricing",
        )
    return campaign_rule


class RateNotFoundError(NotFoundError):
    """No exchange rate is known for a currency pair at the time asked for."""


@dataclass(frozen=True, slots=True)
class ExchangeRate:
    """One unit of `base` is worth `rate` units of `quote` from `valid_from` on (until the next)."""

    base: str
    quote: str
    rate: Decimal
    valid_from: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "base", check_currency("base", self.base))
        object.__setattr__(self, "quote", check_currency("quote", self.quote))
        rate = check_decimal("rate", self.rate, exclusive_minimum=True)
        object.__setattr__(self, "rate", rate)
        object.__setattr__(self, "valid_from", utc(self.valid_from))
        if self.base == self.quote:
            raise ValidationError(
                f"a rate from {self.base} to itself is always 1; remove it", field="quote"
            )


class RateTable:
    """Exchange rates as data; `rate_at` is a pure lookup of the rate in force at an instant."""

    def __init__(self, rates: Iterable[ExchangeRate], *, max_age: timedelta | None = None) -> None:
        by_pair: dict[tuple[str, str], list[ExchangeRate]] = {}
        for rate in rates:
            by_pair.setdefault((rate.base, rate.quote), []).append(rate)
        self._rates: dict[tuple[str, str], tuple[list[datetime], list[Decimal]]] = {}
        for pair, items in by_pair.items():
            items.sort(key=lambda item: item.valid_from)
            starts = [item.valid_from for item in items]
            if len(set(starts)) != len(starts):
                raise ValidationError(
                    f"two {pair[0]}->{pair[1]} rates start at the same instant; keep one",
                    field="valid_from",
                )
            self._rates[pair] = (starts, [item.rate for item in items])
        self._max_age = max_age

    def _direct(self, base: str, quote: str, at: datetime) -> tuple[datetime, Decimal] | None:
        table = self._rates.get((base, quote))
        if table is None:
            return None
        starts, values = table
        index = bisect_right(starts, at) - 1
        if index < 0:
            return None
        return starts[index], values[index]

    def rate_at(self, base: str, quote: str, at: datetime) -> Decimal:
        """Units of `quote` per unit of `base` in force at `at` (direct pair, else the inverse).

        An inverse rate is 1/rate in Decimal's default 28 significant digits.
        """
        base = check_currency("base", base)
        quote = check_currency("quote", quote)
        if base == quote:
            return Decimal(1)
        at = utc(at)
        found = self._direct(base, quote, at)
        inverse = False
        if found is None:
            found = self._direct(quote, base, at)
            inverse = True
        if found is None:
            raise RateNotFoundError(
                f"no {base}->{quote} exchange rate is known at {at.isoformat()}; "
                "import rates that start at or before that time",
                field="currency",
            )
        valid_from, rate = found
        if self._max_age is not None and at - valid_from > self._max_age:
            raise RateNotFoundError(
                f"the newest {base}->{quote} rate before {at.isoformat()} is from "
                f"{valid_from.isoformat()}, older than the allowed {self._max_age}; "
                "import a fresher rate",
                field="currency",
            )
        return Decimal(1) / rate if inverse else rate

    def convert(self, amount: Money, currency: str, at: datetime) -> Money:
        """`amount` in `currency` at the rate in force at `at`, exact (unrounded)."""
        return Money(amount.amount * self.rate_at(amount.currency, currency, at), currency)


_RATE_COLUMNS = ("base", "quote", "rate", "valid_from")


def parse_rates_csv(text: str) -> list[ExchangeRate]:
    """Read rates from CSV with a header `base,quote,rate,valid_from` (ISO 8601 instants)."""
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or tuple(reader.fieldnames) != _RATE_COLUMNS:
        raise ValidationError(
            f"rates CSV header is {reader.fieldnames}; it must be {','.join(_RATE_COLUMNS)}",
            field="rates",
        )
    rates: list[ExchangeRate] = []
    for line_number, row in enumerate(reader, start=2):
        try:
            valid_from = datetime.fromisoformat(row["valid_from"] or "")
            rate = check_decimal("rate", row["rate"] or "", exclusive_minimum=True)
            rates.append(ExchangeRate(row["base"] or "", row["quote"] or "", rate, valid_from))
        except (ValueError, ValidationError) as exc:
            raise ValidationError(
                f"rates CSV line {line_number}: {exc}; fix the row and import again",
                field="rates",
            ) from None
    return rates


@dataclass(frozen=True, slots=True)
class Quote:
    """What one billable event (or batch) costs the advertiser and earns the publisher, exactly."""

    rule: PricingRule
    earns: Price
    cost: Money
    payout: Money
    quantity: int
    #: The conversion value in the campaign currency (None for clicks and impressions).
    value: Money | None = None
    #: The payout the rule asked for, when it was above the cost and cut down to it.
    uncapped_payout: Money | None = None

    @property
    def margin(self) -> Money:
        """The platform's exact share: cost minus payout (negative only if explicitly allowed)."""
        return self.cost - self.payout


def quote_event(
    rules: Sequence[PricingRule],
    *,
    event: BillableEvent,
    currency: str,
    at: datetime,
    goal_id: str | None = None,
    publisher_id: str | None = None,
    value: Money | None = None,
    volume_this_month: int = 1,
    quantity: int = 1,
    rates: RateTable | None = None,
    allow_negative_margin: bool = False,
) -> Quote:
    """Price one event (or a batch of `quantity` clicks/impressions) in the campaign `currency`.

    `volume_this_month` is the publisher's count of events priced by the chosen rule in the
    current month *including this one*, and picks the payout tier (each event is paid at the
    tier reached when it happens; earlier events are not repriced). A conversion `value` in
    another currency is converted at the rate in force at `at`. Revenue-share and hybrid
    prices need a value (pass a zero value for a conversion that is known to have none).

    Unless `allow_negative_margin`, the payout is capped at the cost (`uncapped_payout` then
    says what the rule asked for). A campaign refuses such pricing when it is saved, so the
    cap only acts on rules that were never checked that way.
    """
    try:
        currency = checked_currency(currency)
    except CurrencyError:
        currency = check_currency("currency", currency)  # raises, naming the field
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise ValidationError(f"quantity is {quantity!r}; it must be 1 or more", field="quantity")
    if event is BillableEvent.CONVERSION and quantity != 1:
        raise ValidationError("conversions are priced one at a time", field="quantity")
    if volume_this_month < 1:
        raise ValidationError(
            f"volume_this_month is {volume_this_month}; it counts this event, so it is 1 or more",
            field="volume_this_month",
        )
    rule = select_rule(rules, event=event, goal_id=goal_id, publisher_id=publisher_id)
    earns = rule.earns_at_volume(volume_this_month)
    needs_value = bool(rule.pays.percent or earns.percent)
    converted: Money | None = None
    if value is not None:
        if value.amount < 0:
            raise ValidationError(
                f"conversion value is {value}; it must not be negative (report a refund instead)",
                field="value",
            )
        if value.currency != currency:
            if rates is None:
                raise RateNotFoundError(
                    f"conversion value is in {value.currency} but the campaign bills in "
                    f"{currency}, and no rates table was given",
                    field="currency",
                )
            value = rates.convert(value, currency, at)
        converted = value
    elif needs_value:
        raise ValidationError(
            f"the {rule.pays.model.value}/{earns.model.value} price takes a share of the "
            "conversion value, and this conversion has none; send its value (0 if it has none)",
            field="value",
        )
    cost = price_of(rule.pays, currency, converted)
    payout = price_of(earns, currency, converted)
    if quantity != 1:
        cost, payout = cost * quantity, payout * quantity
    uncapped: Money | None = None
    if payout > cost and not allow_negative_margin:
        uncapped, payout = payout, cost
    return Quote(
        rule=rule,
        earns=earns,
        cost=cost,
        payout=payout,
        quantity=quantity,
        value=converted,
        uncapped_payout=uncapped,
    )
