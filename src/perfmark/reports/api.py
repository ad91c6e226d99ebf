"""`GET /api/reports`: any metric by any dimension, as JSON, CSV or Parquet."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from perfmark.domain.accounts import Role
from perfmark.errors import ForbiddenError, ValidationError
from perfmark.reports.domain.catalog import DIMENSIONS
from perfmark.reports.domain.request import parse_report_request
from perfmark.reports.export import report_to_csv, report_to_json, report_to_parquet
from perfmark.reports.service import run_report
from perfmark.services.container import Container, Principal
from perfmark.web.api.deps import CurrentPrincipal, get_container
from perfmark.web.api.resources import ERROR_RESPONSES

__all__ = ["PORTAL_HIDDEN_METRICS", "build_reports_router", "portal_metrics", "scoped_filters"]

_FILTER_PREFIX = "filter."
_PUBLISHER_DEFAULT_METRICS = "clicks,unique_clicks,conversions,conversion_rate,payout"
#: What a portal key may not see: an advertiser not what publishers earn (nor the network's
#: margin), a publisher not what advertisers pay or earn.
PORTAL_HIDDEN_METRICS: dict[Role, frozenset[str]] = {
    Role.ADVERTISER: frozenset({"payout", "network_margin"}),
    Role.PUBLISHER: frozenset(
        {"cost", "revenue", "profit", "margin", "network_margin", "cpc", "cpm", "cpl", "cpa",
         "cac", "roas", "roi", "epc", "aov", "ltv"}
    ),
}  # fmt: skip


def portal_metrics(principal: Principal, metrics: str | None) -> str | None:
    """The metrics a portal key asked for, refusing those its role may not see."""
    hidden = PORTAL_HIDDEN_METRICS.get(principal.role)
    if hidden is None:
        return metrics
    if metrics is None:
        return _PUBLISHER_DEFAULT_METRICS if principal.role is Role.PUBLISHER else None
    refused = [name.strip() for name in metrics.split(",") if name.strip() in hidden]
    if refused:
        raise ForbiddenError(
            f"a {principal.role.value} key cannot see {', '.join(refused)}; "
            f"ask for other metrics (not {', '.join(sorted(hidden))})"
        )
    return metrics


def scoped_filters(principal: Principal, filters: dict[str, str]) -> dict[str, str]:
    """Portal roles only ever see their own advertiser's or publisher's rows."""
    if principal.role is Role.ADVERTISER:
        if not principal.advertiser_id:
            raise ForbiddenError("this advertiser key is not bound to an advertiser")
        return {**filters, "advertiser": principal.advertiser_id}
    if principal.role is Role.PUBLISHER:
        if not principal.publisher_id:
            raise ForbiddenError("this publisher key is not bound to a publisher")
        return {**filters, "publisher": principal.publisher_id}
    return filters


def build_reports_router() -> APIRouter:
    """The report endpoint."""
    router = APIRouter()

    @router.get(
        "/reports",
        responses={
            **ERROR_RESPONSES,
            200: {
                "description": "The report (JSON), or CSV / Parquet with format=csv|parquet",
                "content": {"text/csv": {}, "application/vnd.apache.parquet": {}},
            },
        },
        tags=["reports"],
        summary="Metrics by dimensions over a date range",
    )
    def report(
        request: Request,
        container: Annotated[Container, Depends(get_container)],
        principal: CurrentPrincipal,
        from_: Annotated[str, Query(alias="from", description="First local date, YYYY-MM-DD")],
        to: Annotated[str, Query(description="Last local date (inclusive), YYYY-MM-DD")],
        by: Annotated[
            str | None, Query(max_length=500, description="Dimensions, comma-separated")
        ] = None,
        metrics: Annotated[
            str | None, Query(max_length=1000, description="Metrics, comma-separated")
        ] = None,
        tz: Annotated[str, Query(max_length=64, description="IANA time zone")] = "UTC",
        date_basis: Annotated[Literal["conversion", "click"], Query()] = "conversion",
        compare: Annotated[bool, Query(description="Add the previous period")] = False,
        sort: Annotated[str | None, Query(max_length=64, description="Metric or dimension")] = None,
        order: Annotated[Literal["asc", "desc"], Query()] = "desc",
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
        currency: Annotated[str | None, Query(max_length=3)] = None,
        format: Annotated[Literal["json", "csv", "parquet"], Query()] = "json",
    ) -> Any:
        filters: dict[str, str] = {}
        for key, value in request.query_params.items():
            if key.startswith(_FILTER_PREFIX):
                name = key[len(_FILTER_PREFIX) :]
                if name not in DIMENSIONS:
                    raise ValidationError(f"{key} filters on unknown dimension {name!r}", field=key)
                filters[name] = value[:2000]
        parsed = parse_report_request(
            principal.workspace_id,
            start=from_,
            end=to,
            timezone=tz,
            dimensions=by,
            metrics=portal_metrics(principal, metrics),
            filters=scoped_filters(principal, filters),
            date_basis=date_basis,
            compare=compare,
            order_by=sort,
            descending=order == "desc",
            limit=limit,
            offset=offset,
            currency=currency,
        )
        result = run_report(container, parsed)
        if format == "csv":
            return Response(
                report_to_csv(result),
                media_type="text/csv",
                headers={"content-disposition": 'attachment; filename="report.csv"'},
            )
        if format == "parquet":
            return Response(
                report_to_parquet(result),
                media_type="application/vnd.apache.parquet",
                headers={"content-disposition": 'attachment; filename="report.parquet"'},
            )
        return JSONResponse(report_to_json(result))

    return router
