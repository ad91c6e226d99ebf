"""Overview: KPI tiles with their change, the daily trend and the top campaigns, kept live."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from perfmark.dashboard.cache import lake_version
from perfmark.dashboard.pages.common import ContainerDep, DaysQuery, chart_spec, page_context
from perfmark.dashboard.rendering import render
from perfmark.dashboard.routing import CurrentSession
from perfmark.dashboard.services import Overview, overview, period_ending_today
from perfmark.services.container import Container

__all__ = ["REFRESH_INTERVAL_S", "add_routes", "trend_chart"]

#: How often an open overview asks for fresh figures (the processor commits every few
#: hundred milliseconds, so new events show within about this long).
REFRESH_INTERVAL_S = 10
_SERIES_LABELS = {
    "cost": "Spend",
    "revenue": "Revenue",
    "conversions": "Conversions",
    "clicks": "Clicks",
    "payout": "Earnings",
}
_MONEY_AXIS = frozenset({"cost", "revenue", "payout"})


def trend_chart(data: Overview) -> dict[str, Any]:
    """The trend chart: counts on the left axis, amounts (in the report currency) on the right."""
    return chart_spec(
        "line",
        data.trend_days,
        [
            (
                f"{_SERIES_LABELS[name]} ({data.currency})"
                if name in _MONEY_AXIS
                else _SERIES_LABELS[name],
                values,
                "y2" if name in _MONEY_AXIS else "y",
            )
            for name, values in data.trend.items()
        ],
    )


def _freshness(container: Container, today: str) -> str:
    """What the figures depend on besides the request: the lake's version and the day."""
    return f"{lake_version(container)}:{today}"


def add_routes(router: APIRouter) -> None:
    """GET / (the page) and GET /overview/live (the fragment it polls)."""

    def _context(request: Request, data: Overview, days: int, seen: str) -> dict[str, Any]:
        return page_context(
            request,
            "overview",
            "Overview",
            data=data,
            days=days,
            seen=seen,
            chart=trend_chart(data),
            refresh_s=REFRESH_INTERVAL_S,
            twin=f"GET /api/dashboard/overview?days={days}",
        )

    @router.get("/", include_in_schema=False)
    def overview_page(
        request: Request, session: CurrentSession, container: ContainerDep, days: DaysQuery = 7
    ) -> Response:
        principal = session.principal
        period = period_ending_today(container, principal, days)
        data = overview(container, principal, period)
        # The version of the figures shown, not the lake's: figures kept from before the
        # newest events make the next poll fetch the new ones.
        seen = f"{data.data_version}:{period.end.isoformat()}"
        return render(request, "overview.html", _context(request, data, days, seen))

    @router.get("/overview/live", include_in_schema=False)
    def overview_live(
        request: Request,
        session: CurrentSession,
        container: ContainerDep,
        days: DaysQuery = 7,
        seen: Annotated[str, Query(max_length=80)] = "",
    ) -> Response:
        principal = session.principal
        period = period_ending_today(container, principal, days)
        fresh = _freshness(container, period.end.isoformat())
        if seen == fresh:
            # Nothing new in the lake and still the same day: HTMX keeps the page as it is.
            return Response(status_code=204)
        # The poll runs in the background: it waits for the new figures rather than
        # showing the kept ones again.
        data = overview(container, principal, period, stale_for_s=0)
        shown = f"{data.data_version}:{period.end.isoformat()}"
        return render(request, "_overview_live.html", _context(request, data, days, shown))
