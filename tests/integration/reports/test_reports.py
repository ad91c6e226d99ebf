"""Reports over a hand-built lake on DuckDB: every figure checked against lake_data's arithmetic."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from perfmark.errors import ValidationError
from perfmark.reports.domain.catalog import METRICS
from perfmark.reports.domain.request import parse_report_request
from perfmark.reports.query import LakeQuery
from perfmark.reports.service import ReportResult, run_report
from perfmark.services.accounts import NewWorkspace
from perfmark.services.container import Container

from .conftest import Reporter
from .lake_data import EXPECTED_TOTALS, USD_RATES, at_ms, event, usd_events, write_events


def by(result: ReportResult, *dimensions: str) -> dict[Any, dict[str, Any]]:
    """Rows keyed by their dimension values (one value: the value itself)."""
    rows = {}
    for row in result.rows:
        key = tuple(row[d] for d in dimensions)
        rows[key[0] if len(key) == 1 else key] = row
    return rows


def d(text: str) -> Decimal:
    return Decimal(text)


#: Every metric of the totals over Jan 14-16 (UTC), from EXPECTED_TOTALS by hand.
TOTALS = {
    "impressions": 14,
    "clicks": 5,
    "unique_clicks": 4,
    "ctr": d("0.357143"),  # 5 / 14
    "conversions": 2,
    "conversions_pending": 1,
    "conversions_approved": 1,
    "conversions_rejected": 1,
    "conversions_refunded": 1,
    "conversions_over_cap": 1,
    "conversion_rate": d("0.4"),  # 2 / 5
    "cost": d("8.52"),
    "revenue": 100,
    "payout": d("4.91"),
    "profit": d("91.48"),  # 100 - 8.52
    "margin": d("0.9148"),  # 91.48 / 100
    "network_margin": d("3.61"),  # 8.52 - 4.91
    "cpc": d("1.704"),  # 8.52 / 5
    "cpm": d("608.571429"),  # 8.52 / 14 x 1000
    "cpl": d("8.52"),  # one lead
    "cpa": d("4.26"),  # 8.52 / 2
    "cac": d("2.84"),  # 8.52 / 3 new customers (cu1, v2, cu2)
    "roas": d("11.737089"),  # 100 / 8.52
    "roi": d("10.737089"),  # 91.48 / 8.52
    "epc": 20,  # 100 / 5
    "aov": 100,  # sales revenue 100 + 40 - 40 over 1 sale
    "median_time_to_convert": 7200,
    "customers": 3,
    "new_customers": 3,
    "ltv": d("33.333333"),  # 100 / 3
}


def test_totals_of_every_metric(report: Reporter) -> None:
    result = report(metrics=",".join(METRICS))
    assert set(TOTALS) == set(METRICS)
    assert result.totals == TOTALS
    assert result.currency == "EUR"
    for name, value in EXPECTED_TOTALS.items():
        if name in result.totals:
            assert result.totals[name] == value, name


def test_rows_add_up_to_the_totals(report: Reporter) -> None:
    additive = ("impressions", "clicks", "conversions", "cost", "revenue", "payout")
    result = report(dimensions="campaign,day", metrics=",".join(additive))
    for name in additive:
        assert sum(row[name] for row in result.rows) == result.totals[name], name


def test_click_at_2330_utc_is_on_the_local_day(report: Reporter) -> None:
    # cmp_1's clicks are at 10:00, 11:00 and 23:30 UTC on Jan 14.
    arguments = {"dimensions": "day", "metrics": "clicks", "filters": {"campaign": "cmp_1"}}
    utc = by(report(**arguments, end="2026-01-15"), "day")
    assert {day: row["clicks"] for day, row in utc.items()} == {"2026-01-14": 3, "2026-01-15": 0}
    new_york = by(report(**arguments, end="2026-01-15", timezone="America/New_York"), "day")
    assert {day: row["clicks"] for day, row in new_york.items()} == {"2026-01-14": 3}
    tokyo = by(report(**arguments, end="2026-01-15", timezone="Asia/Tokyo"), "day")
    assert {day: row["clicks"] for day, row in tokyo.items()} == {
        "2026-01-14": 2,  # 19:00 and 20:00 local
        "2026-01-15": 1,  # 08:30 local
    }


def test_local_hours(report: Reporter) -> None:
    arguments = {"dimensions": "hour", "metrics": "clicks", "filters": {"campaign": "cmp_1"}}
    clicks = {
        zone: {
            hour: row["clicks"]
            for hour, row in by(report(**arguments, timezone=zone), "hour").items()
            if row["clicks"]
        }
        for zone in ("America/New_York", "Asia/Tokyo", "Asia/Kathmandu")
    }
    assert clicks["America/New_York"] == {
        "2026-01-14T05:00": 1,
        "2026-01-14T06:00": 1,
        "2026-01-14T18:00": 1,
    }
    assert clicks["Asia/Tokyo"] == {
        "2026-01-14T19:00": 1,
        "2026-01-14T20:00": 1,
        "2026-01-15T08:00": 1,
    }
    # +05:45: 10:00 UTC is 15:45, 11:00 is 16:45, 23:30 is 05:15 the next day.
    assert clicks["Asia/Kathmandu"] == {
        "2026-01-14T15:00": 1,
        "2026-01-14T16:00": 1,
        "2026-01-15T05:00": 1,
    }


def test_the_range_follows_the_time_zone(report: Reporter) -> None:
    # Jan 15 in Tokyo is Jan 14 15:00 .. Jan 15 15:00 UTC: only the 23:30 click of Jan 14.
    result = report(start="2026-01-15", end="2026-01-15", timezone="Asia/Tokyo", metrics="clicks")
    assert result.totals["clicks"] == 1
    # Jan 13 in Honolulu (-10) ends at Jan 14 10:00 UTC: nothing; Jan 14 has four clicks
    # (10:00 UTC is midnight there, 23:30 UTC is 13:30 on the 14th).
    honolulu = {"timezone": "Pacific/Honolulu", "metrics": "clicks"}
    assert report(start="2026-01-13", end="2026-01-13", **honolulu).totals["clicks"] == 0
    assert report(start="2026-01-14", end="2026-01-14", **honolulu).totals["clicks"] == 5


def test_week_and_month(report: Reporter) -> None:
    weeks = by(report(dimensions="week", metrics="clicks,conversions"), "week")
    assert list(weeks) == ["2026-01-12"]
    assert weeks["2026-01-12"]["clicks"] == 5
    months = by(report(dimensions="month", metrics="clicks", timezone="Asia/Tokyo"), "month")
    assert {m: r["clicks"] for m, r in months.items()} == {"2026-01-01": 5}


def test_conversion_date_versus_click_date(report: Reporter) -> None:
    # conv2 converted on Jan 15 01:30 UTC after a click on Jan 14 23:30 UTC.
    arguments = {"dimensions": "day", "metrics": "conversions", "filters": {"campaign": "cmp_1"}}
    on_conversion = by(report(**arguments), "day")
    assert {k: r["conversions"] for k, r in on_conversion.items()} == {
        "2026-01-14": 1,
        "2026-01-15": 1,
    }
    on_click = by(report(**arguments, date_basis="click"), "day")
    assert {k: r["conversions"] for k, r in on_click.items()} == {"2026-01-14": 2}
    # A range holding only the conversion day keeps it on its conversion date only.
    jan_15 = {"start": "2026-01-15", "end": "2026-01-15", "metrics": "conversions"}
    assert report(**jan_15).totals["conversions"] == 1
    assert report(**jan_15, date_basis="click").totals["conversions"] == 0


def test_a_refund_reduces_conversions_revenue_and_cost_exactly(report: Reporter) -> None:
    metrics = "conversions,conversions_approved,conversions_refunded,revenue,cost,payout"
    cmp_2 = {"filters": {"campaign": "cmp_2"}, "metrics": metrics}
    days = by(report(dimensions="day", **cmp_2), "day")
    assert days["2026-01-14"] | {"day": None} == {
        "day": None,
        "conversions": 1,
        "conversions_approved": 1,
        "conversions_refunded": 0,
        "revenue": 40,
        "cost": d("4.02"),  # 10 impressions x 0.002 + conversion 4
        "payout": d("2.01"),
    }
    assert days["2026-01-16"] | {"day": None} == {
        "day": None,
        "conversions": -1,
        "conversions_approved": -1,
        "conversions_refunded": 1,
        "revenue": -40,
        "cost": -4,
        "payout": -2,
    }
    whole = report(**cmp_2).totals
    assert (whole["conversions"], whole["revenue"], whole["cost"], whole["payout"]) == (
        0,
        0,
        d("0.02"),
        d("0.01"),
    )
    # On the click's date the refund lands on Jan 14 with the sale: they cancel out.
    on_click = by(report(dimensions="day", date_basis="click", **cmp_2), "day")
    assert on_click["2026-01-14"]["conversions"] == 0
    assert on_click["2026-01-14"]["revenue"] == 0
    assert "2026-01-16" not in on_click


def test_bots_and_fallback_clicks_are_not_counted(report: Reporter) -> None:
    # cmp_1 has 5 click events (one bot, one sent to the fallback) and 5 impressions (one bot).
    result = report(filters={"campaign": "cmp_1"}, metrics="clicks,unique_clicks,impressions,cost")
    assert result.totals == {
        "clicks": 3,
        "unique_clicks": 2,  # v1 twice, v2; never v9 (bot) or v8 (fallback)
        "impressions": 4,
        "cost": d("8.5"),  # 3 x 0.50 + conversions 5 + 2
    }


def test_filters(report: Reporter) -> None:
    metrics = "impressions,clicks,conversions,cost"
    germany = report(filters={"country": "DE"}, metrics=metrics).totals
    assert germany == {"impressions": 10, "clicks": 2, "conversions": 0, "cost": d("0.02")}
    both = report(filters={"campaign": "cmp_1,cmp_2"}, metrics=metrics).totals
    assert both == report(metrics=metrics).totals
    sales = report(filters={"goal": "sale"}, metrics="conversions,revenue,clicks").totals
    assert sales == {"conversions": 1, "revenue": 100, "clicks": 0}
    narrow = report(
        filters={"publisher": "pub_1", "sub1": "x", "device": "desktop"}, metrics="clicks"
    )
    assert narrow.totals == {"clicks": 2}
    nothing = report(filters={"utm_source": "nowhere"}, metrics="clicks,cpc")
    assert nothing.rows == () and nothing.totals == {"clicks": 0, "cpc": None}


def test_other_workspaces_events_are_never_counted(report: Reporter) -> None:
    result = report(dimensions="campaign", metrics="clicks,cost")
    assert {row["campaign"] for row in result.rows} == {"cmp_1", "cmp_2"}
    assert result.totals["cost"] == d("8.52")


def test_compare_with_the_previous_period(report: Reporter) -> None:
    result = report(
        start="2026-01-15",
        end="2026-01-16",
        dimensions="campaign",
        metrics="clicks,conversions,revenue",
        compare=True,
    )
    # Now: Jan 15-16. Before: Jan 13-14.
    rows = by(result, "campaign")
    assert rows["cmp_1"] | {"campaign_name": None} == {
        "campaign": "cmp_1",
        "campaign_name": None,
        "clicks": 0,
        "clicks_previous": 3,
        "clicks_change": -1,
        "conversions": 1,
        "conversions_previous": 1,
        "conversions_change": 0,
        "revenue": 0,
        "revenue_previous": 100,
        "revenue_change": -1,
    }
    assert rows["cmp_2"]["conversions"] == -1
    assert rows["cmp_2"]["conversions_change"] == -2  # (-1 - 1) / 1
    assert rows["cmp_2"]["revenue_change"] == -2  # (-40 - 40) / 40
    assert result.previous_totals == {"clicks": 5, "conversions": 2, "revenue": 140}
    assert result.totals["revenue"] == -40
    assert result.totals["revenue_change"] == d("-1.285714")  # (-40 - 140) / 140
    assert result.totals["clicks_change"] == -1


def test_compare_by_day_compares_totals_only(report: Reporter) -> None:
    result = report(start="2026-01-15", end="2026-01-16", dimensions="day", compare=True,
                    metrics="clicks")  # fmt: skip
    assert result.totals == {"clicks": 0, "clicks_previous": 5, "clicks_change": -1}
    assert all("clicks_previous" not in row for row in result.rows)


def test_a_previous_period_with_nothing_gives_null_changes(report: Reporter) -> None:
    result = report(metrics="clicks,cpc", compare=True)
    assert result.totals["clicks_previous"] == 0
    assert result.totals["clicks_change"] is None
    assert result.totals["cpc_previous"] is None and result.totals["cpc_change"] is None


def test_sort_and_pages(report: Reporter) -> None:
    metrics = {"dimensions": "sub1", "metrics": "clicks,cost,cpa"}
    # sub1 x: clicks 2, cost 8, cpa 4; y: clicks 1, cost 0.5, no conversions;
    # none: clicks 2, cost 0.02, conversions 1 - 1 = 0.
    by_clicks = report(**metrics, order_by="clicks")
    assert [r["sub1"] for r in by_clicks.rows] == [None, "x", "y"]  # the tie in dim order
    assert [r["clicks"] for r in by_clicks.rows] == [2, 2, 1]
    by_cost = report(**metrics, order_by="cost")
    assert [(r["sub1"], r["cost"]) for r in by_cost.rows] == [
        ("x", 8),
        ("y", d("0.5")),
        (None, d("0.02")),
    ]
    ascending = report(**metrics, order_by="cpa", descending=False)
    assert [r["sub1"] for r in ascending.rows] == [None, "y", "x"]  # nulls first, then 4
    descending = report(**metrics, order_by="cpa")
    assert [r["sub1"] for r in descending.rows] == ["x", None, "y"]  # nulls last
    by_name = report(**metrics, order_by="sub1", descending=False)
    assert [r["sub1"] for r in by_name.rows] == [None, "x", "y"]
    page = report(**metrics, order_by="clicks", limit=1, offset=1)
    assert [r["sub1"] for r in page.rows] == ["x"] and page.total_rows == 3
    beyond = report(**metrics, limit=2, offset=5)
    assert beyond.rows == () and beyond.total_rows == 3


def test_multiple_currencies_convert_at_the_rate_of_the_day(report: Reporter, lake: Path) -> None:
    write_events(lake, usd_events(report.workspace_id), batch_id="b_usd")
    metrics = "cost,revenue,payout,clicks,unique_clicks,customers"
    result = report(metrics=metrics, rates=USD_RATES)
    assert result.totals == {
        "cost": d("18.22"),
        "revenue": 140,
        "payout": d("10.73"),
        "clicks": 7,
        "unique_clicks": 5,  # v1 clicked in both currencies and counts once
        "customers": 4,  # cu1, v2, cu2, cu5
    }
    rows = by(report(dimensions="campaign,day", metrics="cost", rates=USD_RATES), "campaign", "day")
    assert rows["cmp_3", "2026-01-14"]["cost"] == d("0.9")  # 1.00 USD at 0.9
    assert rows["cmp_3", "2026-01-15"]["cost"] == d("8.8")  # 11.00 USD at 0.8
    in_usd = report(metrics="cost", rates=USD_RATES, currency="USD", filters={"campaign": "cmp_3"})
    assert in_usd.currency == "USD" and in_usd.totals["cost"] == 12  # no conversion needed
    # EUR into USD uses the inverse rate: 0.02 EUR of cmp_2 impressions at 1 / 0.9.
    cpm = report(metrics="cost", rates=USD_RATES, currency="USD", filters={"country": "DE"},
                 start="2026-01-14", end="2026-01-14")  # fmt: skip
    assert cpm.totals["cost"] == (Decimal("4.02") / Decimal("0.9")).quantize(d("0.000001"))


def test_multiple_currencies_without_rates_is_a_clear_error(report: Reporter, lake: Path) -> None:
    write_events(lake, usd_events(report.workspace_id), batch_id="b_usd")
    with pytest.raises(ValidationError) as caught:
        report(metrics="cost")
    assert caught.value.field == "currency"
    assert "EUR" in caught.value.message and "rates" in caught.value.message
    # Counting needs no rates, and one currency filtered alone needs none either.
    assert report(metrics="clicks").totals == {"clicks": 7}
    assert report(metrics="cost", filters={"campaign": "cmp_1"}).totals == {"cost": d("8.5")}


def test_median_and_customers_by_group(report: Reporter) -> None:
    result = report(dimensions="campaign", metrics="median_time_to_convert,customers,ltv")
    rows = by(result, "campaign")
    assert rows["cmp_1"]["median_time_to_convert"] == 7200  # conv1 and conv2, both 2 h
    assert rows["cmp_2"]["median_time_to_convert"] == 600  # conv3 only (conv4 rejected)
    assert rows["cmp_1"]["customers"] == 2 and rows["cmp_2"]["customers"] == 1
    assert rows["cmp_1"]["ltv"] == 50  # revenue 100 over cu1 and v2
    assert rows["cmp_2"]["ltv"] == 0  # 40 - 40 over cu2


def test_median_of_an_even_count_is_the_mean_of_the_middle_two(
    report: Reporter, lake: Path
) -> None:
    extra = event("conversion", "2026-01-14 10:00", report.workspace_id, status="pending",
                  campaign_id="cmp_9")  # fmt: skip
    extra.click_ts_ms = extra.ts_ms - 1_001  # 1.001 s after its click
    second = event("conversion", "2026-01-14 11:00", report.workspace_id, status="approved",
                   campaign_id="cmp_9")  # fmt: skip
    second.click_ts_ms = second.ts_ms - 2_000
    write_events(lake, [extra, second], batch_id="b_median")
    result = report(filters={"campaign": "cmp_9"}, metrics="median_time_to_convert")
    assert result.totals["median_time_to_convert"] == d("1.5005")  # (1.001 + 2) / 2


def test_new_customers_only_count_a_first_conversion_ever(report: Reporter, lake: Path) -> None:
    # cu1 converts again on Jan 16: a customer in that period, not a new one.
    again = event("conversion", "2026-01-16 12:00", report.workspace_id, status="approved",
                  customer_id="cu1", visitor_id="v1", value="10", currency="EUR",
                  campaign_id="cmp_1", goal_key="sale")  # fmt: skip
    write_events(lake, [again], batch_id="b_again")
    jan_16 = report(start="2026-01-16", end="2026-01-16", metrics="customers,new_customers,cac")
    assert jan_16.totals == {"customers": 1, "new_customers": 0, "cac": None}
    whole = report(metrics="customers,new_customers")
    assert whole.totals == {"customers": 3, "new_customers": 3}


def test_an_empty_lake_gives_an_empty_report(
    container: Container, eur_workspace: NewWorkspace, tmp_path: Path, duckdb_backend: Any
) -> None:
    request = parse_report_request(eur_workspace.workspace.id, start="2026-01-01",
                                   end="2026-01-31", dimensions="day", metrics="clicks,cpa")  # fmt: skip
    query = LakeQuery(tmp_path / "empty", duckdb_backend)
    result = run_report(container, request, query=query)
    assert result.rows == () and result.total_rows == 0
    assert result.totals == {"clicks": 0, "cpa": None}


def test_page_views_and_identify_calls_make_no_rows(report: Reporter, lake: Path) -> None:
    noise = [
        event("pageview", "2026-01-14 10:00", report.workspace_id, campaign_id="cmp_page"),
        event("identify", "2026-01-14 10:00", report.workspace_id, campaign_id="cmp_page"),
    ]
    write_events(lake, noise, batch_id="b_noise")
    campaigns = {row["campaign"] for row in report(dimensions="campaign").rows}
    assert campaigns == {"cmp_1", "cmp_2"}


def test_an_old_file_without_new_columns_is_read(report: Reporter, lake: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    old = lake / "events" / "date=2026-01-14" / "hour=03" / "old.parquet"
    old.parent.mkdir(parents=True, exist_ok=True)
    # A file from before cost, payout and click time existed: a click with the basics only.
    columns = {"event_id": ["evt_old"], "type": ["click"], "ts_ms": [at_ms("2026-01-14 03:00")],
               "workspace_id": [report.workspace_id], "campaign_id": ["cmp_1"],
               "visitor_id": ["v_old"], "is_bot": [False]}  # fmt: skip
    pq.write_table(pa.table(columns), old)
    result = report(metrics="clicks,cost", filters={"campaign": "cmp_1"})
    assert result.totals == {"clicks": 4, "cost": d("8.5")}
