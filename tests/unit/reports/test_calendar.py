"""The 15-minute calendar: local hour, day, week and month of UTC buckets in any time zone."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from perfmark.reports.domain.request import BUCKET_MS, calendar_rows, parse_report_request


def utc_ms(text: str) -> int:
    moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def calendar(start: str, end: str, zone: str) -> dict[int, dict[str, object]]:
    request = parse_report_request("ws", start=start, end=end, timezone=zone)
    columns = calendar_rows(request)
    names = ("hour", "day", "week", "month")
    return {
        int(str(bucket)): {name: columns[name][i] for name in names}
        for i, bucket in enumerate(columns["bucket"])
    }


def local_of(rows: dict[int, dict[str, object]], text: str) -> dict[str, object]:
    return rows[utc_ms(text) // BUCKET_MS]


def test_utc_day_is_96_buckets_and_midnight_is_the_boundary() -> None:
    rows = calendar("2026-01-14", "2026-01-14", "UTC")
    assert len(rows) == 96
    assert min(rows) * BUCKET_MS == utc_ms("2026-01-14T00:00")
    assert local_of(rows, "2026-01-14T23:45") == {
        "hour": "2026-01-14T23:00",
        "day": "2026-01-14",
        "week": "2026-01-12",  # the Monday
        "month": "2026-01-01",
    }


def test_new_york_day_boundaries_follow_the_zone() -> None:
    rows = calendar("2026-01-14", "2026-01-15", "America/New_York")
    # 23:30 UTC is 18:30 EST, the same local day; 05:00 UTC is local midnight.
    assert local_of(rows, "2026-01-14T23:30")["day"] == "2026-01-14"
    assert local_of(rows, "2026-01-14T23:30")["hour"] == "2026-01-14T18:00"
    assert local_of(rows, "2026-01-15T04:45")["day"] == "2026-01-14"
    assert local_of(rows, "2026-01-15T05:00")["day"] == "2026-01-15"
    assert min(rows) * BUCKET_MS == utc_ms("2026-01-14T05:00")


def test_new_york_spring_forward_day_has_23_hours() -> None:
    rows = calendar("2026-03-08", "2026-03-08", "America/New_York")
    assert len(rows) == 23 * 4
    hours = Counter(str(row["hour"]) for row in rows.values())
    assert "2026-03-08T02:00" not in hours  # 02:00-03:00 does not exist that night
    assert hours["2026-03-08T01:00"] == 4 and hours["2026-03-08T03:00"] == 4
    assert min(rows) * BUCKET_MS == utc_ms("2026-03-08T05:00")  # EST midnight
    assert (max(rows) + 1) * BUCKET_MS == utc_ms("2026-03-09T04:00")  # EDT midnight


def test_new_york_fall_back_day_has_25_hours() -> None:
    rows = calendar("2026-11-01", "2026-11-01", "America/New_York")
    assert len(rows) == 25 * 4
    hours = Counter(str(row["hour"]) for row in rows.values())
    # 01:00-02:00 happens twice (EDT, then EST); both land in the local hour 01:00.
    assert hours["2026-11-01T01:00"] == 8
    assert local_of(rows, "2026-11-01T05:30")["hour"] == "2026-11-01T01:00"  # EDT
    assert local_of(rows, "2026-11-01T06:30")["hour"] == "2026-11-01T01:00"  # EST


def test_kathmandu_quarter_hour_offset() -> None:
    rows = calendar("2026-01-14", "2026-01-14", "Asia/Kathmandu")  # +05:45, no DST
    assert len(rows) == 96
    assert min(rows) * BUCKET_MS == utc_ms("2026-01-13T18:15")
    assert local_of(rows, "2026-01-13T18:15") == {
        "hour": "2026-01-14T00:00",
        "day": "2026-01-14",
        "week": "2026-01-12",
        "month": "2026-01-01",
    }
    # 18:00 UTC is 23:45 local on the 13th: outside the range.
    assert utc_ms("2026-01-13T18:00") // BUCKET_MS not in rows
    # 19:00 UTC is 00:45 local, still the local hour 00:00; 19:15 UTC is 01:00 local.
    assert local_of(rows, "2026-01-13T19:00")["hour"] == "2026-01-14T00:00"
    assert local_of(rows, "2026-01-13T19:15")["hour"] == "2026-01-14T01:00"


def test_lord_howe_half_hour_daylight_saving() -> None:
    # Lord Howe is +10:30 in winter and +11:00 in summer: a 30-minute shift.
    fall_back = calendar("2026-04-05", "2026-04-05", "Australia/Lord_Howe")
    assert len(fall_back) == 98  # 24.5 hours
    assert min(fall_back) * BUCKET_MS == utc_ms("2026-04-04T13:00")  # midnight at +11
    assert (max(fall_back) + 1) * BUCKET_MS == utc_ms("2026-04-05T13:30")  # at +10:30
    hours = Counter(str(row["hour"]) for row in fall_back.values())
    assert hours["2026-04-05T01:00"] == 6  # 01:30-02:00 happens twice
    spring = calendar("2026-10-04", "2026-10-04", "Australia/Lord_Howe")
    assert len(spring) == 94  # 23.5 hours
    hours = Counter(str(row["hour"]) for row in spring.values())
    assert hours["2026-10-04T02:00"] == 2  # 02:00-02:30 is skipped


def test_month_and_week_across_a_year_end() -> None:
    rows = calendar("2025-12-31", "2026-01-01", "Asia/Tokyo")
    assert local_of(rows, "2025-12-31T14:59")["month"] == "2025-12-01"
    assert local_of(rows, "2025-12-31T15:00")["month"] == "2026-01-01"
    assert local_of(rows, "2025-12-31T15:00")["week"] == "2025-12-29"


ZONES = ["UTC", "America/New_York", "Asia/Kathmandu", "Australia/Lord_Howe",
         "America/St_Johns", "Pacific/Chatham", "Europe/London", "Asia/Tokyo"]  # fmt: skip


@settings(max_examples=25, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    first=st.dates(min_value=date(2024, 1, 1), max_value=date(2027, 12, 31)),
    days=st.integers(min_value=0, max_value=2),
)
def test_every_bucket_is_on_its_local_day(zone: str, first: date, days: int) -> None:
    last = first + timedelta(days=days)
    rows = calendar(first.isoformat(), last.isoformat(), zone)
    tz = ZoneInfo(zone)
    per_day = Counter(str(row["day"]) for row in rows.values())
    day = first
    while day <= last:
        # Buckets in a local day = its length in UTC (23, 24, 25 hours, or odd ones).
        midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
        following = day + timedelta(days=1)
        next_midnight = datetime(following.year, following.month, following.day, tzinfo=tz)
        length_ms = (next_midnight.timestamp() - midnight.timestamp()) * 1000
        assert per_day[day.isoformat()] * BUCKET_MS == length_ms
        day = following
    assert set(per_day) == {
        (first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)
    }
