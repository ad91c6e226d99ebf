"""Advertisers (who pay for results) and publishers (who deliver traffic and earn)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from perfmark.billing.domain.postbacks import validate_postback_template
from perfmark.domain.rules import (
    check_currency,
    check_decimal,
    check_email,
    check_name,
)
from perfmark.errors import ValidationError

__all__ = [
    "POSTBACK_FIELDS",
    "AdvertiserSpec",
    "BillingMode",
    "Channel",
    "PublisherSpec",
    "check_channel",
]


class Channel(StrEnum):
    """Where traffic comes from."""

    PAID_SEARCH = "paid_search"
    PAID_SOCIAL = "paid_social"
    AFFILIATE = "affiliate"
    NATIVE = "native"
    DISPLAY = "display"
    EMAIL = "email"
    RETARGETING = "retargeting"
    OTHER = "other"


class BillingMode(StrEnum):
    """Whether an advertiser pays up front or is invoiced."""

    PREPAID = "prepaid"  #: spends a balance topped up in advance
    POSTPAID = "postpaid"  #: accrues a receivable, invoiced per period


#: The fields of an inbound postback; an advertiser may map each to its own parameter name.
POSTBACK_FIELDS = ("click_id", "goal", "value", "currency", "txid", "status")
_PARAM_NAME = re.compile(r"[A-Za-z0-9_.\-\[\]]{1,64}")  # fullmatch: `$` allows a newline


def check_channel(value: str) -> Channel:
    """A known channel."""
    try:
        return Channel(value)
    except ValueError:
        raise ValidationError(
            f"channel {value!r} is unknown; use one of {', '.join(Channel)}", field="channel"
        ) from None


@dataclass(frozen=True)
class AdvertiserSpec:
    """A company that buys results; its currency is the currency of its campaigns' budgets."""

    name: str
    currency: str = "USD"
    contact_email: str | None = None
    billing_mode: BillingMode = BillingMode.POSTPAID
    credit_limit: Decimal | None = None
    postback_param_map: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", check_name("name", self.name))
        object.__setattr__(self, "currency", check_currency("currency", self.currency))
        if self.contact_email is not None:
            object.__setattr__(
                self, "contact_email", check_email("contact_email", self.contact_email)
            )
        try:
            object.__setattr__(self, "billing_mode", BillingMode(self.billing_mode))
        except ValueError:
            raise ValidationError(
                f"billing_mode {self.billing_mode!r} is unknown; use prepaid or postpaid",
                field="billing_mode",
            ) from None
        if self.credit_limit is not None:
            object.__setattr__(
                self, "credit_limit", check_decimal("credit_limit", self.credit_limit)
            )
        for name, param in self.postback_param_map.items():
            if name not in POSTBACK_FIELDS:
                raise ValidationError(
                    f"postback_param_map maps {name!r}, which is not a postback field; "
                    f"map one of {', '.join(POSTBACK_FIELDS)}",
                    field="postback_param_map",
                )
            if not isinstance(param, str) or not _PARAM_NAME.fullmatch(param):
                raise ValidationError(
                    f"postback_param_map[{name}] is {param!r}; use a query parameter name",
                    field="postback_param_map",
                )


@dataclass(frozen=True)
class PublisherSpec:
    """An affiliate, media partner or traffic source, paid per result in its currency."""

    name: str
    channel: Channel = Channel.AFFILIATE
    currency: str = "USD"
    contact_email: str | None = None
    postback_url_template: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", check_name("name", self.name))
        object.__setattr__(self, "channel", check_channel(self.channel))
        object.__setattr__(self, "currency", check_currency("currency", self.currency))
        if self.contact_email is not None:
            object.__setattr__(
                self, "contact_email", check_email("contact_email", self.contact_email)
            )
        if self.postback_url_template is not None:
            # Checked when saved, so an unknown macro is refused here rather than found at
            # delivery time (where the postback could only be queued as dead).
            object.__setattr__(
                self,
                "postback_url_template",
                validate_postback_template(
                    self.postback_url_template, field="postback_url_template"
                ),
            )
