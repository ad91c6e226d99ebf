"""The same report suite on DuckDB and on Spark in local mode must give equal results.

One Spark session serves the module (it takes tens of seconds to start). Every report runs
through `run_report` with a `LakeQuery` on each engine, and the exported JSON (rows, totals,
previous period) must be identical, value for value.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import date
from typing import Any

import ibis
import pytest

from perfmark.domain.accounts import WorkspaceSpec
from perfmark.reports.domain.catalog import METRICS
from perfmark.reports.domain.request import parse_report_request
from perfmark.reports.export import report_to_json
from perfmark.reports.query import LakeQuery, connect_engine
from perfmark.reports.rollups import RollupQuery, build_rollups
from perfmark.reports.service import run_report
from perfmark.services.accounts import create_workspace
from perfmark.services.container import Container, build_container
from perfmark.settings import lake_directory, load_settings

from .lake_data import USD_RATES, standard_events, usd_events, write_events

pytestmark = pytest.mark.spark

ALL = ",".join(METRICS)
#: The report suite: one report per case, each a set of parse_report_request arguments.
SUITE: dict[str, dict[str, Any]] = {
    # Distinct counts and the median (the costly kind on Spark) in three reports only.
    "totals_every_metric": {"metrics": ALL},
    "campaign_day_new_york": {"dimensions": "campaign,day", "timezone": "America/New_York",
                              "metrics": ALL},
    "customers_by_week_kathmandu": {"dimensions": "week", "timezone": "Asia/Kathmandu",
                                    "metrics": "unique_clicks,customers,new_customers,cac,ltv,"
                                               "median_time_to_convert"},
    "campaign_hour_tokyo": {"dimensions": "campaign,hour", "timezone": "Asia/Tokyo",
                            "metrics": "clicks,conversions,cost,revenue,roas"},
    "month_country_lord_howe": {"dimensions": "month,country", "timezone": "Australia/Lord_Howe",
                                "metrics": "impressions,ctr,cpm,cost"},
    "goal_on_click_date": {"dimensions": "goal,day", "date_basis": "click",
                           "metrics": "conversions,conversions_refunded,revenue,aov,cpl,payout"},
    "sub1_sorted_paged": {"dimensions": "sub1", "order_by": "cpa", "limit": 2, "offset": 1,
                          "metrics": "clicks,cost,cpa"},
    "filtered_by_country_device": {"filters": {"country": "US", "device": "desktop,mobile"},
                                   "dimensions": "publisher,device",
                                   "metrics": "clicks,conversion_rate,epc,payout,network_margin"},
    "compare_by_campaign": {"start": "2026-01-15", "end": "2026-01-16", "compare": True,
                            "dimensions": "campaign", "metrics": "clicks,conversions,revenue,cpa"},
    "many_dimensions": {"dimensions": "advertiser,offer,creative,landing_page,channel,utm_source,"
                                      "utm_medium,browser,os",
                        "metrics": "clicks,conversions,profit,margin,roi"},
    "in_usd": {"currency": "USD", "dimensions": "campaign", "metrics": "cost,revenue,payout,cpc"},
}  # fmt: skip


@pytest.fixture(scope="module")
def lake_container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Container, str]]:
    """A store and a lake with the standard EUR dataset and the USD campaign."""
    home = tmp_path_factory.mktemp("spark_equality")
    container = build_container(load_settings({"PERFMARK_HOME": str(home)}))
    workspace = create_workspace(container, WorkspaceSpec(name="Spark", currency="EUR"), "o@x.org")
    workspace_id = workspace.workspace.id
    lake = lake_directory(container.settings)
    write_events(lake, standard_events(workspace_id))
    write_events(lake, usd_events(workspace_id), batch_id="b_usd")
    yield container, workspace_id
    container.engine.dispose()


@pytest.fixture(scope="module")
def engines(
    java_available: str, lake_container: tuple[Container, str]
) -> Iterator[dict[str, LakeQuery]]:
    """The query layer on DuckDB and on Spark (local[1]) over the same lake."""
    import pyspark  # the spark extra must be installed where this suite runs

    assert pyspark.__version__
    lake = lake_directory(lake_container[0].settings)
    spark = connect_engine("spark", "local[1]")
    spark._session.sparkContext.setLogLevel("ERROR")
    duckdb = ibis.duckdb.connect()
    yield {"duckdb": LakeQuery(lake, duckdb, "duckdb"), "spark": LakeQuery(lake, spark, "spark")}
    duckdb.disconnect()
    spark.disconnect()


def run(engine: LakeQuery, lake_container: tuple[Container, str], case: dict[str, Any]) -> Any:
    container, workspace_id = lake_container
    arguments = {"start": "2026-01-14", "end": "2026-01-16", **case}
    request = parse_report_request(workspace_id, **arguments)
    return report_to_json(run_report(container, request, rates=USD_RATES, query=engine))


@pytest.mark.parametrize("name", list(SUITE))
def test_duckdb_and_spark_agree(
    name: str, engines: dict[str, LakeQuery], lake_container: tuple[Container, str]
) -> None:
    on_duckdb = run(engines["duckdb"], lake_container, SUITE[name])
    on_spark = run(engines["spark"], lake_container, SUITE[name])
    assert on_duckdb["rows"] or on_duckdb["totals"]  # never a vacuous comparison
    assert on_spark == on_duckdb


def test_spark_gives_the_hand_computed_totals(
    engines: dict[str, LakeQuery], lake_container: tuple[Container, str]
) -> None:
    # The standard dataset plus the USD campaign, converted to EUR (see lake_data.USD_RATES).
    totals = run(engines["spark"], lake_container,
                 {"metrics": "clicks,unique_clicks,cost,revenue,payout,customers,"
                             "median_time_to_convert"})["totals"]  # fmt: skip
    assert totals == {
        "clicks": 7,
        "unique_clicks": 5,
        "cost": "18.22",
        "revenue": "140",
        "payout": "10.73",
        "customers": 4,
        "median_time_to_convert": "4500",  # of 600, 1800, 7200, 7200: (1800 + 7200) / 2
    }


def test_a_file_still_being_written_is_never_read(
    engines: dict[str, LakeQuery], lake_container: tuple[Container, str]
) -> None:
    before = run(engines["spark"], lake_container, {"metrics": "clicks"})["totals"]["clicks"]
    lake = lake_directory(lake_container[0].settings)
    partial = lake / "events" / "date=2026-01-14" / "hour=10" / "b_partial.parquet.tmp"
    partial.write_bytes(b"not parquet yet")  # a file being written is never read
    try:
        for engine in engines.values():
            assert run(engine, lake_container, {"metrics": "clicks"})["totals"]["clicks"] == before
    finally:
        partial.unlink()


def test_rollups_built_and_read_by_spark_equal_raw_events_on_duckdb(
    engines: dict[str, LakeQuery], lake_container: tuple[Container, str]
) -> None:
    spark = engines["spark"]
    rolled = RollupQuery(spark.lake, spark.backend, "spark")
    days = [date(2026, 1, 14), date(2026, 1, 15), date(2026, 1, 16)]
    try:
        assert build_rollups(rolled, days) == days
        case = {"dimensions": "campaign,day", "timezone": "Asia/Tokyo",
                "metrics": "impressions,clicks,conversions,cost,revenue,cpa,roas"}  # fmt: skip
        assert run(rolled, lake_container, case) == run(engines["duckdb"], lake_container, case)
    finally:
        shutil.rmtree(spark.lake / "rollups")
