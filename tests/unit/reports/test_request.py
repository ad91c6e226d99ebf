"""Report request validation: every bad input is a ValidationError naming its field and value."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from perfmark.errors import ValidationError
from perfmark.reports.domain.request import (
    DEFAULT_METRICS,
    MAX_PAGE_SIZE,
    MAX_RANGE_DAYS,
    DateBasis,
    parse_report_request,
)

WS = "ws_1"


def parse(**overrides: Any) -> Any:
    arguments: dict[str, Any] = {"start": "2026-01-01", "end": "2026-01-31"}
    arguments.update(overrides)
    return parse_report_request(WS, **arguments)


def test_a_valid_request_is_normalized() -> None:
    request = parse(
        dimensions="campaign, day,campaign",
        metrics=["clicks", "cpa"],
        filters={"country": "US,DE", "publisher": ["pub_1"]},
        timezone="Asia/Kathmandu",
        date_basis="click",
        order_by="cpa",
        currency="usd",
        limit=5,
        offset=10,
    )
    assert request.start == date(2026, 1, 1) and request.end == date(2026, 1, 31)
    assert request.dimensions == ("campaign", "day")  # duplicates and spaces dropped
    assert request.metrics == ("clicks", "cpa")
    assert request.filters == {"country": ("US", "DE"), "publisher": ("pub_1",)}
    assert request.date_basis is DateBasis.CLICK
    assert request.currency == "USD"
    assert (request.limit, request.offset) == (5, 10)


def test_defaults() -> None:
    request = parse()
    assert request.metrics == DEFAULT_METRICS
    assert request.dimensions == ()
    assert request.timezone == "UTC"
    assert request.date_basis is DateBasis.CONVERSION


@pytest.mark.parametrize(
    ("overrides", "field", "quoted"),
    [
        ({"start": "2026-13-01"}, "from", "2026-13-01"),
        ({"start": "yesterday"}, "from", "yesterday"),
        ({"end": "31/01/2026"}, "to", "31/01/2026"),
        ({"start": "2026-02-01", "end": "2026-01-31"}, "to", "2026-01-31"),
        ({"timezone": "Mars/Olympus"}, "tz", "Mars/Olympus"),
        ({"timezone": "../etc/passwd"}, "tz", "../etc/passwd"),
        ({"timezone": ""}, "tz", "''"),
        ({"dimensions": "campaign,planet"}, "dimensions", "planet"),
        ({"dimensions": "day,week"}, "dimensions", "hour, day, week, month"),
        ({"metrics": "clicks,cpx"}, "metrics", "cpx"),
        ({"filters": {"day": "2026-01-01"}}, "filter.day", "day"),
        ({"filters": {"planet": "mars"}}, "filter.planet", "planet"),
        ({"filters": {"country": ["x" * 257]}}, "filter.country", "256"),
        ({"filters": {"country": []}}, "filter.country", "1+"),
        ({"date_basis": "payment"}, "date_basis", "payment"),
        ({"order_by": "roas", "metrics": "clicks"}, "sort", "roas"),
        ({"limit": 0}, "limit", "0"),
        ({"limit": MAX_PAGE_SIZE + 1}, "limit", str(MAX_PAGE_SIZE + 1)),
        ({"offset": -1}, "offset", "-1"),
    ],
)
def test_bad_input_names_the_field_and_value(
    overrides: dict[str, Any], field: str, quoted: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        parse(**overrides)
    assert caught.value.field == field
    assert quoted in caught.value.message


def test_unknown_names_list_the_choices() -> None:
    with pytest.raises(ValidationError) as caught:
        parse(metrics="roas,cpz")
    assert "cpa" in caught.value.message and "roas" in caught.value.message


def test_range_limit() -> None:
    # 2020-01-01..2030-01-07 is 3653 + 7 = 3660 days (three leap years), the most allowed.
    assert parse(start="2020-01-01", end="2030-01-07").end == date(2030, 1, 7)
    with pytest.raises(ValidationError) as caught:
        parse(start="2020-01-01", end="2030-01-08")
    assert caught.value.field == "to"
    assert "3661 days" in caught.value.message and str(MAX_RANGE_DAYS) in caught.value.message


def test_sort_may_name_a_dimension_or_a_chosen_metric() -> None:
    assert parse(dimensions="country", order_by="country").order_by == "country"
    assert parse(metrics="clicks,cpc", order_by="cpc").order_by == "cpc"


def test_previous_period_is_equally_long_and_just_before() -> None:
    request = parse(start="2026-03-01", end="2026-03-31", compare=True, limit=5, offset=5)
    before = request.previous()
    assert (before.start, before.end) == (date(2026, 1, 29), date(2026, 2, 28))
    assert before.compare is False and before.offset == 0
    one_day = parse(start="2026-01-01", end="2026-01-01").previous()
    assert (one_day.start, one_day.end) == (date(2025, 12, 31), date(2025, 12, 31))
