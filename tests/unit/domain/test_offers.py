"""Offers with weighted landing pages, and goals with their value and currency."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from perfmark.domain.offers import GoalKind, GoalSpec, OfferSpec, WeightedUrl, check_weighted
from perfmark.errors import ValidationError


def page(key: str = "main", weight: Any = 1, url: str = "https://shop.example.com/") -> WeightedUrl:
    return WeightedUrl(key=key, url=url, weight=weight)


@pytest.mark.parametrize("weight", [1, 2, 100, 10**6])
def test_positive_whole_weights_are_accepted(weight: int) -> None:
    assert page(weight=weight).weight == weight


@pytest.mark.parametrize("weight", [0, -1, -100, True, False, 1.5, 1.0, "2", None])
def test_weights_that_are_not_positive_whole_numbers_are_refused(weight: object) -> None:
    with pytest.raises(ValidationError) as caught:
        page(weight=weight)
    assert caught.value.field == "weight"
    assert repr(weight) in caught.value.message


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "ftp://example.com", "/landing", " https://x.com", ""]
)
def test_landing_page_urls_must_be_http(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        page(url=url)
    assert caught.value.field == "url"


@pytest.mark.parametrize("key", ["", "has space", "-x"])
def test_rotation_keys_are_slugs(key: str) -> None:
    with pytest.raises(ValidationError) as caught:
        page(key=key)
    assert caught.value.field == "key"


def test_duplicate_rotation_keys_are_refused_naming_them() -> None:
    with pytest.raises(ValidationError) as caught:
        check_weighted("creatives", (page("a"), page("b"), page("b"), page("c"), page("c")))
    assert caught.value.field == "creatives"
    assert caught.value.message == "creatives repeats key(s) b, c"
    assert check_weighted("creatives", (page("a"), page("b"))) == (page("a"), page("b"))


def test_offer_needs_a_landing_page() -> None:
    with pytest.raises(ValidationError) as caught:
        OfferSpec(name="Shoes", advertiser_id="adv_1")
    assert caught.value.field == "landing_pages"


def test_offer_refuses_duplicate_keys_and_blank_names() -> None:
    with pytest.raises(ValidationError) as caught:
        OfferSpec(name="Shoes", advertiser_id="adv_1", landing_pages=(page("a"), page("a")))
    assert caught.value.field == "landing_pages"
    with pytest.raises(ValidationError) as caught:
        OfferSpec(name=" ", advertiser_id="adv_1", landing_pages=(page(),))
    assert caught.value.field == "name"


def test_offer_normalizes_its_pages_to_a_tuple() -> None:
    offer = OfferSpec(name=" Shoes ", advertiser_id="adv_1", landing_pages=[page("a"), page("b")])
    assert offer.name == "Shoes"
    assert offer.landing_pages == (page("a"), page("b"))


def goal(**changes: Any) -> GoalSpec:
    return GoalSpec(**{"name": "Purchase", "key": "purchase", **changes})


def test_goal_defaults_and_normalization() -> None:
    spec = goal(kind="sale", currency="eur", default_value="49.90", event_names=["Order Completed"])
    assert spec.kind is GoalKind.SALE
    assert spec.currency == "EUR"
    assert spec.default_value == Decimal("49.90")
    assert spec.event_names == ("Order Completed",)
    assert goal().kind is GoalKind.LEAD
    assert goal().value_from_conversion is False


@pytest.mark.parametrize("kind", ["lead", "sale", "install", "signup", "custom"])
def test_every_goal_kind(kind: str) -> None:
    assert goal(kind=kind).kind == kind


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kind", "purchase"),
        ("key", "has space"),
        ("key", ""),
        ("name", ""),
        ("default_value", "-1"),
        ("default_value", 9.99),
        ("currency", "XYZ"),
        ("event_names", ("ok", "  ")),
    ],
)
def test_goal_refusals_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        goal(**{field: value})
    assert caught.value.field == field
