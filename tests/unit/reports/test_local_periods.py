"""The query's local periods (UTC time plus the zone's offset) agree with the calendar."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import available_timezones

import ibis
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmark.reports.domain.request import BUCKET_MS, calendar_rows, parse_report_request
from perfmark.reports.query import label_local_periods, local_periods

PERIODS = ("hour", "day", "week", "month")
#: Zones with half-hour and 45-minute offsets and DST, plus a sample of all the others.
ZONES = sorted(
    {"UTC", "America/New_York", "Asia/Tokyo", "Asia/Kathmandu", "Asia/Kolkata",
     "Australia/Lord_Howe", "Pacific/Chatham", "America/St_Johns", "Europe/Dublin"}
    | set(sorted(available_timezones())[::40])
)  # fmt: skip
BACKEND = ibis.duckdb.connect()


@settings(max_examples=40, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    start=st.dates(min_value=date(2000, 1, 1), max_value=date(2037, 12, 1)),
    length=st.integers(min_value=0, max_value=40),
    offsets=st.lists(st.integers(min_value=0, max_value=10**10), min_size=1, max_size=30),
)
def test_every_event_gets_the_calendars_hour_day_week_and_month(
    zone: str, start: date, length: int, offsets: list[int]
) -> None:
    request = parse_report_request(
        "ws", start=start, end=start + timedelta(days=length), timezone=zone,
        dimensions="day",
    )  # fmt: skip
    start_ms, end_ms = request.utc_range_ms()
    stamps = sorted({start_ms + offset % (end_ms - start_ms) for offset in offsets})
    table = ibis.memtable({"ts": stamps}, schema={"ts": "int64"})
    keyed = table.mutate(**local_periods(table.ts, request, PERIODS)).order_by("ts")
    rows = BACKEND.to_pyarrow(keyed).to_pylist()
    calendar = calendar_rows(request)
    by_bucket = {bucket: index for index, bucket in enumerate(calendar["bucket"])}
    for row in rows:
        index = by_bucket[row["ts"] // BUCKET_MS]
        for name in PERIODS:
            one = label_local_periods(
                parse_report_request("ws", start=request.start, end=request.end,
                                     timezone=zone, dimensions=name), [{name: row[name]}],
            )[0][name]  # fmt: skip
            assert one == str(calendar[name][index]), (name, row["ts"], zone)
