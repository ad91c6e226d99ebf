"""JSON twins of the dashboard pages that no other API endpoint covers, under /api/dashboard."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from perfmark.dashboard.instructions import campaign_instructions
from perfmark.dashboard.services import (
    CampaignRow,
    Listing,
    Overview,
    PartnerRow,
    advertiser_rows,
    campaign_rows,
    overview,
    period_ending_today,
    publisher_rows,
)
from perfmark.reports.domain.catalog import METRICS
from perfmark.services.container import Container
from perfmark.web.api.deps import CurrentPrincipal, get_container
from perfmark.web.api.resources import ERROR_RESPONSES, invalid_json

__all__ = [
    "build_dashboard_api_router",
    "campaigns_to_json",
    "overview_to_json",
    "partners_to_json",
]

ContainerDep = Annotated[Container, Depends(get_container)]
DaysParam = Annotated[int, Query(ge=1, le=366, description="Period: the last N local days")]


def _plain(name: str, value: Any) -> Any:
    """As /api/reports: counts are integers, amounts and ratios exact decimal strings, n/a null."""
    if value is None:
        return None
    metric = METRICS.get(name.removesuffix("_previous"))
    if metric is not None and metric.count:
        return int(value)
    if isinstance(value, Decimal | int) or metric is not None or name.endswith("_change"):
        return str(value)
    return value


def _metrics(values: dict[str, Any]) -> dict[str, Any]:
    return {name: _plain(name, value) for name, value in values.items()}


def _period(data: Overview) -> dict[str, Any]:
    return {
        "from": data.period.start.isoformat(),
        "to": data.period.end.isoformat(),
        "timezone": data.period.timezone,
    }


def overview_to_json(data: Overview) -> dict[str, Any]:
    """The overview page's figures."""
    return {
        **_period(data),
        "currency": data.currency,
        "kpis": [
            {
                "metric": kpi.metric,
                "label": kpi.label,
                "value": _plain(kpi.metric, kpi.value),
                "previous": _plain(kpi.metric, kpi.previous),
                "change": _plain(f"{kpi.metric}_change", kpi.change),
            }
            for kpi in data.kpis
        ],
        "trend": {
            "days": list(data.trend_days),
            "series": {
                name: [_plain(name, value) for value in values]
                for name, values in data.trend.items()
            },
        },
        "top_campaigns": [_metrics(dict(row)) for row in data.top_campaigns],
    }


def campaigns_to_json(listing: Listing[CampaignRow]) -> dict[str, Any]:
    """The campaigns page's list (and the campaigns left out as invalid)."""
    return {
        "currency": listing.currency,
        "invalid": invalid_json(listing.invalid),
        "data": [
            {
                "id": row.record.id,
                "name": row.record.spec.name,
                "status": row.record.spec.status.value,
                "channel": row.record.spec.channel.value,
                "advertiser_id": row.record.spec.advertiser_id,
                "advertiser_name": row.advertiser_name,
                "metrics": _metrics(row.metrics),
            }
            for row in listing.rows
        ],
    }


def partners_to_json(listing: Listing[PartnerRow]) -> dict[str, Any]:
    """The publishers or advertisers page's list (and those left out as invalid)."""
    return {
        "currency": listing.currency,
        "invalid": invalid_json(listing.invalid),
        "data": [
            {
                "id": row.id,
                "name": row.name,
                "currency": row.currency,
                "detail": row.detail,
                "metrics": _metrics(row.metrics),
            }
            for row in listing.rows
        ],
    }


def build_dashboard_api_router() -> APIRouter:
    """Routes under /api/dashboard."""
    router = APIRouter(prefix="/dashboard", tags=["dashboard"], responses=ERROR_RESPONSES)

    @router.get("/overview", summary="The overview: KPIs with change, daily trend, top campaigns")
    def overview_json(
        container: ContainerDep, principal: CurrentPrincipal, days: DaysParam = 7
    ) -> Any:
        period = period_ending_today(container, principal, days)
        return overview_to_json(overview(container, principal, period))

    @router.get("/campaigns", summary="Campaigns with their metrics over the period")
    def campaigns_json(
        container: ContainerDep,
        principal: CurrentPrincipal,
        days: DaysParam = 7,
        status: Annotated[str | None, Query(max_length=16)] = None,
    ) -> Any:
        period = period_ending_today(container, principal, days)
        return campaigns_to_json(campaign_rows(container, principal, period, status=status))

    @router.get(
        "/campaigns/{campaign_id}/instructions",
        summary="Postback URL, pixel and snippet for a campaign's goals",
    )
    def instructions_json(
        container: ContainerDep, principal: CurrentPrincipal, campaign_id: str
    ) -> Any:
        return campaign_instructions(container, principal, campaign_id).to_json()

    @router.get("/publishers", summary="Publishers with clicks, conversions and earnings")
    def publishers_json(
        container: ContainerDep, principal: CurrentPrincipal, days: DaysParam = 30
    ) -> Any:
        period = period_ending_today(container, principal, days)
        return partners_to_json(publisher_rows(container, principal, period))

    @router.get("/advertisers", summary="Advertisers with conversions, spend and revenue")
    def advertisers_json(
        container: ContainerDep, principal: CurrentPrincipal, days: DaysParam = 30
    ) -> Any:
        period = period_ending_today(container, principal, days)
        return partners_to_json(advertiser_rows(container, principal, period))

    return router
