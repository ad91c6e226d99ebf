"""Tracking links: slugs, fixed sub ids and UTMs, passthrough parameters, the URL to paste."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from perfmark.domain.links import (
    DEFAULT_PASSTHROUGH,
    SUB_FIELDS,
    UTM_FIELDS,
    LinkStatus,
    TrackingLinkSpec,
    new_slug,
    tracking_url,
)
from perfmark.domain.rules import check_slug
from perfmark.errors import ValidationError


def link(**changes: Any) -> TrackingLinkSpec:
    return TrackingLinkSpec(**{"campaign_id": "cmp_1", "publisher_id": "pub_1", **changes})


def refused(field: str, **changes: Any) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        link(**changes)
    assert caught.value.field == field, caught.value.message
    return caught.value


def test_default_passthrough_is_subs_utms_and_ad_platform_click_ids() -> None:
    assert SUB_FIELDS == ("sub1", "sub2", "sub3", "sub4", "sub5")
    assert UTM_FIELDS == ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
    for name in ("gclid", "fbclid", "msclkid", "ttclid", "wbraid", "gbraid"):
        assert name in DEFAULT_PASSTHROUGH
    assert set(SUB_FIELDS + UTM_FIELDS) <= set(DEFAULT_PASSTHROUGH)
    assert link().passthrough == DEFAULT_PASSTHROUGH
    assert link().status is LinkStatus.ACTIVE


def test_a_thousand_new_slugs_are_all_valid_and_distinct() -> None:
    slugs = [new_slug() for _ in range(1000)]
    for slug in slugs:
        assert check_slug("slug", slug) == slug
        assert len(slug) == 8
        assert not set(slug) & set("01lIoO")  # no characters that read alike
    assert len(set(slugs)) == 1000


def test_an_empty_slug_is_generated() -> None:
    generated = link()
    assert len(generated.slug) == 8
    check_slug("slug", generated.slug)
    assert link(slug="spring-2026").slug == "spring-2026"


@pytest.mark.parametrize("slug", ["-x", "a b", "a/b", "x" * 65, "abc\n", "ünï"])
def test_bad_slugs_are_refused(slug: str) -> None:
    refused("slug", slug=slug)


def test_fixed_values_are_the_set_subs_and_utms_only() -> None:
    spec = link(sub1="banner", sub5="", utm_source="newsletter", utm_content="hero")
    assert spec.fixed_values() == {
        "sub1": "banner",
        "sub5": "",
        "utm_source": "newsletter",
        "utm_content": "hero",
    }
    assert link().fixed_values() == {}


@pytest.mark.parametrize("name", SUB_FIELDS + UTM_FIELDS)
def test_fixed_values_are_bounded(name: str) -> None:
    assert getattr(link(**{name: "x" * 500}), name) == "x" * 500
    assert "501 characters" in refused(name, **{name: "x" * 501}).message


@pytest.mark.parametrize("name", ["sub1", "utm_term"])
def test_fixed_values_are_text(name: str) -> None:
    refused(name, **{name: 12})


def test_passthrough_is_deduplicated_in_order() -> None:
    assert link(passthrough=["gclid", "sub1", "gclid", "x.y-z"]).passthrough == (
        "gclid",
        "sub1",
        "x.y-z",
    )
    assert link(passthrough=()).passthrough == ()


@pytest.mark.parametrize("param", ["", "has space", "a&b", "a=b", "x" * 65, "gclid\n", 5, None])
def test_bad_passthrough_names_are_refused(param: object) -> None:
    refused("passthrough", passthrough=("sub1", param))


def test_a_single_string_is_not_a_passthrough_list() -> None:
    refused("passthrough", passthrough="gclid")


def test_status() -> None:
    assert link(status="paused").status is LinkStatus.PAUSED
    assert "active or paused" in refused("status", status="deleted").message


def test_tracking_url() -> None:
    assert tracking_url("https://t.example.com", "abc") == "https://t.example.com/c/abc"
    assert tracking_url("https://t.example.com/", "abc") == "https://t.example.com/c/abc"


def test_tracking_url_encodes_example_parameters() -> None:
    url = tracking_url("http://127.0.0.1:8000", "abc", {"sub1": "a b&c", "gclid": "x=y"})
    parts = urlsplit(url)
    assert parts.path == "/c/abc"
    assert parse_qsl(parts.query) == [("sub1", "a b&c"), ("gclid", "x=y")]
    assert " " not in url
