"""Report builder: dimensions, metrics, filters, dates and time zone; chart, table and CSV."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response

from perfmark.dashboard.cache import cached_report
from perfmark.dashboard.pages.common import ContainerDep, chart_spec, page_context
from perfmark.dashboard.rendering import SECURITY_HEADERS, render
from perfmark.dashboard.routing import CurrentSession
from perfmark.dashboard.services import PAGE_STALE_S, period_ending_today
from perfmark.errors import PerfmarkError, ValidationError
from perfmark.reports.api import PORTAL_HIDDEN_METRICS, portal_metrics, scoped_filters
from perfmark.reports.domain.catalog import DIMENSIONS, METRICS, TIME_DIMENSIONS
from perfmark.reports.domain.request import ReportRequest, parse_report_request
from perfmark.reports.export import report_columns, report_to_csv
from perfmark.reports.service import ReportResult
from perfmark.services.container import Container, Principal

__all__ = ["ReportForm", "add_routes", "parse_report_form"]

FILTER_ROWS = 3
ROWS_SHOWN = 500
CHART_SERIES = 3
_DEFAULT_METRICS = ("clicks", "conversions", "cost", "revenue", "cpa", "roas")
_PUBLISHER_METRICS = ("clicks", "conversions", "conversion_rate", "payout")


@dataclass
class ReportForm:
    """The builder's inputs as typed, the request they make, and errors by input."""

    values: dict[str, Any]
    request: ReportRequest | None = None
    errors: dict[str, str] = field(default_factory=dict)


def _offered_metrics(principal: Principal) -> list[str]:
    hidden = PORTAL_HIDDEN_METRICS.get(principal.role, frozenset())
    return [name for name in METRICS if name not in hidden]


def parse_report_form(
    container: Container, principal: Principal, params: Any, *, limit: int = ROWS_SHOWN
) -> ReportForm:
    """Turn the builder's query parameters into a report request, or errors beside inputs."""
    period = period_ending_today(container, principal, 7)
    hidden = PORTAL_HIDDEN_METRICS.get(principal.role)
    defaults = _PUBLISHER_METRICS if hidden and "cost" in hidden else _DEFAULT_METRICS
    values: dict[str, Any] = {
        "from": params.get("from") or (period.end - timedelta(days=6)).isoformat(),
        "to": params.get("to") or period.end.isoformat(),
        "tz": params.get("tz") or period.timezone,
        "by": params.getlist("by") or (["day"] if "from" not in params else []),
        "metrics": params.getlist("metrics") or list(defaults),
        "compare": params.get("compare") == "on",
        "filters": [
            (params.get(f"f{n}_dim", ""), params.get(f"f{n}_val", "")) for n in range(FILTER_ROWS)
        ],
    }
    form = ReportForm(values)
    filters = {dim: val for dim, val in values["filters"] if dim and val}
    try:
        metrics = portal_metrics(principal, ",".join(values["metrics"]))
    except PerfmarkError as exc:
        form.errors["metrics"] = exc.message
        return form
    try:
        form.request = parse_report_request(
            principal.workspace_id,
            start=values["from"],
            end=values["to"],
            timezone=values["tz"],
            dimensions=values["by"],
            metrics=metrics,
            filters=scoped_filters(principal, filters),
            compare=values["compare"],
            limit=limit,
        )
    except PerfmarkError as exc:
        name = exc.field or "form"
        name = {"dimensions": "by", "tz": "tz"}.get(name, name)
        form.errors["filters" if name.startswith("filter.") else name] = exc.message
    return form


def _chart(result: ReportResult) -> dict[str, Any] | None:
    if len(result.dimensions) != 1 or not result.rows:
        return None
    dimension = result.dimensions[0]
    labels = [
        str(row.get(f"{dimension}_name") or row.get(dimension) or "(none)") for row in result.rows
    ]
    series = [(name, [row.get(name) for row in result.rows], "y") for name in result.metrics]
    kind = "line" if dimension in TIME_DIMENSIONS else "bar"
    return chart_spec(kind, labels, series[:CHART_SERIES])


def _api_query(form: ReportForm, output: str | None = None) -> str:
    values = form.values
    pairs: list[tuple[str, str]] = [
        ("from", values["from"]),
        ("to", values["to"]),
        ("tz", values["tz"]),
    ]
    if values["by"]:
        pairs.append(("by", ",".join(values["by"])))
    pairs.append(("metrics", ",".join(values["metrics"])))
    pairs.extend((f"filter.{dim}", val) for dim, val in values["filters"] if dim and val)
    if values["compare"]:
        pairs.append(("compare", "true"))
    if output:
        pairs.append(("format", output))
    return urlencode(pairs)


def add_routes(router: APIRouter) -> None:
    """GET /reports (the builder) and GET /reports/export.csv."""

    @router.get("/reports", include_in_schema=False)
    def reports_page(
        request: Request, session: CurrentSession, container: ContainerDep
    ) -> Response:
        principal = session.principal
        form = parse_report_form(container, principal, request.query_params)
        result = None
        if form.request is not None:
            try:
                result = cached_report(container, form.request, stale_for_s=PAGE_STALE_S)
            except PerfmarkError as exc:
                if exc.status != 422:
                    raise
                form.errors[exc.field or "form"] = exc.message
        return render(
            request,
            "reports.html",
            page_context(
                request,
                "reports",
                "Report builder",
                form=form,
                result=result,
                columns=report_columns(result) if result else [],
                chart=_chart(result) if result else None,
                dimensions=[n for n in DIMENSIONS],
                metrics=_offered_metrics(principal),
                csv_link=f"{request.url.path}/export.csv?{request.url.query}",
                twin=f"GET /api/reports?{_api_query(form, 'csv')}",
                filter_rows=FILTER_ROWS,
            ),
            status_code=422 if form.errors else 200,
        )

    @router.get("/reports/export.csv", include_in_schema=False)
    def reports_csv(request: Request, session: CurrentSession, container: ContainerDep) -> Response:
        principal = session.principal
        form = parse_report_form(container, principal, request.query_params, limit=10_000)
        if form.request is None:
            name, message = next(iter(form.errors.items()))
            raise ValidationError(message, field=name)
        result = cached_report(container, form.request)
        return Response(
            report_to_csv(result),
            media_type="text/csv",
            headers={
                **SECURITY_HEADERS,
                "content-disposition": 'attachment; filename="report.csv"',
            },
        )
