"""Customer journeys from the event lake, aggregated in the query engine (DuckDB or Spark).

Touchpoints are valid clicks (channel from the campaign), impressions (view-through, with
their own shorter window) and tracked visits (page views classified by UTM and referrer).
A journey belongs to a customer id when the visitor was identified (merging devices), else
to the visitor id. A conversion ends a journey: its path is the touches since the journey's
previous conversion and inside the lookback windows. Journeys that have not converted give
the "null" paths. Only the aggregated paths (or, for time decay, per-journey arrays) leave
the engine: millions of journeys never become Python objects.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from perfmark.attribution.domain.paths import PathTable
from perfmark.errors import ValidationError
from perfmark.reports.compiled import to_pyarrow
from perfmark.reports.domain.request import ReportRequest
from perfmark.reports.query import LakeQuery

__all__ = [
    "JourneyOptions",
    "JourneyTables",
    "TOUCH_LABELS",
    "VisitRules",
    "journey_paths",
]

DAY_MS = 86_400_000
#: What a touch is labelled by in paths.
TOUCH_LABELS = ("channel", "campaign", "publisher")
_LABEL_COLUMN = {"channel": "channel", "campaign": "campaign_id", "publisher": "publisher_id"}
#: The columns journeys read from a window's events (kept once per run, see journey_paths).
_KEPT_COLUMNS = (
    "journey", "event_id", "type", "ts_ms", "status", "value", "is_bot", "drop_reason",
    "click_id", "channel", "campaign_id", "publisher_id", "utm_source", "utm_medium",
    "utm_campaign", "referrer", "url",
)  # fmt: skip


@dataclass(frozen=True)
class VisitRules:
    """How a tracked visit (page view) is classified; the defaults are documented in docs/attribution.md."""

    paid_mediums: tuple[str, ...] = (
        "cpc",
        "ppc",
        "paid",
        "paidsearch",
        "paid_search",
        "cpm",
        "display",
        "paid_social",
        "affiliate",
    )
    email_mediums: tuple[str, ...] = ("email", "e-mail", "newsletter")
    social_mediums: tuple[str, ...] = ("social", "social-network", "social_media", "sm")
    social_hosts: tuple[str, ...] = (
        "facebook.",
        "instagram.",
        "t.co",
        "twitter.",
        "x.com",
        "linkedin.",
        "pinterest.",
        "reddit.",
        "youtube.",
        "tiktok.",
    )
    search_hosts: tuple[str, ...] = ("google.", "bing.", "duckduckgo.", "yahoo.", "baidu.", "yandex.", "ecosia.", "qwant.")  # fmt: skip


@dataclass(frozen=True)
class JourneyOptions:
    """Windows and touch kinds of a journey analysis."""

    click_window_days: int = 30
    view_window_days: int = 1
    include_views: bool = True
    include_visits: bool = True
    label: str = "channel"
    visit_rules: VisitRules = VisitRules()

    def __post_init__(self) -> None:
        if self.click_window_days < 1:
            raise ValidationError(
                f"click_window_days is {self.click_window_days}; a lookback window is at least 1 day",
                field="click_window_days",
            )
        if self.view_window_days < 0:
            raise ValidationError(
                "view_window_days must be 0 (no views) or more", field="view_window_days"
            )
        if self.label not in TOUCH_LABELS:
            raise ValidationError(
                f"by {self.label!r} is unknown; use one of {', '.join(TOUCH_LABELS)}", field="by"
            )


@dataclass(frozen=True)
class JourneyTables:
    """Aggregated paths for the models, and the journey-shape reports."""

    paths: PathTable
    per_journey: PathTable | None
    conversions_without_touches: int
    path_length: dict[int, int]
    time_lag_days: dict[int, int]
    drilldown: pa.Table | None = None  #: latest conversions: conv_id, conv_ms, value, path, lags


def _visit_channel(t: ir.Table, rules: VisitRules) -> Any:
    medium = t.utm_medium.lower()
    referrer_host = t.referrer.re_extract(r"^[a-zA-Z]+://([^/:?#]+)", 1).lower()
    page_host = t.url.re_extract(r"^[a-zA-Z]+://([^/:?#]+)", 1).lower()

    def host_in(hosts: tuple[str, ...]) -> Any:
        condition = ibis.literal(False)
        for host in hosts:
            condition = condition | referrer_host.contains(host)
        return condition

    external = (
        t.referrer.notnull() & (referrer_host != "") & (referrer_host != page_host.fill_null(""))
    )
    return ibis.cases(
        (medium.isin(list(rules.paid_mediums)).fill_null(False), "paid"),
        (medium.isin(list(rules.email_mediums)).fill_null(False), "email"),
        (
            medium.isin(list(rules.social_mediums)).fill_null(False)
            | (external & host_in(rules.social_hosts)).fill_null(False),
            "social",
        ),
        ((external & host_in(rules.search_hosts)).fill_null(False), "organic_search"),
        (external.fill_null(False), "referral"),
        (t.referrer.isnull() | (referrer_host == ""), "direct"),
        else_=ibis.null(),
    )


def _journey_key(events: ir.Table, workspace_id: str) -> tuple[ir.Table, ir.Table]:
    """Events of the workspace with a journey key: the customer id of an identified visitor."""
    t = events.filter(events.workspace_id == workspace_id)
    identities = t.filter(
        (t.type == "identify") & t.anonymous_id.notnull() & t.customer_id.notnull()
    )
    identities = identities.group_by(ident_visitor=identities.anonymous_id).aggregate(
        ident_customer=identities.customer_id.max()
    )
    joined = t.left_join(identities, t.visitor_id == identities.ident_visitor)
    keyed = joined.mutate(
        journey=joined.customer_id.fill_null(joined.ident_customer).fill_null(joined.visitor_id)
    ).drop("ident_visitor", "ident_customer")
    return keyed, identities


def _touches(t: ir.Table, options: JourneyOptions) -> ir.Table:
    valid = ~t.is_bot.fill_null(False) & t.drop_reason.isnull() & t.journey.notnull()
    label_column = _LABEL_COLUMN[options.label]
    click = t.filter(valid & (t.type == "click")).select(
        journey="journey", touch_ms="ts_ms", label=t[label_column].cast("string"),
        window_ms=ibis.literal(options.click_window_days * DAY_MS, type="int64"),
    )  # fmt: skip
    parts = [click]
    if options.include_views and options.view_window_days > 0:
        view = t.filter(valid & (t.type == "impression")).select(
            journey="journey", touch_ms="ts_ms", label=t[label_column].cast("string"),
            window_ms=ibis.literal(options.view_window_days * DAY_MS, type="int64"),
        )  # fmt: skip
        parts.append(view)
    if options.include_visits:
        visits = t.filter(valid & (t.type == "pageview") & t.click_id.isnull())
        visits = visits.mutate(label=_visit_channel(visits, options.visit_rules))
        visits = visits.filter(visits.label.notnull()).select(
            journey="journey", touch_ms="ts_ms", label="label",
            window_ms=ibis.literal(options.click_window_days * DAY_MS, type="int64"),
        )  # fmt: skip
        parts.append(visits)
    touches = parts[0]
    for part in parts[1:]:
        touches = touches.union(part)
    return touches.filter(touches.label.notnull())


def journey_paths(
    query: LakeQuery,
    workspace_id: str,
    start: date,
    end: date,
    timezone: str = "UTC",
    options: JourneyOptions | None = None,
    *,
    per_journey: bool = False,
    drilldown_limit: int | None = None,
) -> JourneyTables:
    """Paths of the conversions (and non-converting journeys) in the local date range."""
    keep = _Kept(query)
    try:
        return _journey_paths(
            query, keep, workspace_id, start, end, timezone, options,
            per_journey=per_journey, drilldown_limit=drilldown_limit,
        )  # fmt: skip
    finally:
        keep.drop()


class _Kept:
    """Intermediate tables computed once and read by several queries, dropped afterwards.

    On DuckDB each is a temporary table of the thread's connection (Ibis's own `cache()`
    fails to drop its tables on this DuckDB). Spark plans are left as they are: Spark
    re-reads what it needs, and a cluster's memory is not ours to fill.
    """

    def __init__(self, query: LakeQuery) -> None:
        self.backend = query.backend
        self.enabled = query.engine == "duckdb"
        self.names: list[str] = []

    def __call__(self, expression: ir.Table) -> ir.Table:
        if not self.enabled:
            return expression
        name = f"perfmark_journeys_{uuid.uuid4().hex}"
        table: ir.Table = self.backend.create_table(name, expression, temp=True)
        self.names.append(name)
        return table

    def drop(self) -> None:
        for name in self.names:
            # Plain SQL: Ibis's drop_table renders a statement this DuckDB refuses. The
            # name is ours (a uuid), never user input.
            self.backend.con.execute(f'DROP TABLE IF EXISTS "{name}"')
        self.names.clear()


def _journey_paths(
    query: LakeQuery,
    keep: _Kept,
    workspace_id: str,
    start: date,
    end: date,
    timezone: str,
    options: JourneyOptions | None,
    *,
    per_journey: bool,
    drilldown_limit: int | None,
) -> JourneyTables:
    options = options or JourneyOptions()
    events = query.events()
    if events is None:
        raise ValidationError(
            "there are no events in the lake yet; nothing to attribute", field="from"
        )
    window = ReportRequest(workspace_id=workspace_id, start=start, end=end, timezone=timezone)
    start_ms, end_ms = window.utc_range_ms()
    longest_ms = max(options.click_window_days, options.view_window_days) * DAY_MS
    keyed, _ = _journey_key(events, workspace_id)
    keyed = keyed.filter((keyed.ts_ms >= start_ms - longest_ms) & (keyed.ts_ms < end_ms))
    # The window's events are read from the lake once and kept: the outputs below are
    # several queries over them (and over the per-conversion and open-journey paths).
    keyed = keep(keyed.select(*_KEPT_COLUMNS))
    touches = _touches(keyed, options)

    conv = keyed.filter(
        (keyed.type == "conversion")
        & keyed.status.isin(["pending", "approved"])
        & keyed.journey.notnull()
    )
    order = ibis.window(group_by=conv.journey, order_by=[conv.ts_ms, conv.event_id])
    conv = conv.select(
        conv_id="event_id", conv_journey="journey", conv_ms="ts_ms",
        value=conv.value.cast("float64").fill_null(0.0),
        prev_ms=conv.ts_ms.lag().over(order),
    )  # fmt: skip
    conv_in_range = conv.filter((conv.conv_ms >= start_ms) & (conv.conv_ms < end_ms))
    pairs = conv_in_range.join(
        touches,
        [
            conv_in_range.conv_journey == touches.journey,
            touches.touch_ms <= conv_in_range.conv_ms,
            touches.touch_ms > conv_in_range.prev_ms.fill_null(-1),
            touches.touch_ms >= conv_in_range.conv_ms - touches.window_ms,
        ],
    )
    # Touches are collected as (time, label, lag) structs and the arrays sorted afterwards:
    # ordered aggregation is not portable (Ibis cannot order a collect on Spark).
    pairs = pairs.mutate(
        touch=ibis.struct(
            {"t": pairs.touch_ms, "l": pairs.label, "d": (pairs.conv_ms - pairs.touch_ms) / DAY_MS}
        )
    )
    per_conversion = pairs.group_by(["conv_id", "conv_ms", "value"]).aggregate(
        touch_list=pairs.touch.collect(),
        touches=pairs.count(),
        first_touch_ms=pairs.touch_ms.min(),
    )
    ordered = per_conversion.touch_list.sort()
    per_conversion = per_conversion.mutate(
        path=ordered.map(lambda touch: touch["l"]), lags=ordered.map(lambda touch: touch["d"])
    ).drop("touch_list")
    per_conversion = keep(per_conversion.mutate(path_text=per_conversion.path.join(" > ")))
    converted_paths = per_conversion.group_by("path_text").aggregate(
        conversions=per_conversion.count(), value=per_conversion.value.sum()
    )

    last_conv = conv.group_by(last_journey=conv.conv_journey).aggregate(last_ms=conv.conv_ms.max())
    open_touches = touches.filter((touches.touch_ms >= start_ms) & (touches.touch_ms < end_ms))
    open_touches = open_touches.left_join(last_conv, open_touches.journey == last_conv.last_journey)
    open_touches = open_touches.filter(open_touches.touch_ms > open_touches.last_ms.fill_null(-1))
    open_touches = open_touches.mutate(
        touch=ibis.struct({"t": open_touches.touch_ms, "l": open_touches.label})
    )
    open_journeys = open_touches.group_by("journey").aggregate(
        touch_list=open_touches.touch.collect()
    )
    open_journeys = open_journeys.mutate(
        path=open_journeys.touch_list.sort().map(lambda touch: touch["l"])
    ).drop("touch_list")
    open_journeys = keep(open_journeys.mutate(path_text=open_journeys.path.join(" > ")))
    null_paths = open_journeys.group_by("path_text").aggregate(nulls=open_journeys.count())

    backend = query.backend
    paths = _merge_paths(to_pyarrow(backend, converted_paths), to_pyarrow(backend, null_paths))
    journeys = None
    if per_journey:
        journeys = _per_journey(
            to_pyarrow(backend, per_conversion.select("path", "lags", "value")),
            to_pyarrow(backend, open_journeys.select("path")),
            paths.channel_names,
        )
    lengths = to_pyarrow(
        backend, per_conversion.group_by("touches").aggregate(n=per_conversion.count())
    )
    lag_days = ((per_conversion.conv_ms - per_conversion.first_touch_ms) / DAY_MS).floor()
    with_lag = per_conversion.mutate(lag=lag_days.cast("int64"))
    lags = to_pyarrow(backend, with_lag.group_by("lag").aggregate(n=with_lag.count()))
    total_conversions = to_pyarrow(backend, conv_in_range.count().as_table()).column(0)[0].as_py()
    attributed = int(sum(lengths.column("n").to_pylist()))
    drilldown = None
    if drilldown_limit:
        latest = per_conversion.order_by([ibis.desc("conv_ms"), "conv_id"]).limit(drilldown_limit)
        drilldown = to_pyarrow(
            backend, latest.select("conv_id", "conv_ms", "value", "path", "lags")
        )
    return JourneyTables(
        drilldown=drilldown,
        paths=paths,
        per_journey=journeys,
        conversions_without_touches=int(total_conversions) - attributed,
        path_length=dict(
            zip(lengths.column("touches").to_pylist(), lengths.column("n").to_pylist(), strict=True)
        ),
        time_lag_days=dict(
            zip(lags.column("lag").to_pylist(), lags.column("n").to_pylist(), strict=True)
        ),
    )


def _merge_paths(converted: pa.Table, nulls: pa.Table) -> PathTable:
    """One row per unique path (there are few): conversions, value and non-converting journeys."""
    rows: dict[str, list[float]] = {}
    for text, count, value in zip(
        converted.column("path_text").to_pylist(),
        converted.column("conversions").to_pylist(),
        converted.column("value").to_pylist(),
        strict=True,
    ):
        rows[text] = [float(count), float(value or 0), 0.0]
    for text, count in zip(
        nulls.column("path_text").to_pylist(), nulls.column("nulls").to_pylist(), strict=True
    ):
        rows.setdefault(text, [0.0, 0.0, 0.0])[2] += float(count)
    if not rows:
        raise ValidationError(
            "no journey touches this date range; widen from/to or the lookback windows",
            field="from",
        )
    texts = sorted(rows)
    amounts = np.array([rows[text] for text in texts], dtype=np.float64).reshape(len(texts), 3)
    return _table_from_strings(texts, amounts[:, 0], amounts[:, 1], amounts[:, 2])


def _table_from_strings(
    paths: list[str],
    conversions: np.ndarray[Any, Any],
    value: np.ndarray[Any, Any],
    nulls: np.ndarray[Any, Any],
) -> PathTable:
    names: dict[str, int] = {}
    flat: list[int] = []
    offsets = [0]
    for text in paths:
        for label in text.split(" > ") if text else []:
            flat.append(names.setdefault(label, len(names)))
        offsets.append(len(flat))
    return PathTable(
        channel_names=tuple(names),
        channels=np.array(flat, dtype=np.int32),
        offsets=np.array(offsets, dtype=np.int64),
        conversions=conversions,
        value=value,
        nulls=nulls,
    )


def _per_journey(
    converting: pa.Table, open_journeys: pa.Table, names: tuple[str, ...]
) -> PathTable:
    """One row per journey with per-touch lags (for time decay), built with Arrow kernels."""
    path_column = pa.concat_arrays(
        [converting.column("path").combine_chunks(), open_journeys.column("path").combine_chunks()]
    )
    flat = pc.list_flatten(path_column)
    channels = pc.index_in(flat, value_set=pa.array(names, pa.string())).to_numpy(
        zero_copy_only=False
    )
    offsets = np.asarray(path_column.offsets, dtype=np.int64)
    n_conv, n_open = converting.num_rows, open_journeys.num_rows
    lags = pc.list_flatten(converting.column("lags").combine_chunks()).to_numpy(
        zero_copy_only=False
    )
    return PathTable(
        channel_names=names,
        channels=channels.astype(np.int32),
        offsets=offsets,
        conversions=np.concatenate([np.ones(n_conv), np.zeros(n_open)]),
        value=np.concatenate(
            [converting.column("value").to_numpy(zero_copy_only=False), np.zeros(n_open)]
        ),
        nulls=np.concatenate([np.zeros(n_conv), np.ones(n_open)]),
        lag_days=np.concatenate([lags.astype(np.float64), np.zeros(int(offsets[-1]) - len(lags))]),
    )
