"""Journeys built from the lake: touch kinds, windows, cross-device merge, null paths, engines."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from perfmark.adapters.lake import LakeWriter
from perfmark.attribution.domain.models import run_model
from perfmark.attribution.journeys import JourneyOptions, journey_paths
from perfmark.attribution.service import assisted_conversions, top_paths
from perfmark.domain.events import TrackedEvent
from perfmark.errors import ValidationError
from perfmark.reports.query import LakeQuery, connect_engine

WS = "ws_test"
DAY = date(2026, 3, 10)
BASE = datetime(2026, 3, 10, 12, tzinfo=UTC)
_counter = iter(range(1, 10_000))


def _event(kind: str, at: datetime, visitor: str, **fields: object) -> TrackedEvent:
    return TrackedEvent(
        event_id=f"e{next(_counter):05d}",
        type=kind,
        ts_ms=int(at.timestamp() * 1000),
        workspace_id=fields.pop("workspace_id", WS),  # type: ignore[arg-type]
        visitor_id=visitor,
        **fields,  # type: ignore[arg-type]
    )


def click(at: datetime, visitor: str, channel: str, **fields: object) -> TrackedEvent:
    return _event("click", at, visitor, channel=channel, campaign_id=f"cmp_{channel}", **fields)


def conversion(at: datetime, visitor: str, value: str = "10", **fields: object) -> TrackedEvent:
    return _event(
        "conversion",
        at,
        visitor,
        status="approved",
        value=value,
        currency="USD",
        goal_key="sale",
        **fields,
    )


def journeys_lake(tmp_path: Path) -> Path:
    lake = tmp_path / "lake"
    events = [
        # Visitor a: search then email, converts: path "paid_search > email".
        click(BASE - timedelta(days=3), "a", "paid_search"),
        click(BASE - timedelta(days=1), "a", "email"),
        conversion(BASE, "a", value="30"),
        # Visitor b: a click 40 days ago (outside the 30-day window) and an affiliate click.
        click(BASE - timedelta(days=40), "b", "display"),
        click(BASE - timedelta(hours=2), "b", "affiliate"),
        conversion(BASE, "b", value="20"),
        # Visitor c on a phone and c2 on a laptop are one customer: merged by identify.
        click(BASE - timedelta(days=2), "c", "paid_social"),
        _event("identify", BASE - timedelta(days=2), "c", anonymous_id="c", customer_id="cust-1"),
        _event(
            "identify", BASE - timedelta(hours=1), "c2", anonymous_id="c2", customer_id="cust-1"
        ),
        conversion(BASE, "c2", value="50"),
        # Visitor d: an impression 2 hours before (view window 1 day) and an organic visit.
        _event(
            "impression",
            BASE - timedelta(hours=2),
            "d",
            channel="display",
            campaign_id="cmp_display",
        ),
        _event(
            "pageview",
            BASE - timedelta(hours=1),
            "d",
            url="https://shop.example/p",
            referrer="https://www.google.com/search?q=tents",
        ),
        conversion(BASE, "d", value="5"),
        # Visitor e: touches but no conversion: a null path "affiliate".
        click(BASE - timedelta(hours=5), "e", "affiliate"),
        # Visitor f: a bot click is never a touch; a conversion with no touch at all.
        click(BASE - timedelta(hours=3), "f", "native", is_bot=True),
        conversion(BASE, "f"),
        # Visitor a again: a second conversion after a new click: path "affiliate" only.
        click(BASE + timedelta(hours=1), "a", "affiliate"),
        conversion(BASE + timedelta(hours=2), "a", value="15"),
        # Another workspace's journey never shows up.
        click(BASE - timedelta(hours=1), "z", "email", workspace_id="ws_other"),
        conversion(BASE, "z", workspace_id="ws_other"),
    ]
    LakeWriter(lake).write("b1", events)
    return lake


def _paths(result_table) -> dict[str, tuple[float, float, float]]:  # type: ignore[no-untyped-def]
    rows = {}
    for row in range(result_table.n_paths):
        touches = result_table.channels[result_table.offsets[row] : result_table.offsets[row + 1]]
        text = " > ".join(result_table.channel_names[i] for i in touches)
        rows[text] = (
            float(result_table.conversions[row]),
            float(result_table.value[row]),
            float(result_table.nulls[row]),
        )
    return rows


@pytest.fixture
def duckdb_query(tmp_path: Path) -> LakeQuery:
    return LakeQuery(journeys_lake(tmp_path), connect_engine("duckdb"))


def test_paths_follow_touch_kinds_windows_devices_and_previous_conversions(
    duckdb_query: LakeQuery,
) -> None:
    tables = journey_paths(duckdb_query, WS, DAY, DAY)
    assert _paths(tables.paths) == {
        "paid_search > email": (1.0, 30.0, 0.0),
        "affiliate": (2.0, 35.0, 1.0),  # b (20) and a's second conversion (15); e did not convert
        "paid_social": (1.0, 50.0, 0.0),  # c's click credited to the customer's laptop conversion
        "display > organic_search": (1.0, 5.0, 0.0),
    }
    assert tables.conversions_without_touches == 1  # visitor f (its only click was a bot)
    assert tables.path_length == {1: 3, 2: 2}


def test_windows_are_configurable(duckdb_query: LakeQuery) -> None:
    wide = journey_paths(duckdb_query, WS, DAY, DAY, options=JourneyOptions(click_window_days=60))
    assert "display > affiliate" in _paths(wide.paths)  # b's 40-day-old click now counts
    no_views = journey_paths(
        duckdb_query, WS, DAY, DAY, options=JourneyOptions(include_views=False)
    )
    assert _paths(no_views.paths)["organic_search"] == (1.0, 5.0, 0.0)


def test_paths_by_campaign(duckdb_query: LakeQuery) -> None:
    tables = journey_paths(
        duckdb_query, WS, DAY, DAY, options=JourneyOptions(label="campaign", include_visits=False)
    )
    assert _paths(tables.paths)["cmp_paid_search > cmp_email"] == (1.0, 30.0, 0.0)


def test_models_credit_all_conversions_and_reports_read_the_paths(duckdb_query: LakeQuery) -> None:
    tables = journey_paths(duckdb_query, WS, DAY, DAY, per_journey=True)
    for model in ("last_touch", "linear", "markov", "shapley"):
        result = run_model(tables.paths, model)
        assert sum(c.conversions for c in result.credits) == pytest.approx(5.0)
    assert tables.per_journey is not None
    decay = run_model(tables.per_journey, "time_decay")
    assert sum(c.value for c in decay.credits) == pytest.approx(30 + 20 + 50 + 5 + 15)
    assert top_paths(tables.paths)[0]["path"] == "affiliate"
    assisted = {row["channel"]: row for row in assisted_conversions(tables.paths)}
    assert assisted["paid_search"]["assisted_conversions"] == 1.0
    assert assisted["email"]["last_touch_conversions"] == 1.0


def test_bad_windows_and_labels_are_refused() -> None:
    with pytest.raises(ValidationError) as error:
        JourneyOptions(click_window_days=0)
    assert error.value.field == "click_window_days"
    with pytest.raises(ValidationError) as error:
        JourneyOptions(label="country")
    assert error.value.field == "by"


def test_an_empty_lake_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no events"):
        journey_paths(LakeQuery(tmp_path / "lake", connect_engine("duckdb")), WS, DAY, DAY)


@pytest.mark.spark
def test_spark_builds_the_same_paths(tmp_path: Path, java_available: str) -> None:
    lake = journeys_lake(tmp_path)
    duck = journey_paths(LakeQuery(lake, connect_engine("duckdb")), WS, DAY, DAY)
    spark = journey_paths(
        LakeQuery(lake, connect_engine("spark", "local[1]"), "spark"), WS, DAY, DAY
    )
    assert _paths(spark.paths) == _paths(duck.paths)
    assert spark.path_length == duck.path_length
    assert spark.time_lag_days == duck.time_lag_days
    markov_duck = run_model(duck.paths, "markov").conversions_by_channel()
    markov_spark = run_model(spark.paths, "markov").conversions_by_channel()
    assert markov_spark == pytest.approx(markov_duck, abs=1e-9)
