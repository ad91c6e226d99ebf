"""The one definition of every report metric and dimension (docs/metrics.md mirrors it).

Base measures are summed by the query engine; every other metric is derived from them in
exact Decimal arithmetic, and a division by zero gives None (shown as null), never an error
or infinity.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

__all__ = [
    "BASE_MEASURES",
    "DIMENSIONS",
    "METRICS",
    "NON_ADDITIVE_MEASURES",
    "TIME_DIMENSIONS",
    "Dimension",
    "Metric",
    "derive",
    "measures_of",
]

#: Measures the engine aggregates per group (counts and exact sums).
BASE_MEASURES = (
    "impressions",
    "clicks",
    "unique_clicks",
    "conversions_pending",
    "conversions_approved",
    "conversions_rejected",
    "conversions_refunded",
    "conversions_over_cap",
    "leads",
    "sales",
    "revenue",
    "sales_revenue",
    "cost",
    "payout",
    "customers",
    "new_customers",
    "converted_after_click",
    "median_seconds_to_convert",
)

#: Measures that cannot be added up across groups (distinct counts, a median): the engine
#: computes them for exactly the groups a report shows, never from partial groups or rollups.
NON_ADDITIVE_MEASURES = frozenset(
    {"unique_clicks", "customers", "new_customers", "median_seconds_to_convert"}
)

Values = Mapping[str, Decimal | int | None]


@dataclass(frozen=True)
class Metric:
    """A report metric: its name, its formula as written in docs/metrics.md, how it is computed."""

    name: str
    formula: str
    compute: Callable[[Values], Decimal | int | None]
    money: bool = False
    count: bool = False  #: always a whole number (exports show it as an integer)


def _d(values: Values, name: str) -> Decimal:
    value = values.get(name)
    return Decimal(0) if value is None else Decimal(value)


def _ratio(numerator: Decimal, denominator: Decimal, scale: int = 1) -> Decimal | None:
    if denominator == 0:
        return None
    return numerator * scale / denominator


def _conversions(values: Values) -> Decimal:
    return _d(values, "conversions_pending") + _d(values, "conversions_approved")


def _profit(values: Values) -> Decimal:
    return _d(values, "revenue") - _d(values, "cost")


_METRIC_LIST = (
    Metric("impressions", "count of valid impressions", lambda v: _d(v, "impressions"), count=True),
    Metric("clicks", "count of valid clicks (no bots, no fallback redirects)", lambda v: _d(v, "clicks"), count=True),
    Metric("unique_clicks", "distinct visitors among valid clicks", lambda v: _d(v, "unique_clicks"), count=True),
    Metric("ctr", "clicks / impressions", lambda v: _ratio(_d(v, "clicks"), _d(v, "impressions"))),
    Metric("conversions", "conversions pending + approved", _conversions, count=True),
    Metric("conversions_pending", "conversions now pending", lambda v: _d(v, "conversions_pending"), count=True),
    Metric("conversions_approved", "conversions now approved", lambda v: _d(v, "conversions_approved"), count=True),
    Metric("conversions_rejected", "conversions now rejected", lambda v: _d(v, "conversions_rejected"), count=True),
    Metric("conversions_refunded", "conversions now refunded", lambda v: _d(v, "conversions_refunded"), count=True),
    Metric("conversions_over_cap", "conversions recorded over a cap (not billable)", lambda v: _d(v, "conversions_over_cap"), count=True),
    Metric("conversion_rate", "conversions / clicks", lambda v: _ratio(_conversions(v), _d(v, "clicks"))),
    Metric("cost", "what advertisers are charged: CPC, CPM and conversion prices, plus imported ad spend", lambda v: _d(v, "cost"), money=True),
    Metric("revenue", "value of conversions pending + approved", lambda v: _d(v, "revenue"), money=True),
    Metric("payout", "what publishers earn", lambda v: _d(v, "payout"), money=True),
    Metric("profit", "revenue - cost", _profit, money=True),
    Metric("margin", "(revenue - cost) / revenue", lambda v: _ratio(_profit(v), _d(v, "revenue"))),
    Metric("network_margin", "cost - payout (what the platform keeps)", lambda v: _d(v, "cost") - _d(v, "payout"), money=True),
    Metric("cpc", "cost / clicks", lambda v: _ratio(_d(v, "cost"), _d(v, "clicks")), money=True),
    Metric("cpm", "cost / impressions x 1000", lambda v: _ratio(_d(v, "cost"), _d(v, "impressions"), 1000), money=True),
    Metric("cpl", "cost / leads (conversions of lead and signup goals)", lambda v: _ratio(_d(v, "cost"), _d(v, "leads")), money=True),
    Metric("cpa", "cost / conversions", lambda v: _ratio(_d(v, "cost"), _conversions(v)), money=True),
    Metric("cac", "cost / new customers", lambda v: _ratio(_d(v, "cost"), _d(v, "new_customers")), money=True),
    Metric("roas", "revenue / cost", lambda v: _ratio(_d(v, "revenue"), _d(v, "cost"))),
    Metric("roi", "(revenue - cost) / cost", lambda v: _ratio(_profit(v), _d(v, "cost"))),
    Metric("epc", "revenue / clicks", lambda v: _ratio(_d(v, "revenue"), _d(v, "clicks")), money=True),
    Metric("aov", "sales revenue / sales (conversions of sale goals)", lambda v: _ratio(_d(v, "sales_revenue"), _d(v, "sales")), money=True),
    Metric("median_time_to_convert", "median seconds from click to conversion", lambda v: v.get("median_seconds_to_convert")),
    Metric("customers", "distinct customers (or visitors) who converted", lambda v: _d(v, "customers"), count=True),
    Metric("new_customers", "customers whose first conversion ever is in the period", lambda v: _d(v, "new_customers"), count=True),
    Metric("ltv", "revenue / customers over the period", lambda v: _ratio(_d(v, "revenue"), _d(v, "customers")), money=True),
)  # fmt: skip

#: Every metric by name, in catalog order.
METRICS: dict[str, Metric] = {metric.name: metric for metric in _METRIC_LIST}


def derive(values: Values, names: tuple[str, ...]) -> dict[str, Decimal | int | None]:
    """Compute the named metrics from one group's base measures."""
    return {name: METRICS[name].compute(values) for name in names}


class _Reads(dict[str, Decimal | int | None]):
    """Base measures that all read as 1 and remember being read."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def get(self, key: str, default: object = None) -> Decimal | int | None:
        self.names.add(key)
        return 1


def measures_of(metrics: tuple[str, ...]) -> tuple[str, ...]:
    """The base measures the named metrics read, in BASE_MEASURES order.

    Found by running each formula once on a recording mapping (every formula reads all of
    its inputs before it divides), so the list can never drift from the formulas.
    """
    reads = _Reads()
    derive(reads, metrics)
    unknown = reads.names - set(BASE_MEASURES)
    if unknown:  # a formula reading a measure the engine does not compute is a bug here
        raise KeyError(f"metrics read unknown base measures {sorted(unknown)}")
    return tuple(name for name in BASE_MEASURES if name in reads.names)


@dataclass(frozen=True)
class Dimension:
    """A report dimension: its name and the event column (or calendar field) behind it."""

    name: str
    column: str
    description: str


_DIMENSION_LIST = (
    Dimension("campaign", "campaign_id", "campaign id"),
    Dimension("advertiser", "advertiser_id", "advertiser id"),
    Dimension("publisher", "publisher_id", "publisher id"),
    Dimension("channel", "channel", "channel of the campaign"),
    Dimension("offer", "offer_id", "offer id"),
    Dimension("goal", "goal_key", "goal key (conversions only)"),
    Dimension("creative", "creative", "creative key"),
    Dimension("landing_page", "landing_page", "landing page key"),
    *(Dimension(f"sub{n}", f"sub{n}", f"sub id {n}") for n in range(1, 6)),
    *(Dimension(f"utm_{p}", f"utm_{p}", f"UTM {p}") for p in ("source", "medium", "campaign", "term", "content")),
    Dimension("country", "country", "ISO country code"),
    Dimension("device", "device", "desktop, mobile, tablet, bot or other"),
    Dimension("os", "os", "operating system family"),
    Dimension("browser", "browser", "browser family"),
    Dimension("hour", "hour", "hour start in the report time zone"),
    Dimension("day", "day", "date in the report time zone"),
    Dimension("week", "week", "Monday of the ISO week in the report time zone"),
    Dimension("month", "month", "first day of the month in the report time zone"),
)  # fmt: skip

#: Every dimension by name.
DIMENSIONS: dict[str, Dimension] = {dimension.name: dimension for dimension in _DIMENSION_LIST}
TIME_DIMENSIONS = frozenset({"hour", "day", "week", "month"})
