"""Advertisers and publishers: channels, currencies, billing modes, postback settings."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from perfmark.domain.parties import (
    POSTBACK_FIELDS,
    AdvertiserSpec,
    BillingMode,
    Channel,
    PublisherSpec,
    check_channel,
)
from perfmark.errors import ValidationError

CHANNELS = [
    "paid_search",
    "paid_social",
    "affiliate",
    "native",
    "display",
    "email",
    "retargeting",
    "other",
]


def test_the_channels_are_the_issue_list() -> None:
    assert [channel.value for channel in Channel] == CHANNELS


@pytest.mark.parametrize("value", CHANNELS)
def test_check_channel_accepts_each(value: str) -> None:
    assert check_channel(value) == value


@pytest.mark.parametrize("value", ["tv", "", "Paid_Search", None])
def test_check_channel_refuses_others(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        check_channel(value)
    assert caught.value.field == "channel"
    assert "paid_search, paid_social" in caught.value.message


def advertiser(**changes: Any) -> AdvertiserSpec:
    return AdvertiserSpec(**{"name": "Acme", **changes})


def publisher(**changes: Any) -> PublisherSpec:
    return PublisherSpec(**{"name": "Deals Blog", **changes})


def test_advertiser_defaults_and_normalization() -> None:
    spec = advertiser(currency="gbp", billing_mode="prepaid", contact_email="Billing@Acme.COM")
    assert spec.currency == "GBP"
    assert spec.billing_mode is BillingMode.PREPAID
    assert spec.contact_email == "billing@acme.com"
    assert advertiser().billing_mode is BillingMode.POSTPAID


def test_credit_limit_is_an_exact_non_negative_decimal() -> None:
    assert advertiser(credit_limit="5000.00").credit_limit == Decimal("5000.00")
    assert advertiser(credit_limit=0).credit_limit == 0


def test_postback_param_map_accepts_known_fields() -> None:
    mapping = {"click_id": "clickid", "value": "payout", "txid": "order[id]"}
    assert advertiser(postback_param_map=mapping).postback_param_map == mapping
    assert set(POSTBACK_FIELDS) == {"click_id", "goal", "value", "currency", "txid", "status"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", ""),
        ("currency", "XYZ"),
        ("billing_mode", "credit"),
        ("credit_limit", "-1"),
        ("credit_limit", 100.0),
        ("contact_email", "not-an-email"),
        ("contact_email", "a@b.co\n"),
        ("postback_param_map", {"payout": "p"}),
        ("postback_param_map", {"value": "has space"}),
        ("postback_param_map", {"value": "v\n"}),
        ("postback_param_map", {"value": ""}),
        ("postback_param_map", {"value": 3}),
    ],
)
def test_advertiser_refusals_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        advertiser(**{field: value})
    assert caught.value.field == field


def test_publisher_defaults() -> None:
    spec = publisher(channel="paid_social", currency="eur")
    assert spec.channel is Channel.PAID_SOCIAL
    assert spec.currency == "EUR"
    assert publisher().channel is Channel.AFFILIATE


def test_publisher_postback_template_may_use_macros() -> None:
    url = "https://pub.example.com/pb?click={click_id}&payout={payout}"
    assert publisher(postback_url_template=url).postback_url_template == url


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "  "),
        ("channel", "radio"),
        ("currency", "usdx"),
        ("contact_email", "a@b"),
        ("postback_url_template", "javascript:alert(1)"),
        ("postback_url_template", "ftp://pub.example.com/pb"),
        ("postback_url_template", "/pb"),
        ("postback_url_template", "https://{host}/pb"),
    ],
)
def test_publisher_refusals_name_the_field(field: str, value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        publisher(**{field: value})
    assert caught.value.field == field
