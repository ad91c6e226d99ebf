"""Offers (what is promoted, with landing pages) and goals (the conversion actions bought)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from perfmark.domain.rules import (
    check_currency,
    check_decimal,
    check_http_url,
    check_name,
    check_slug,
)
from perfmark.errors import ValidationError

__all__ = ["GoalKind", "GoalSpec", "OfferSpec", "WeightedUrl", "check_weighted"]


@dataclass(frozen=True)
class WeightedUrl:
    """A landing page or creative in a weighted rotation."""

    key: str
    url: str
    weight: int = 1
    name: str = ""

    def __post_init__(self) -> None:
        check_slug("key", self.key)
        check_http_url("url", self.url)
        if isinstance(self.weight, bool) or not isinstance(self.weight, int) or self.weight <= 0:
            raise ValidationError(
                f"weight of {self.key!r} is {self.weight!r}; weights are whole numbers above 0",
                field="weight",
            )


def check_weighted(field: str, items: tuple[WeightedUrl, ...]) -> tuple[WeightedUrl, ...]:
    """Keys in a rotation are unique."""
    keys = [item.key for item in items]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValidationError(f"{field} repeats key(s) {', '.join(duplicates)}", field=field)
    return tuple(items)


@dataclass(frozen=True)
class OfferSpec:
    """A product or service an advertiser promotes, reached through its landing pages."""

    name: str
    advertiser_id: str
    landing_pages: tuple[WeightedUrl, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", check_name("name", self.name))
        if not self.landing_pages:
            raise ValidationError("an offer needs at least one landing page", field="landing_pages")
        object.__setattr__(
            self, "landing_pages", check_weighted("landing_pages", tuple(self.landing_pages))
        )


class GoalKind(StrEnum):
    """The kind of conversion action."""

    LEAD = "lead"
    SALE = "sale"
    INSTALL = "install"
    SIGNUP = "signup"
    CUSTOM = "custom"


@dataclass(frozen=True)
class GoalSpec:
    """A conversion action: its key in postbacks and events, and what it is worth."""

    name: str
    key: str
    kind: GoalKind = GoalKind.LEAD
    default_value: Decimal = Decimal(0)
    currency: str = "USD"
    value_from_conversion: bool = False
    event_names: tuple[str, ...] = ()
    advertiser_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", check_name("name", self.name))
        check_slug("key", self.key)
        try:
            object.__setattr__(self, "kind", GoalKind(self.kind))
        except ValueError:
            raise ValidationError(
                f"kind {self.kind!r} is unknown; use one of {', '.join(GoalKind)}", field="kind"
            ) from None
        object.__setattr__(
            self, "default_value", check_decimal("default_value", self.default_value)
        )
        object.__setattr__(self, "currency", check_currency("currency", self.currency))
        for name in self.event_names:
            check_name("event_names", name, max_length=200)
        object.__setattr__(self, "event_names", tuple(self.event_names))
