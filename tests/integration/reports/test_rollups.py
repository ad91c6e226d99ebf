"""Rollups give the same reports as raw events, are really used, and go stale when data lands."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from perfmark.reports.domain.catalog import METRICS, NON_ADDITIVE_MEASURES, measures_of
from perfmark.reports.domain.request import BUCKET_MS, parse_report_request
from perfmark.reports.export import report_to_json
from perfmark.reports.query import LakeQuery
from perfmark.reports.rollups import (
    DEFAULT_ROLLUPS,
    RollupQuery,
    RollupSpec,
    build_rollups,
    rollup_dates,
)
from perfmark.reports.service import run_report
from perfmark.services.accounts import NewWorkspace
from perfmark.services.container import Container

from .lake_data import USD_RATES, event, usd_events, write_events

DAYS = [date(2026, 1, 13), date(2026, 1, 14), date(2026, 1, 15), date(2026, 1, 16)]
ADDITIVE_METRICS = ",".join(
    name for name in METRICS if not set(measures_of((name,))) & NON_ADDITIVE_MEASURES
)
#: Reports a dashboard asks for: rollup dimensions only, additive metrics only.
ROLLUP_CASES: dict[str, dict[str, Any]] = {
    "totals": {"metrics": ADDITIVE_METRICS},
    "campaign_day_new_york": {"dimensions": "campaign,day", "timezone": "America/New_York",
                              "metrics": ADDITIVE_METRICS},
    "country_device_hour_tokyo": {"dimensions": "country,device,hour", "timezone": "Asia/Tokyo",
                                  "metrics": "impressions,clicks,ctr,cost"},
    "browser_os_month_new_york": {"dimensions": "browser,os,month",
                                  "timezone": "America/New_York", "metrics": "clicks,cpc"},
    "goal_week_filtered": {"dimensions": "goal,week", "filters": {"publisher": "pub_1,pub_2"},
                           "metrics": "conversions,revenue,aov,cpl,conversions_refunded"},
    "compare_publisher": {"start": "2026-01-15", "end": "2026-01-16", "compare": True,
                          "dimensions": "publisher", "metrics": "clicks,conversions,cpa"},
    "sorted_paged_offer_channel": {"dimensions": "offer,channel", "order_by": "cost", "limit": 1,
                                   "metrics": "cost,payout,network_margin"},
    "usd_converted": {"dimensions": "advertiser", "metrics": "cost,revenue,roas"},
}  # fmt: skip


@pytest.fixture
def lakes(
    container: Container, eur_workspace: NewWorkspace, lake: Path, duckdb_backend: Any
) -> dict[str, Any]:
    """The standard lake (plus the USD campaign), a raw query and a rollup query on it."""
    write_events(lake, usd_events(eur_workspace.workspace.id), batch_id="b_usd")
    return {
        "raw": LakeQuery(lake, duckdb_backend),
        "rollup": RollupQuery(lake, duckdb_backend),
        "lake": lake,
        "workspace": eur_workspace.workspace.id,
        "container": container,
    }


def report(lakes: dict[str, Any], engine: str, **arguments: Any) -> Any:
    arguments = {"start": "2026-01-14", "end": "2026-01-16", **arguments}
    request = parse_report_request(lakes["workspace"], **arguments)
    result = run_report(lakes["container"], request, rates=USD_RATES, query=lakes[engine])
    return report_to_json(result)


@pytest.mark.parametrize("name", list(ROLLUP_CASES))
def test_rollups_give_the_same_report_as_raw_events(name: str, lakes: dict[str, Any]) -> None:
    assert build_rollups(lakes["rollup"], DAYS) == DAYS[1:]  # Jan 13 has no events
    case = ROLLUP_CASES[name]
    arguments = {"start": "2026-01-14", "end": "2026-01-16", **case}
    request = parse_report_request(lakes["workspace"], **arguments)
    assert lakes["rollup"].rollup_for(request, measures_of(request.metrics)) is not None
    expected = report(lakes, "raw", **case)
    assert expected["rows"] or expected["totals"]
    assert report(lakes, "rollup", **case) == expected


def test_reports_do_read_the_rollup(lakes: dict[str, Any]) -> None:
    build_rollups(lakes["rollup"], DAYS)
    parties = DEFAULT_ROLLUPS[0].name
    part = lakes["lake"] / "rollups" / parties / "date=2026-01-14" / "part.parquet"
    table = pq.read_table(part)
    # Doctor the stored clicks (sources unchanged, so the partition still counts as fresh).
    index = table.schema.get_field_index("clicks")
    doubled = pc.multiply(table["clicks"], 2)
    pq.write_table(table.set_column(index, "clicks", doubled), part)
    raw = report(lakes, "raw", metrics="clicks")["totals"]["clicks"]
    assert raw == 7
    assert report(lakes, "rollup", metrics="clicks")["totals"]["clicks"] == 13  # 6 x 2 + 1
    # A report the rollup cannot answer (a sub id) still reads raw events.
    by_sub1 = report(lakes, "rollup", dimensions="sub1", metrics="clicks")["totals"]
    assert by_sub1 == {"clicks": 7}


def test_a_new_batch_makes_its_date_stale_and_reports_stay_exact(lakes: dict[str, Any]) -> None:
    build_rollups(lakes["rollup"], DAYS)
    late = event("click", "2026-01-15 08:00", lakes["workspace"], campaign_id="cmp_1",
                 visitor_id="v_late", cost="0.50", payout="0.30", billing_currency="EUR")  # fmt: skip
    write_events(lakes["lake"], [late], batch_id="b_late")
    case = {"dimensions": "campaign,day", "metrics": "clicks,cost,cpc"}
    assert report(lakes, "rollup", **case) == report(lakes, "raw", **case)
    assert report(lakes, "rollup", metrics="clicks")["totals"]["clicks"] == 8
    # Rebuilding the stale date brings it back to the rollup, still exact.
    assert build_rollups(lakes["rollup"], [date(2026, 1, 15)]) == [date(2026, 1, 15)]
    assert report(lakes, "rollup", **case) == report(lakes, "raw", **case)


def test_what_the_rollup_cannot_answer(lakes: dict[str, Any]) -> None:
    query: RollupQuery = lakes["rollup"]

    def allowed(**arguments: Any) -> str | None:
        arguments = {"start": "2026-01-14", "end": "2026-01-16", **arguments}
        request = parse_report_request(lakes["workspace"], **arguments)
        spec = query.rollup_for(request, measures_of(request.metrics))
        return None if spec is None else spec.name

    assert allowed(dimensions="campaign,day", metrics="clicks,cpa") == "parties"
    assert allowed(dimensions="country", filters={"os": "iOS"}, metrics="cost") == "audience"
    assert not allowed(dimensions="campaign,country", metrics="clicks")  # in no one rollup
    assert not allowed(dimensions="sub1", metrics="clicks")  # not a rollup dimension
    assert not allowed(filters={"utm_source": "google"}, metrics="clicks")
    assert not allowed(metrics="unique_clicks")  # distinct counts need events
    assert not allowed(metrics="median_time_to_convert")
    assert not allowed(metrics="cac")  # new customers: distinct
    assert not allowed(metrics="conversions", date_basis="click")
    # Hourly buckets cannot serve +05:45 or +05:30 (days start at a quarter or half hour).
    assert not allowed(metrics="clicks", timezone="Asia/Kathmandu")
    assert not allowed(dimensions="hour", metrics="clicks", timezone="Asia/Kolkata")
    # 1890 Kolkata ran on local mean time (+05:53:28): no bucket boundary at all.
    quarter = RollupQuery(query.lake, query.backend, specs=(QUARTER,))
    request = parse_report_request(lakes["workspace"], start="1890-01-01", end="1890-01-01",
                                   timezone="Asia/Kolkata", metrics="clicks")  # fmt: skip
    assert quarter.rollup_for(request, ("clicks",)) is None


QUARTER = RollupSpec("quarter", ("country", "device"), bucket_ms=BUCKET_MS)


def test_quarter_hour_rollups_serve_any_time_zone(lakes: dict[str, Any]) -> None:
    quarter = RollupQuery(lakes["lake"], lakes["raw"].backend, specs=(QUARTER,))
    assert build_rollups(quarter, DAYS, specs=(QUARTER,)) == DAYS[1:]
    lakes["quarter"] = quarter
    for zone in ("Asia/Kathmandu", "Australia/Lord_Howe", "Asia/Kolkata"):
        case = {"dimensions": "country,hour", "timezone": zone, "metrics": "clicks,cost,roas"}
        request = parse_report_request(lakes["workspace"], start="2026-01-14", end="2026-01-16",
                                       **case)  # fmt: skip
        assert quarter.rollup_for(request, measures_of(request.metrics)) is QUARTER
        assert report(lakes, "quarter", **case) == report(lakes, "raw", **case)


def test_a_date_without_events_loses_its_rollup(lakes: dict[str, Any]) -> None:
    assert build_rollups(lakes["rollup"], [date(2026, 1, 20)]) == []
    directory = lakes["lake"] / "rollups" / DEFAULT_ROLLUPS[0].name / "date=2026-01-20"
    assert not (directory / "part.parquet").exists()


def test_rollup_dates() -> None:
    request = parse_report_request("ws", start="2026-01-14", end="2026-01-15",
                                   timezone="America/New_York")  # fmt: skip
    assert rollup_dates(*request.utc_range_ms()) == [
        date(2026, 1, 14),
        date(2026, 1, 15),
        date(2026, 1, 16),  # New York's Jan 15 ends at 05:00 UTC on the 16th
    ]
