"""Matching platform campaign names to perfmark campaigns: map, id, name, ambiguity."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from perfmark.costs.domain import (
    CampaignMatcher,
    CampaignRef,
    CostFileError,
    CostLine,
    parse_campaign_map,
    resolve_lines,
)
from perfmark.errors import ValidationError

CAMPAIGNS = [
    CampaignRef("cmp_brand", "Brand - Search"),
    CampaignRef("cmp_shoes", "Spring Shoes"),
    CampaignRef("cmp_old", "Retargeting", archived=True),
    CampaignRef("cmp_new", "Retargeting"),
    CampaignRef("cmp_twin1", "Twin"),
    CampaignRef("cmp_twin2", "Twin"),
]


def test_match_by_name_ignoring_case_and_spaces() -> None:
    matcher = CampaignMatcher(CAMPAIGNS)
    assert matcher.match("Brand - Search") == ("cmp_brand", "")
    assert matcher.match("  brand   -  SEARCH ") == ("cmp_brand", "")


def test_match_by_perfmark_id() -> None:
    assert CampaignMatcher(CAMPAIGNS).match("cmp_shoes") == ("cmp_shoes", "")


def test_explicit_map_wins_over_names() -> None:
    matcher = CampaignMatcher(CAMPAIGNS, {"Brand - Search": "cmp_shoes", "Shoes DE": "cmp_shoes"})
    assert matcher.match("brand - search") == ("cmp_shoes", "")
    assert matcher.match("Shoes DE") == ("cmp_shoes", "")


def test_same_name_prefers_the_one_not_archived() -> None:
    assert CampaignMatcher(CAMPAIGNS).match("Retargeting") == ("cmp_new", "")


def test_same_name_twice_is_ambiguous() -> None:
    campaign_id, reason = CampaignMatcher(CAMPAIGNS).match("Twin")
    assert campaign_id is None
    assert "cmp_twin1, cmp_twin2" in reason and "campaign_map" in reason


def test_unknown_name() -> None:
    campaign_id, reason = CampaignMatcher(CAMPAIGNS).match("Winter")
    assert campaign_id is None and "matches no perfmark campaign" in reason


def test_map_to_an_unknown_campaign_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        CampaignMatcher(CAMPAIGNS, {"Brand": "cmp_missing"})
    assert caught.value.field == "campaign_map" and "cmp_missing" in caught.value.message


def test_parse_campaign_map_splits_at_the_last_equals_sign() -> None:
    assert parse_campaign_map(["a=b=cmp_1", " Brand = cmp_2 "]) == {
        "a=b": "cmp_1",
        "Brand": "cmp_2",
    }
    for bad in ["no-equals", "=cmp_1", "Brand="]:
        with pytest.raises(ValidationError) as caught:
            parse_campaign_map([bad], field="campaign-map")
        assert caught.value.field == "campaign-map"


def test_resolve_lines_names_the_row_of_the_first_unknown_campaign() -> None:
    lines = [
        CostLine(4, "Brand - Search", date(2026, 1, 1), Decimal(1), "EUR"),
        CostLine(5, "Winter", date(2026, 1, 1), Decimal(1), "EUR"),
    ]
    with pytest.raises(CostFileError) as caught:
        resolve_lines(
            lines, CampaignMatcher(CAMPAIGNS), lambda line: (f"row {line.row}, col", "Campaign")
        )
    assert (caught.value.row, caught.value.field) == (5, "Campaign")
    assert caught.value.message.startswith("row 5, col: 'Winter' matches no perfmark campaign")
